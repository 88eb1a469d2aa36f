"""Base-model presets, the tiny from-scratch base, and loading/generation for inference.

* Presets (``presets.yaml``): ``tiny`` (the embedded default: a Llama-architecture model built from a
  ``LlamaConfig``, briefly pre-trained from scratch - by default on public code only, with a tokenizer
  trained on that same public code, see :func:`public_tokenizer`) and real code models
  (StarCoder2, CodeLlama, DeepSeek-Coder, Qwen2.5-Coder, Mistral) with LoRA/serving recommendations.
* Nothing downloads: real presets load from ``model.path`` (a local directory), always with
  ``local_files_only=True``.
* The base_model asset writes builds under ``<models_dir>/base/<cache key>/`` and names the active one in
  ``<models_dir>/base/current`` (a text file: a directory name relative to ``base/``, or an absolute path
  for a real preset). :func:`ensure_base_model` serves that, or builds a quick fallback when it is missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from codellm_assets.core.data.fim import FIM_FORMAT, LAYOUTS, layout_spm_rate, write_layout
from codellm_assets.core.data.public_corpus import public_corpus, public_tokenizer
from codellm_assets.core.data.tokenization import tokenizer_file_hash, train_bpe_tokenizer
from codellm_assets.core.fsutil import replace_dir
from codellm_assets.core.training.inference import (  # noqa: F401  (re-exported: the eval asset imports these here)
    HUMANEVAL_STOP,
    generate_completions,
    load_for_inference,
)
from codellm_assets.core.training.pretrain import (  # noqa: F401  (pretrain re-exported)
    PRETRAIN_BATCH,
    PRETRAIN_LR,
    PRETRAIN_SEQ_LEN,
    pretrain,
    pretrain_sequences,
    resolve_precision,
)

if TYPE_CHECKING:
    from codellm_assets.settings import ModelSettings, Settings

PRESETS_FILE = Path(__file__).with_name("presets.yaml")
TINY = "tiny"
TINY_MAX_POSITIONS = 2048
FALLBACK_PRETRAIN_STEPS = 10  # ~2 s on 2 idle cores
FALLBACK_TIME_BUDGET_S = 6.0  # on a busy machine a step can take seconds: the fallback must stay < ~20 s
POINTER = "current"


class ModelError(ValueError):
    """A base model that cannot be resolved; the message names the setting and the fix."""


@dataclass(frozen=True)
class ModelPreset:
    """A selectable base model with its training and serving recommendations."""
    name: str
    family: str
    hf_id: str | None
    params_b: float
    context_length: int
    vllm_max_model_len: int
    lora_target_modules: tuple[str, ...]
    lora_r: int
    lora_alpha: int
    qlora: bool
    fim: dict[str, str] | None = None

    @property
    def is_real(self) -> bool:
        return self.hf_id is not None

    def fim_tokens(self) -> tuple[str, str, str] | None:
        """(prefix, middle, suffix) token names, or None if the model has no infilling."""
        return (self.fim["prefix"], self.fim["middle"], self.fim["suffix"]) if self.fim else None

    @property
    def fim_layout(self) -> str:
        """psm or spm: the FIM prompt order this model is trained and served with."""
        return (self.fim or {}).get("layout", "psm")


def fim_spm_rate(settings_model: ModelSettings, configured: float | None = None) -> float:
    """The share of FIM examples laid out SPM: ``configured`` (dataset.fim_spm_rate) when set, else all of
    them for an SPM preset and none for a PSM one."""
    if configured is not None:
        return configured
    return layout_spm_rate(get_preset(settings_model.preset).fim_layout)


@dataclass
class BaseModelInfo:
    """What ``base_info.json`` holds for a built tiny base."""
    path: str
    preset: str
    params: int
    vocab_size: int
    pretrain_steps: int
    initial_loss: float | None
    final_loss: float | None
    losses: list[float] = field(default_factory=list)
    cache_key: str = ""
    seconds: float = 0.0
    pretrain_source: str = ""        # "public: click 8.5.1, ..." or "dataset"
    pretrain_sha256: str = ""        # of the texts pre-trained on (texts only; a dataset is named by its key)
    precision: str = "fp32"          # of the pre-training's matmuls (bf16: CPU autocast)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _load_presets() -> dict[str, ModelPreset]:
    raw = yaml.safe_load(PRESETS_FILE.read_text())
    presets = {name: ModelPreset(name=name, lora_target_modules=tuple(p.pop("lora_target_modules")), **p)
               for name, p in ((n, dict(v)) for n, v in raw.items())}
    bad = [n for n, p in presets.items() if p.fim_layout not in LAYOUTS]
    if bad:
        raise ModelError(f"presets {bad} in {PRESETS_FILE}: fim.layout must be one of {LAYOUTS}")
    return presets


def preset_names() -> list[str]:
    return list(_load_presets())


def get_preset(name: str) -> ModelPreset:
    """The preset called ``name``; a clear error listing the valid names otherwise."""
    presets = _load_presets()
    if name not in presets:
        raise ModelError(f"unknown model preset '{name}' (model.preset in codellm.yaml); valid presets: "
                         f"{', '.join(presets)}")
    return presets[name]


def real_model_path(settings_model: ModelSettings, *, base_dir: str | Path | None = None) -> Path:
    """The local directory of a real preset's weights, checked; a clear error with the fix if missing."""
    preset = get_preset(settings_model.preset)
    hf_id = preset.hf_id or "<hf id>"
    how = (f"On a machine with hub access run `huggingface-cli download {hf_id} --local-dir "
           f"models/{preset.name}`, copy that directory here, and set `model.path: models/{preset.name}` "
           "in codellm.yaml (or CODELLM__MODEL__PATH=...).")
    if not settings_model.path:
        raise ModelError(f"model preset '{preset.name}' needs its weights on local disk but `model.path` in "
                         f"codellm.yaml is not set; nothing is downloaded here. {how}")
    path = Path(os.path.expanduser(settings_model.path))
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not (path / "config.json").is_file():
        raise ModelError(f"model.path in codellm.yaml is {path}, which has no config.json (not a downloaded "
                         f"model). {how}")
    return path.resolve()


def dataset_tokenizer_args(settings_model: ModelSettings, *, base_dir: str | Path | None = None,
                           vocab_size: int = 4096) -> dict[str, Any]:
    """Keyword arguments for ``build_training_dataset`` that depend on the base model.

    tiny pre-trained on public code (the default): the BPE :func:`public_tokenizer` trained on that code.
    tiny on the dataset: ``tokenizer=None`` (a byte-level BPE is trained on the train split). A real preset
    (or ``model.path``): the model's own tokenizer from the local path and the preset's FIM token names.
    """
    from codellm_assets.core.data.tokenization import load_tokenizer

    preset = get_preset(settings_model.preset)
    if not (preset.is_real or settings_model.path):
        if settings_model.tiny_pretrain_source == "public":
            packages = tuple(settings_model.tiny_pretrain_packages)
            return {"tokenizer": public_tokenizer(packages, vocab_size), "fim_tokens": None,
                    "tokenizer_source": f"byte-level BPE ({vocab_size}) trained on public code: "
                                        f"{public_corpus(packages).description}"}
        return {"tokenizer": None, "tokenizer_source": None, "fim_tokens": None}
    path = real_model_path(settings_model, base_dir=base_dir)
    return {"tokenizer": load_tokenizer(path), "tokenizer_source": f"{preset.hf_id or preset.name} ({path})",
            "fim_tokens": preset.fim_tokens()}


# ---- building the tiny base ----------------------------------------------------------------------

def _tiny_config(tokenizer, hidden_size: int, layers: int, heads: int):
    from transformers import LlamaConfig

    if hidden_size % heads:
        raise ModelError(f"model.tiny_hidden_size={hidden_size} must be divisible by model.tiny_heads={heads}")
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=TINY_MAX_POSITIONS, tie_word_embeddings=False,  # measured: lower loss
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def texts_sha256(texts: Iterable[str]) -> str:
    """A digest of pre-training texts (order matters): what base_info.json records they were."""
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()[:16]


def build_tiny_base(tokenizer, out_dir: Path, *, hidden_size: int = 128, layers: int = 2, heads: int = 4,
                    pretrain_texts_or_dataset: Any = (), pretrain_steps: int = 60, seed: int = 0,
                    threads: int = 2, cache_key: str = "", time_budget_s: float | None = None,
                    seq_len: int = PRETRAIN_SEQ_LEN, fim_rate: float = 0.0, source: str = "",
                    fim_layout: str = "psm", precision: str = "fp32", lr: float = PRETRAIN_LR) -> BaseModelInfo:
    """Build the tiny Llama base from a config, pre-train it briefly, save it atomically to ``out_dir``.

    ``pretrain_texts_or_dataset``: texts (FIM-transformed at ``fim_rate``, cut into ``seq_len`` windows), a
    ``datasets`` Dataset/DatasetDict (its "train" split) with ``input_ids``, or the directory of one.
    ``out_dir`` gets the model (safetensors), the tokenizer, ``base_info.json`` (with ``source`` and, for
    texts, their digest) and the FIM layout it is trained and served with (``fim_layout``: spm pre-trains
    every FIM example suffix first). ``precision``: fp32, bf16 (CPU autocast) or auto
    (:func:`resolve_precision`); ``lr``: the peak learning rate (warm-up, then cosine decay).
    """
    import torch
    from transformers import AutoModelForCausalLM

    precision = resolve_precision(precision)

    started = time.monotonic()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_tiny_config(tokenizer, hidden_size, layers, heads))
        seqs = pretrain_sequences(pretrain_texts_or_dataset, tokenizer, seq_len, seed=seed, fim_rate=fim_rate,
                                  fim_spm_rate=layout_spm_rate(fim_layout),
                                  max_rows=pretrain_steps * PRETRAIN_BATCH) if pretrain_steps > 0 else []
        losses = pretrain(model, seqs, steps=pretrain_steps, seed=seed, time_budget_s=time_budget_s,
                          precision=precision, lr=lr)
    finally:
        torch.set_num_threads(old_threads)
    out_dir = Path(out_dir)
    info = BaseModelInfo(
        path=str(out_dir), preset=TINY, params=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer), pretrain_steps=len(losses), initial_loss=losses[0] if losses else None,
        final_loss=losses[-1] if losses else None, losses=losses, cache_key=cache_key,
        seconds=round(time.monotonic() - started, 2), pretrain_source=source,
        pretrain_sha256=texts_sha256(pretrain_texts_or_dataset)
        if isinstance(pretrain_texts_or_dataset, (list, tuple)) else "", precision=precision)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "base_info.json").write_text(json.dumps(info.to_json(), indent=2))
        write_layout(tmp, fim_layout)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info



def pretraining_texts(settings_model: ModelSettings) -> tuple[str, ...]:
    """The texts the base was pre-trained on, where this project knows them: the tiny base on public code
    (the installed packages). A real base's pre-training data is not listed anywhere here (The Stack v2
    for StarCoder2, ...): empty, and a benchmark on public code it may have seen cannot be checked."""
    preset = get_preset(settings_model.preset)
    if preset.is_real or settings_model.path or settings_model.tiny_pretrain_source != "public":
        return ()
    return public_corpus(tuple(settings_model.tiny_pretrain_packages)).texts


# ---- cache and the `current` pointer -------------------------------------------------------------

# Bumped when the pre-training examples or schedule change for the same settings; the FIM cuts have their own.
PRETRAIN_FORMAT = f"2.fim{FIM_FORMAT}"


def base_cache_key(settings_model: ModelSettings, tokenizer_dir: Path, source_digest: str = "") -> str:
    """Hash of the model settings (the pre-training source and packages among them), the tokenizer's files and
    the pre-training corpus' digest (a package upgrade changes the public code): rebuilt when any changes."""
    # the precision by what it resolves to on this machine (auto = bf16 here is the bf16 base)
    dumped = json.dumps([settings_model.model_dump(mode="json", exclude={"tiny_pretrain_precision"}),
                         get_preset(settings_model.preset).fim], sort_keys=True)
    precision = resolve_precision(settings_model.tiny_pretrain_precision)
    return hashlib.sha256(f"{PRETRAIN_FORMAT}|{dumped}|{precision}|{tokenizer_file_hash(tokenizer_dir)}|"
                          f"{source_digest}".encode()).hexdigest()[:16]


def read_current(cache_dir: Path) -> Path | None:
    """The directory named by ``cache_dir/current`` if it holds a model, else None."""
    pointer = Path(cache_dir) / POINTER
    if not pointer.is_file():
        return None
    target = Path(pointer.read_text().strip())
    target = target if target.is_absolute() else Path(cache_dir) / target
    return target if (target / "config.json").is_file() else None


def write_current(cache_dir: Path, target: Path) -> None:
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = Path(target)
    value = target.name if target.parent.resolve() == cache_dir.resolve() else str(target.resolve())
    tmp = cache_dir / f".{POINTER}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(value + "\n")
    os.replace(tmp, cache_dir / POINTER)


def read_base_info(model_dir: Path) -> dict[str, Any] | None:
    f = Path(model_dir) / "base_info.json"
    return json.loads(f.read_text()) if f.is_file() else None


def resolve_base_model(settings_model: ModelSettings, *, tokenizer_dir: Path, dataset_dir: Path | None,
                       cache_dir: Path, base_dir: str | Path | None = None, seed: int = 0,
                       threads: int = 2) -> Path:
    """The base model directory for these settings, built only on a cache miss; updates ``current``.

    tiny: ``cache_dir/<key>/`` where key = :func:`base_cache_key` (model settings + tokenizer files + corpus),
    pre-trained on public code (``model.tiny_pretrain_source: public``: the installed packages'
    sources, never ``dataset_dir``) or on ``dataset_dir`` (the training_dataset's ``dataset/`` directory,
    train split).
    Real presets (or ``model.path`` set): the checked local path (relative: against ``base_dir``).
    """
    preset = get_preset(settings_model.preset)
    if preset.is_real or settings_model.path:  # `model.path` overrides the preset, tiny included
        path = real_model_path(settings_model, base_dir=base_dir)
        write_current(cache_dir, path)
        return path
    from transformers import AutoTokenizer

    m = settings_model
    public = public_corpus(tuple(m.tiny_pretrain_packages)) if m.tiny_pretrain_source == "public" else None
    key = base_cache_key(m, Path(tokenizer_dir), public.sha256 if public else "")
    target = Path(cache_dir) / key
    info = read_base_info(target)
    if not (info and info.get("cache_key") == key and (target / "config.json").is_file()):
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        if public is not None:
            source, steps, fim = list(public.texts), m.tiny_pretrain_steps, m.tiny_pretrain_fim_rate
        else:
            source, fim = (dataset_dir if dataset_dir is not None else ()), 0.0
            steps = m.tiny_pretrain_steps if dataset_dir is not None else 0
        build_tiny_base(tokenizer, target, hidden_size=m.tiny_hidden_size, layers=m.tiny_layers,
                        heads=m.tiny_heads, pretrain_texts_or_dataset=source, pretrain_steps=steps,
                        seed=seed, threads=threads, cache_key=key, seq_len=m.tiny_pretrain_seq_len,
                        fim_rate=fim, source=f"public: {public.description}" if public else "dataset",
                        fim_layout=preset.fim_layout, precision=m.tiny_pretrain_precision,
                        lr=m.tiny_pretrain_lr)
    write_current(cache_dir, target)
    _prune_builds(Path(cache_dir), keep=target)
    return target


def _prune_builds(cache_dir: Path, keep: Path, max_builds: int = 3) -> None:
    """Keep the newest ``max_builds`` builds (and ``keep``); tiny models are small but runs add up."""
    builds = sorted((d for d in cache_dir.iterdir() if d.is_dir() and not d.name.startswith(".")),
                    key=lambda d: d.stat().st_mtime, reverse=True)
    for d in builds[max_builds:]:
        if d.resolve() != keep.resolve():
            shutil.rmtree(d, ignore_errors=True)


# ---- ensure: what serving calls on a fresh clone -------------------------------------------------

def _fallback_texts(base_dir: Path) -> list[str]:
    """The project's tracked Python files (``git ls-files '*.py'``), or this package's source."""
    paths: list[Path] = []
    try:
        out = subprocess.run(["git", "-C", str(base_dir), "ls-files", "-z", "*.py"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
        paths = [base_dir / p for p in out.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = []
    texts = _read_texts(paths)
    if sum(map(len, texts)) < 20_000:  # too little to learn merges from: add this package's own source
        texts += _read_texts(sorted(Path(__file__).resolve().parents[2].rglob("*.py")))
    return texts


def _read_texts(paths: Iterable[Path]) -> list[str]:
    texts = []
    for p in paths:
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue  # unreadable file: skipped, the fallback only needs some Python
    return texts


def build_fallback_base(settings: Settings, *, pretrain_steps: int = FALLBACK_PRETRAIN_STEPS) -> Path:
    """A tiny base for a fresh clone (no pipeline run yet), cached by the model settings; < ~20 s."""
    root = settings.models_dir / "base-fallback"
    key = hashlib.sha256(json.dumps([settings.model.model_dump(mode="json"),
                                     settings.dataset.tokenizer_vocab_size, pretrain_steps],
                                    sort_keys=True).encode()).hexdigest()[:16]
    target = root / key
    info = read_base_info(target)
    if info and info.get("cache_key") == key and (target / "config.json").is_file():
        return target
    texts = _fallback_texts(Path(settings.base_dir))
    tok_dir = root / f".tokenizer-{uuid.uuid4().hex[:8]}"
    try:
        tokenizer = train_bpe_tokenizer(texts, settings.dataset.tokenizer_vocab_size, tok_dir)
        m = settings.model
        build_tiny_base(tokenizer, target, hidden_size=m.tiny_hidden_size, layers=m.tiny_layers,
                        heads=m.tiny_heads, pretrain_texts_or_dataset=texts, pretrain_steps=pretrain_steps,
                        seed=0, threads=2, cache_key=key, time_budget_s=FALLBACK_TIME_BUDGET_S,
                        fim_layout=get_preset(m.preset).fim_layout, precision=m.tiny_pretrain_precision)
    finally:
        shutil.rmtree(tok_dir, ignore_errors=True)
    return target


def ensure_base_model(settings: Settings) -> Path:
    """A directory loadable by ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained``, now.

    Real preset (or any preset with ``model.path`` set): that local path (clear error if missing). tiny: the
    materialized base_model
    asset (``<models_dir>/base/current``) when it matches the preset, else a quick fallback base under
    ``<models_dir>/base-fallback`` (tokenizer and model trained on the project's own Python files).
    """
    preset = get_preset(settings.model.preset)
    if preset.is_real or settings.model.path:
        return real_model_path(settings.model, base_dir=settings.base_dir)
    current = read_current(settings.models_dir / "base")
    if current is not None and (read_base_info(current) or {}).get("preset") == preset.name:
        return current
    return build_fallback_base(settings)
