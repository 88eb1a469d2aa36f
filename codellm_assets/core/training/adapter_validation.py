"""Refuse a corrupt or mismatched LoRA adapter before it becomes a model version.

Checks, in order: a readable ``adapter_config.json`` (LoRA), a complete safetensors file, finite weights,
ranks that agree with the config, and a base that fits: the recorded base fingerprint (written by
``train_lora`` into ``codellm_base.json``) or the recorded base path, and every LoRA matrix's shape against
the target module in the base's architecture (built on the meta device: no weights loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codellm_assets.core.training.checkpoints import base_model_fingerprint

if TYPE_CHECKING:   # torch is imported where a check runs: loading the definitions must not cost its 2 s
    import torch

BASE_INFO_FILE = "codellm_base.json"  # same name as train.BASE_INFO_FILE (kept import-light)
_LORA_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|"
    r"lora_embedding_B)(?:\.[^.]+)?(?:\.weight)?$"
)


class AdapterValidationError(ValueError):
    """The adapter must not be registered; the message names the adapter, the problem and the fix."""


@dataclass(frozen=True)
class AdapterInfo:
    adapter_dir: str
    r: int
    alpha: int
    target_modules: tuple[str, ...]
    base_model_name_or_path: str | None
    base_fingerprint: str | None  # recorded at training time, None for an adapter made elsewhere
    base_verified: str  # "fingerprint", "path" or "shapes" (how the base match was established)
    tensors: int
    parameters: int
    bytes: int
    sha256: str


def _fail(adapter_dir: Path, problem: str) -> AdapterValidationError:
    return AdapterValidationError(f"adapter {adapter_dir}: {problem}")


def _read_config(adapter_dir: Path) -> dict:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise _fail(
            adapter_dir, "no adapter_config.json; expected a peft adapter saved with save_pretrained()"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(
            adapter_dir, f"adapter_config.json is not valid JSON ({e}); retrain the adapter"
        ) from None
    if cfg.get("peft_type") != "LORA" or not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise _fail(
            adapter_dir,
            f"adapter_config.json is not a LoRA config (peft_type={cfg.get('peft_type')!r}, "
            f"r={cfg.get('r')!r})",
        )
    return cfg


def _read_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = adapter_dir / "adapter_model.safetensors"
    if not path.is_file():
        raise _fail(adapter_dir, "no adapter_model.safetensors (only safetensors adapters are accepted)")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise _fail(
            adapter_dir,
            f"adapter_model.safetensors is unreadable — truncated or corrupt ({e}); copy or retrain it",
        ) from None
    if not tensors:
        raise _fail(adapter_dir, "adapter_model.safetensors holds no tensors")
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _fail(
                adapter_dir,
                f"tensor {name} contains NaN or inf values; training diverged — "
                "lower the learning rate and retrain",
            )
    return tensors


def _rank_for(module: str, cfg: dict) -> int:
    for pattern, rank in (cfg.get("rank_pattern") or {}).items():
        if re.fullmatch(rf"(?:.*\.)?{pattern}", module):
            return int(rank)
    return int(cfg["r"])


def _check_ranks(adapter_dir: Path, tensors: dict[str, torch.Tensor], cfg: dict) -> dict[str, dict]:
    """Group LoRA tensors by module and check each A/B pair's rank against the config."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        m = _LORA_KEY.match(name)
        if m:
            modules.setdefault(m["module"], {})[m["kind"]] = t
    if not modules:
        raise _fail(adapter_dir, "no LoRA tensors (lora_A / lora_B) in adapter_model.safetensors")
    for module, parts in modules.items():
        r = _rank_for(module, cfg)
        a = parts.get("lora_A", parts.get("lora_embedding_A"))
        b = parts.get("lora_B", parts.get("lora_embedding_B"))
        if a is None or b is None:
            raise _fail(adapter_dir, f"module {module} has only one of its two LoRA matrices")
        if a.shape[0] != r or b.shape[1] != r:
            raise _fail(
                adapter_dir,
                f"rank mismatch at {module}: weights have rank {a.shape[0]}x{b.shape[1]}, "
                f"adapter_config.json says r={r}",
            )
    return modules


def _check_shapes(adapter_dir: Path, base_model_dir: Path, modules: dict[str, dict]) -> None:
    """Each LoRA pair must fit its target module in the base architecture (meta device: no weights)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(base_model_dir)
    except (OSError, ValueError) as e:
        raise _fail(adapter_dir, f"cannot read the base model config at {base_model_dir} ({e})") from None
    with torch.device("meta"):
        base = AutoModelForCausalLM.from_config(config)
    for module, parts in modules.items():
        try:
            target = base.get_submodule(module)
        except AttributeError:
            raise _fail(
                adapter_dir,
                f"target module {module} does not exist in the base at {base_model_dir}: "
                "the adapter was trained on another base",
            ) from None
        if "lora_A" in parts:
            want = (getattr(target, "in_features", None), getattr(target, "out_features", None))
            got = (parts["lora_A"].shape[1], parts["lora_B"].shape[0])
        else:  # an embedding: A is (r, num_embeddings), B is (embedding_dim, r)
            want = (getattr(target, "num_embeddings", None), getattr(target, "embedding_dim", None))
            got = (parts["lora_embedding_A"].shape[1], parts["lora_embedding_B"].shape[0])
        if got != want:
            raise _fail(
                adapter_dir,
                f"{module}: LoRA expects in/out {got}, the base at {base_model_dir} has "
                f"{want}: the adapter was trained on another base",
            )


def _check_base_identity(adapter_dir: Path, base_model_dir: Path, cfg: dict) -> tuple[str | None, str]:
    """Compare the recorded base (fingerprint, else path) with ``base_model_dir``: (fingerprint, how)."""
    info_file = adapter_dir / BASE_INFO_FILE
    actual = base_model_fingerprint(base_model_dir)
    if info_file.is_file():
        recorded = json.loads(info_file.read_text()).get("base_fingerprint")
        if recorded and recorded != actual:
            raise _fail(
                adapter_dir,
                f"trained on a base with fingerprint {recorded}, but the base at "
                f"{base_model_dir} has {actual}: pass the base it was trained on",
            )
        if recorded:
            return recorded, "fingerprint"
    recorded_path = cfg.get("base_model_name_or_path")
    if (
        recorded_path
        and Path(recorded_path).is_dir()
        and Path(recorded_path).resolve() != base_model_dir.resolve()
    ):
        if base_model_fingerprint(recorded_path) != actual:
            raise _fail(
                adapter_dir, f"trained on the base at {recorded_path}, which differs from {base_model_dir}"
            )
        return None, "path"
    return None, "shapes"


def validate_adapter(
    adapter_dir: str | os.PathLike[str], base_model_dir: str | os.PathLike[str]
) -> AdapterInfo:
    """Check an adapter against its base; raises ``AdapterValidationError`` with the reason if unusable."""
    adapter_dir, base_model_dir = Path(adapter_dir), Path(base_model_dir)
    if not adapter_dir.is_dir():
        raise _fail(adapter_dir, "does not exist or is not a directory")
    if not (base_model_dir / "config.json").is_file():
        raise _fail(
            adapter_dir, f"base model {base_model_dir} has no config.json; pass the saved base model dir"
        )
    cfg = _read_config(adapter_dir)
    tensors = _read_weights(adapter_dir)
    modules = _check_ranks(adapter_dir, tensors, cfg)
    fingerprint, how = _check_base_identity(adapter_dir, base_model_dir, cfg)
    _check_shapes(adapter_dir, base_model_dir, modules)
    weights = adapter_dir / "adapter_model.safetensors"
    targets = cfg.get("target_modules") or []
    return AdapterInfo(
        adapter_dir=str(adapter_dir),
        r=int(cfg["r"]),
        alpha=int(cfg.get("lora_alpha") or cfg["r"]),
        target_modules=tuple(sorted([targets] if isinstance(targets, str) else targets)),
        base_model_name_or_path=cfg.get("base_model_name_or_path"),
        base_fingerprint=fingerprint,
        base_verified=how,
        tensors=len(tensors),
        parameters=sum(t.numel() for t in tensors.values()),
        bytes=weights.stat().st_size,
        sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
    )
