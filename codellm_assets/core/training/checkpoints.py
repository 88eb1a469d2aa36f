"""Crash-safe training checkpoints and the fingerprints that decide whether one may be resumed.

A checkpoint is a directory ``<out>/checkpoints/step-N`` holding the adapter weights, the optimizer and
scheduler state, the RNG states and ``state.json`` (step, loss history, counters). It is written under a
temporary name and renamed into place, so a directory named ``step-N`` is always complete; a crash leaves
at worst a ``.tmp-*`` directory, which the next run deletes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KEEP_CHECKPOINTS = 2
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")
# Weights up to this size are hashed in full; above it, names, sizes, headers and the first/last MiB.
_FULL_HASH_LIMIT = 256 * 1024 * 1024


def _hash_file(h: hashlib._Hash, path: Path, *, full: bool) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        if full or size <= (2 << 20):
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:  # a multi-GB real model: its safetensors header (shapes, offsets) + first and last MiB
            h.update(f.read(1 << 20))
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read())


def base_model_fingerprint(base_model_dir: str | os.PathLike[str]) -> str:
    """A stable hash of a saved base model (config + weights): which base an adapter was trained on."""
    base = Path(base_model_dir)
    config = base / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{base}: no config.json; expected a model saved with save_pretrained()")
    h = hashlib.sha256(config.read_bytes())
    weights = sorted(p for p in base.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    full = sum(p.stat().st_size for p in weights) <= _FULL_HASH_LIMIT
    for p in weights:
        _hash_file(h, p, full=full)
    return h.hexdigest()[:32]


def dataset_fingerprint(dataset_dir: str | os.PathLike[str]) -> str:
    """Hash of a saved DatasetDict's metadata files and data file sizes (cheap, changes on every rebuild)."""
    root = Path(dataset_dir)
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "tokenizer" in p.relative_to(root).parts:
            continue
        rel = p.relative_to(root).as_posix()
        h.update(f"{rel}:{p.stat().st_size}\n".encode())
        if p.suffix == ".json":
            h.update(p.read_bytes())
    return h.hexdigest()[:32]


# Settings that change only bookkeeping, not the trained weights: they may differ on resume.
_NOT_IN_FINGERPRINT = {"logging_steps", "eval_steps", "save_steps", "threads", "eval_max_sequences",
                       "from_champion", "qlora", "distributed"}


def training_fingerprint(training, lora_config, *, max_steps: int, base_fp: str, data_fp: str,
                         init_fp: str | None) -> str:
    """What a checkpoint must match to be resumed: settings that shape the weights, LoRA, base, data, init.

    Of ``training.distributed`` only the world size counts (it sets the global batch and each rank's data);
    it enters only when > 1, so one-process checkpoints keep their fingerprint."""
    knobs = {k: v for k, v in training.model_dump(mode="json").items() if k not in _NOT_IN_FINGERPRINT}
    if training.distributed.world_size > 1:
        knobs["world_size"] = training.distributed.world_size
    lora = {"r": lora_config.r, "alpha": lora_config.lora_alpha, "dropout": lora_config.lora_dropout,
            "targets": sorted(lora_config.target_modules)}
    blob = json.dumps({"training": knobs, "lora": lora, "max_steps": max_steps, "base": base_fp,
                       "data": data_fp, "init": init_fp}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def adapter_fingerprint(adapter_dir: Path) -> str:
    """Content hash of an adapter's weights + config (identifies the adapter a run started from)."""
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        p = adapter_dir / name
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()[:32]


def capture_rng_state() -> dict[str, Any]:
    import torch
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import torch
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_tree(root: Path) -> None:
    """Flush files before the rename: a power cut must not leave a complete-looking torn checkpoint."""
    for p in root.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def save_checkpoint(ckpt_root: Path, *, model, optimizer, scheduler, scaler, state: dict[str, Any],
                    optimizer_state: dict | None = None, rng_states: list[dict] | None = None) -> Path:
    """Write ``step-<state['step']>`` atomically (temp dir + rename); keep the newest ``KEEP_CHECKPOINTS``.

    Under torchrun rank 0 calls this with every rank's RNG state (``rng_states``, rank order) and, for FSDP,
    the gathered ``optimizer_state``; one process passes neither."""
    import torch
    step = int(state["step"])
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_root / f".tmp-step-{step}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp / "adapter")
    torch.save(
        {
            "optimizer": optimizer_state if optimizer_state is not None else optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        tmp / "optimizer.pt",
    )
    rng = capture_rng_state() if rng_states is None or len(rng_states) == 1 else {"per_rank": rng_states}
    torch.save(rng, tmp / "rng.pt")
    (tmp / STATE_FILE).write_text(json.dumps(state))  # written last: its presence marks completeness
    _fsync_tree(tmp)
    final = ckpt_root / f"step-{step}"
    if final.exists():  # the same step saved again (a resumed run that ends where it started)
        trash = ckpt_root / f".tmp-old-step-{step}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    for old in list_checkpoints(ckpt_root)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints, oldest first. Leftover temp directories of a crashed write are removed."""
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        if p.name.startswith(".tmp-") and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            continue
        m = _STEP_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def load_checkpoint(ckpt: Path, *, model, optimizer, scheduler, scaler, rank: int = 0,
                    optimizer_state_to_load=None) -> dict[str, Any]:
    """Restore adapter weights, optimizer, scheduler and RNG from ``ckpt``; returns its ``state.json``.

    Every rank loads the same files (``ckpt`` on the shared output volume) and its own RNG state;
    ``optimizer_state_to_load`` maps a gathered FSDP optimizer state to this rank's shard."""
    import torch
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    device = next(p.device for p in model.parameters() if p.requires_grad)
    set_peft_model_state_dict(model, load_peft_weights(str(ckpt / "adapter"), device=str(device)))
    # Our own files (optimizer state, numpy RNG arrays): weights_only would refuse the numpy RNG tuple.
    opt_state = torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=False)
    saved = opt_state["optimizer"]
    optimizer.load_state_dict(optimizer_state_to_load(saved) if optimizer_state_to_load else saved)
    scheduler.load_state_dict(opt_state["scheduler"])
    if scaler is not None and opt_state.get("scaler"):
        scaler.load_state_dict(opt_state["scaler"])
    rng = torch.load(ckpt / "rng.pt", weights_only=False)
    restore_rng_state(rng["per_rank"][rank] if "per_rank" in rng else rng)
    return json.loads((ckpt / STATE_FILE).read_text())


def find_resumable(ckpt_root: Path, fingerprint: str) -> Path | None:
    """The newest checkpoint made by the same training setup; stale ones (another setup) are deleted."""
    ckpts = list_checkpoints(ckpt_root)
    if not ckpts:
        return None
    latest = ckpts[-1]
    state = json.loads((latest / STATE_FILE).read_text())
    if state.get("fingerprint") == fingerprint:
        return latest
    log.warning(
        "checkpoints in %s come from another setup (base, dataset or settings changed); starting fresh",
        ckpt_root,
    )
    for p in ckpts:
        shutil.rmtree(p, ignore_errors=True)
    return None
