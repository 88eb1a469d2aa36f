"""Packaging a registered adapter into artifacts that servers other than our gateway can load.

- ``merged``: peft's ``merge_and_unload`` into a full model directory (safetensors + tokenizer + generation
  config): loadable by ``transformers.AutoModelForCausalLM``, vLLM and TGI, greedy output equal to base + adapter.
- ``gguf``: the merged model as one GGUF file for llama.cpp / Ollama (``packaging_gguf.py``), F32, F16 or Q8_0.
- ``bnb4``: the merged model quantized to 4-bit NF4 with bitsandbytes (CUDA only), saved with its
  ``quantization_config`` so ``from_pretrained`` reloads it 4-bit on a GPU.

Every artifact carries a checksum: a directory holds ``codellm_package.json`` (sha256 and size of each file,
plus provenance) and its checksum is the sha256 of that manifest; a single file has a ``<file>.sha256``
sidecar (``sha256sum -c`` format) and its checksum is the file's sha256. :func:`verify_artifact` recomputes
them and refuses a corrupt or truncated artifact naming the file; the ``load_*`` functions verify first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codellm_assets.core.fsutil import replace_dir

FORMATS = ("merged", "gguf", "bnb4")
MANIFEST_NAME = "codellm_package.json"
SIDECAR_SUFFIX = ".sha256"
_CHUNK = 1 << 20


class PackagingError(RuntimeError):
    """An artifact that cannot be built as asked (unsupported model, no GPU for 4-bit, bad input)."""


class ArtifactVerificationError(PackagingError):
    """A packaged artifact whose bytes do not match its checksum: corrupt, truncated or changed."""


@dataclass(frozen=True)
class PackagedArtifact:
    format: str
    path: Path          # a directory (merged, bnb4) or a file (gguf)
    sha256: str         # directory: sha256 of its manifest; file: sha256 of the file
    bytes: int
    files: int
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "sha256": self.sha256, "bytes": self.bytes,
                "files": self.files, **self.details}


# ---- checksums ----------------------------------------------------------------------------------------------

def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _canonical_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_manifest(directory: str | os.PathLike[str], provenance: dict[str, Any]) -> str:
    """Write ``codellm_package.json`` listing every file of ``directory``; returns the directory's checksum."""
    root = Path(directory)
    files = {p.relative_to(root).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}
    manifest = {"codellm_package": 1, **provenance, "files": files}
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return _canonical_digest(manifest)


def write_sidecar(path: str | os.PathLike[str]) -> str:
    """Write ``<file>.sha256`` (``sha256sum -c`` format) beside ``path``; returns the file's sha256."""
    path = Path(path)
    digest = sha256_file(path)
    path.with_name(path.name + SIDECAR_SUFFIX).write_text(f"{digest}  {path.name}\n")
    return digest


def _mismatch(path: Path, actual: str, expected: str) -> ArtifactVerificationError:
    return ArtifactVerificationError(
        f"{path}: checksum mismatch: sha256 {actual}, expected {expected}. The artifact is corrupt or was "
        "changed after packaging; re-download it or package the version again (`codellm package`).")


def _check_file(path: Path, sha256: str, size: int | None) -> None:
    if not path.is_file():
        raise ArtifactVerificationError(f"{path}: missing (listed in the package manifest); re-package it")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        kind = "truncated" if actual_size < size else "has extra bytes"
        raise ArtifactVerificationError(
            f"{path}: {kind}: {actual_size} bytes, expected {size} (sha256 {sha256}); re-download or re-package it")
    actual = sha256_file(path)
    if actual != sha256:
        raise _mismatch(path, actual, sha256)


def _read_manifest(root: Path) -> dict[str, Any]:
    manifest_file = root / MANIFEST_NAME
    if not manifest_file.is_file():
        raise ArtifactVerificationError(f"{root}: no {MANIFEST_NAME}: not a codellm package, or an incomplete "
                                        "copy; nothing to verify it against")
    try:
        manifest = json.loads(manifest_file.read_text())
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' mapping")
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactVerificationError(f"{manifest_file}: unreadable package manifest ({e})") from None
    return manifest


def verify_artifact(path: str | os.PathLike[str], expected_sha256: str | None = None) -> str:
    """Recompute ``path``'s checksum (directory: its manifest and every listed file; file: its bytes) and
    compare with ``expected_sha256`` (e.g. the registry tag) or, for a file without one, its sidecar.
    Returns the checksum; raises :class:`ArtifactVerificationError` naming the first bad file."""
    path = Path(path)
    if path.is_dir():
        manifest = _read_manifest(path)
        digest = _canonical_digest(manifest)
        if expected_sha256 is not None and digest != expected_sha256:
            raise _mismatch(path / MANIFEST_NAME, digest, expected_sha256)
        for rel, entry in sorted(manifest["files"].items()):
            _check_file(path / rel, str(entry.get("sha256")), entry.get("bytes"))
        return digest
    if not path.is_file():
        raise ArtifactVerificationError(f"{path}: no such artifact")
    if expected_sha256 is None:
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if not sidecar.is_file():
            raise ArtifactVerificationError(f"{path}: no expected checksum given and no {sidecar.name} beside it; "
                                            "refusing to load an unverified artifact")
        words = sidecar.read_text().split()
        expected_sha256 = words[0] if words else ""
    _check_file(path, expected_sha256, None)
    return expected_sha256


def _dir_stats(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


# ---- merged -------------------------------------------------------------------------------------------------

def merge_adapter(base_dir: str | os.PathLike[str], adapter_dir: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str], *, tokenizer_dir: str | os.PathLike[str] | None = None,
                  provenance: dict[str, Any] | None = None) -> PackagedArtifact:
    """Fold the LoRA adapter into the base weights (peft ``merge_and_unload``) and save a full model
    directory: ``model.safetensors`` (+ shards), ``config.json``, ``generation_config.json``, the tokenizer,
    and the package manifest. Replaces ``out_dir`` atomically."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    # safe_merge: fail on NaNs instead of silently shipping a broken model
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload(safe_merge=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        with torch.no_grad():
            merged.save_pretrained(tmp)
        if not list(tmp.glob("*.safetensors")):
            raise PackagingError(f"merged model in {tmp} was not saved as safetensors")
        AutoTokenizer.from_pretrained(tokenizer_dir or base_dir).save_pretrained(tmp)
        if not (tmp / "generation_config.json").is_file():
            GenerationConfig.from_model_config(merged.config).save_pretrained(tmp)
        digest = write_manifest(tmp, {"format": "merged", **(provenance or {})})
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n, size = _dir_stats(out_dir)
    return PackagedArtifact("merged", out_dir, digest, size, n, {"dtype": str(merged.dtype).removeprefix("torch.")})


def load_merged(path: str | os.PathLike[str], expected_sha256: str | None = None) -> tuple[Any, Any]:
    """Verify a merged (or bnb4) directory, then load ``(model, tokenizer)`` with transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    verify_artifact(path, expected_sha256)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


# ---- 4-bit (bitsandbytes NF4, CUDA) ---------------------------------------------------------------------------

def bnb4_available() -> str | None:
    """None if NF4 quantization can run here, else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU: bitsandbytes NF4 quantizes on the GPU (run it in the GPU image)"
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return "bitsandbytes is not installed (pip install 'codellm[gpu]')"
    return None


def quantize_bnb4(merged_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  expected_sha256: str | None = None, provenance: dict[str, Any] | None = None) -> PackagedArtifact:
    """Load the verified merged model 4-bit (NF4, double quantization, bf16 compute) on GPU 0 and save it
    with its ``quantization_config``: ``AutoModelForCausalLM.from_pretrained(dir)`` on a GPU reloads it 4-bit."""
    reason = bnb4_available()
    if reason:
        raise PackagingError(f"4-bit packaging (bnb4) is unavailable: {reason}")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    verify_artifact(merged_dir, expected_sha256)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(merged_dir, quantization_config=quant, device_map={"": 0})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(merged_dir).save_pretrained(tmp)
        digest = write_manifest(tmp, {"format": "bnb4", "quantization": "nf4", **(provenance or {})})
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n, size = _dir_stats(out_dir)
    return PackagedArtifact("bnb4", out_dir, digest, size, n, {"quantization": "nf4"})


# ---- greedy comparison (the merged model's contract) ------------------------------------------------------------

def greedy_tokens(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int = 16) -> list[list[int]]:
    """The greedy continuation (token ids) of each prompt, one at a time (no padding effects)."""
    import torch

    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            out.append(gen[0, ids.shape[1]:].tolist())
    return out


CHECK_PROMPTS = ("def add(a, b):\n", "import os\n\n\ndef main(", "class Config:\n    def __init__(self",
                 "for i in range(10):\n    ")


def compare_greedy(base_dir: str | os.PathLike[str], adapter_dir: str | os.PathLike[str],
                   merged_dir: str | os.PathLike[str], prompts: tuple[str, ...] = CHECK_PROMPTS,
                   max_new_tokens: int = 16, merged_sha256: str | None = None) -> dict[str, Any]:
    """Greedy token ids of base + adapter (peft, unmerged) against the verified merged model, per prompt."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged, tokenizer = load_merged(merged_dir, merged_sha256)
    want = greedy_tokens(merged, tokenizer, list(prompts), max_new_tokens)
    del merged
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    got = greedy_tokens(adapted, tokenizer, list(prompts), max_new_tokens)
    differ = [p for p, a, b in zip(prompts, got, want) if a != b]
    return {"prompts": len(prompts), "equal": not differ, "differ": differ, "adapter_tokens": got,
            "merged_tokens": want}


# ---- a registered version -> artifact, recorded on the version -----------------------------------------------

def _base_dir(ref: str | None, version: str) -> Path:
    if not ref:
        raise PackagingError(f"version {version} has no codellm.base_model tag: it was not registered by codellm")
    if Path(ref).is_dir():
        return Path(ref)
    try:  # a hub id: only from the local cache (no downloads from here)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means: not available locally
        raise PackagingError(f"version {version}'s base model {ref!r} is neither a local directory nor in the "
                             "local Hugging Face cache; make it available where packaging runs") from None


def _current(merged_dir: Path, provenance: dict[str, Any]) -> bool:
    """An existing merged directory for the same version, base and adapter, intact: reuse it."""
    try:
        manifest = _read_manifest(merged_dir)
        if any(manifest.get(k) != v for k, v in provenance.items()):
            return False
        verify_artifact(merged_dir)
        return True
    except ArtifactVerificationError:
        return False


def package_version(*, tracking_uri: str, model_name: str, version: str | int, fmt: str,
                    out_root: str | os.PathLike[str], gguf_type: str = "q8_0",
                    upload: bool = True) -> tuple[PackagedArtifact, dict[str, str]]:
    """Package a registered version (number or alias) as ``fmt`` under ``out_root/<model>-v<N>/`` and record
    it on the version (``registry.log_package_artifact``). gguf and bnb4 start from the merged model (reused
    when current). Returns the artifact and the tags set."""
    from codellm_assets.core.training import registry, registry_packages
    from codellm_assets.core.training.checkpoints import base_model_fingerprint

    if fmt not in FORMATS:
        raise PackagingError(f"unknown package format {fmt!r}; choose one of {FORMATS}")
    info = registry.get_version(tracking_uri, model_name, version)
    tags = dict(info.tags or {})
    base = _base_dir(tags.get("codellm.base_model"), info.version)
    fingerprint = tags.get("codellm.base_fingerprint")
    if fingerprint and base_model_fingerprint(base) != fingerprint:
        raise PackagingError(f"the base model at {base} changed since {model_name} version {info.version} was "
                             f"registered (fingerprint {fingerprint}); restore it or retrain")
    provenance = {"model": model_name, "version": info.version, "base_model": tags.get("codellm.base_model"),
                  "base_fingerprint": fingerprint, "adapter_sha256": tags.get("codellm.adapter_sha256")}
    dest = Path(out_root) / f"{model_name}-v{info.version}"
    merged_dir = dest / "merged"
    if fmt == "merged" or not _current(merged_dir, provenance):
        with tempfile.TemporaryDirectory(prefix="codellm-package-") as tmp:
            model_dir = registry_packages.download_version_model(tracking_uri, model_name, info.version, tmp)
            tokenizer = model_dir / "artifacts" / "tokenizer"
            merged = merge_adapter(base, model_dir / "artifacts" / "adapter", merged_dir,
                                   tokenizer_dir=tokenizer if tokenizer.is_dir() else None, provenance=provenance)
    if fmt == "merged":
        artifact = merged
    elif fmt == "gguf":
        from codellm_assets.core.training.packaging_gguf import convert_to_gguf

        artifact = convert_to_gguf(merged_dir, dest / f"{model_name}-v{info.version}-{gguf_type}.gguf",
                                   outtype=gguf_type, name=f"{model_name}-v{info.version}")
    else:
        artifact = quantize_bnb4(merged_dir, dest / "bnb4", provenance=provenance)
    recorded = registry_packages.log_package_artifact(tracking_uri, model_name, info.version, fmt, artifact.path,
                                             artifact.sha256, upload=upload,
                                             extra={"bytes": artifact.bytes, **artifact.details})
    return artifact, recorded


def fetch_package(tracking_uri: str, model_name: str, version: str | int, fmt: str,
                  dst: str | os.PathLike[str]) -> tuple[Path, str]:
    """A version's packaged ``fmt`` artifact, downloaded from the registry into ``dst`` (or its recorded local
    path when it was not uploaded) and verified against the sha256 on the version: ``(path, sha256)``."""
    from codellm_assets.core.training import registry, registry_packages

    info = registry.get_version(tracking_uri, model_name, version)
    recorded = registry_packages.package_tags(info, fmt)
    if not recorded.get("sha256"):
        raise PackagingError(f"{model_name} version {info.version} has no {fmt} package; run "
                             f"`codellm package --version {info.version} --format {fmt}`")
    if recorded.get("artifact"):
        path = registry_packages.download_package_artifact(tracking_uri, recorded["artifact"], dst)
    else:
        path = Path(recorded["local_path"])
    verify_artifact(path, recorded["sha256"])
    return path, recorded["sha256"]
