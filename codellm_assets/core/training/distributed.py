"""Data-parallel LoRA training over ``torch.distributed``: process group, model wrapping, and the torchrun launcher.

``train_lora`` is the same code in one process or in N: under torchrun (``WORLD_SIZE`` > 1) each rank takes
its DistributedSampler share of every global batch (``batch_size`` per rank, so the global batch is
``batch_size * world``), DDP averages the gradients, and only rank 0 logs and writes checkpoints / the adapter.
With one process nothing here does anything, so the single-GPU path and its checkpoints are unchanged.

``launch`` runs ``python -m torch.distributed.run ... -m codellm_assets.core.training.distributed SPEC`` as a
subprocess (the Dagster step cannot itself become N processes), streams rank 0's log records back from
``train_log.jsonl`` and reads the result from ``train_metrics.json``. FSDP (``strategy: fsdp``) shards the
base over GPUs for bases that do not fit one; it needs CUDA + NCCL and is exercised only by the GPU tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

SPEC_FILE = "distributed_spec.json"
LOG_FILE = "train_log.jsonl"
LAUNCH_LOG = "torchrun.log"


class DistributedTrainingError(RuntimeError):
    """The torchrun job failed; the message carries the exit code and the tail of its log."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    strategy: str = "ddp"

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(settings) -> Dist:
    """Join the process group torchrun set up (env ``RANK``/``WORLD_SIZE``/...); a no-op in one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    d = Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
             local_world=int(os.environ.get("LOCAL_WORLD_SIZE", "1")), strategy=settings.strategy)
    cuda = torch.cuda.is_available()
    if d.strategy == "fsdp" and not cuda:
        from codellm_assets.core.training.lora import TrainingError

        raise TrainingError("training.distributed.strategy 'fsdp' needs CUDA GPUs (NCCL); use 'ddp' on CPU")
    if not dist.is_initialized():
        backend = settings.backend if settings.backend != "auto" else ("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend)
    return d


def device_for(d: Dist) -> torch.device:
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", d.local_rank if d.enabled else torch.cuda.current_device())


def wrap(model, d: Dist, device: torch.device):
    """DDP (one replica per rank; LoRA params only have grads) or FSDP (sharded base; GPU only)."""
    if not d.enabled:
        return model
    if d.strategy == "fsdp":  # GPU-only path: peft's wrap policy puts each decoder layer in its own unit
        from peft.utils.other import fsdp_auto_wrap_policy
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP(model, auto_wrap_policy=fsdp_auto_wrap_policy(model), use_orig_params=True,
                    device_id=device, sync_module_states=True)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_ranks(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a per-rank tensor over all ranks (a collective: every rank must call it)."""
    if not d.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / d.world


def gather_objects(obj: Any, d: Dist) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0 (rank order), None elsewhere; ``[obj]`` in one process."""
    if not d.enabled:
        return [obj]
    out: list[Any] | None = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def broadcast_object(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (collective)."""
    if not d.enabled:
        return obj
    box = [obj if d.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def full_params(model, d: Dist, *, writeback: bool = False):
    """FSDP: the full (unsharded) weights inside the block, on rank 0 only when saving, on every rank with
    ``writeback`` (loading a checkpoint); a collective. DDP / one process: nothing to do."""
    if d.enabled and d.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.summon_full_params(model, writeback=writeback, rank0_only=not writeback,
                                       offload_to_cpu=not writeback)
    return contextlib.nullcontext()


def optimizer_state(model, optimizer, d: Dist) -> dict:
    """The optimizer state to checkpoint: FSDP's gathered full state (collective) or the local one."""
    if d.enabled and d.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.optim_state_dict(model, optimizer)
    return optimizer.state_dict()


def optimizer_state_to_load(model, optimizer, saved: dict, d: Dist) -> dict:
    if d.enabled and d.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        return FSDP.optim_state_dict_to_load(model, optimizer, saved)
    return saved


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


# ---- the launcher ----------------------------------------------------------------------------------------------


def torchrun_command(settings, spec_path: Path, *, node_rank: int | None = None) -> list[str]:
    """``python -m torch.distributed.run`` for this node; one node: standalone rendezvous on a free port."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={settings.nproc_per_node}",
           f"--nnodes={settings.nnodes}"]
    if settings.nnodes == 1:
        cmd.append("--standalone")
    else:  # c10d rendezvous at node 0; ranks are assigned at rendezvous, node_rank only orders the nodes
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={settings.rdzv_endpoint}", f"--rdzv-id={settings.rdzv_id}"]
        if node_rank is not None:
            cmd.append(f"--node-rank={node_rank}")
    return [*cmd, "-m", __name__, str(spec_path)]


def write_spec(out_dir: Path, training, **train_kwargs: Any) -> Path:
    """The worker's arguments (``train_lora`` keywords + the training settings) as JSON in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {"training": training.model_dump(mode="json"), "out_dir": str(out_dir),
            **{k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in train_kwargs.items()}}
    path = out_dir / SPEC_FILE
    path.write_text(json.dumps(spec, indent=2))
    return path


def launch(*, training, out_dir: str | os.PathLike[str], on_log: Callable[[dict], None] | None = None,
           node_rank: int | None = None, env: dict[str, str] | None = None, poll_s: float = 0.5,
           **train_kwargs: Any):
    """Run ``train_lora`` under torchrun with ``training.distributed``; returns rank 0's ``TrainResult``."""
    from codellm_assets.core.training.lora import METRICS_FILE, TrainResult

    out = Path(out_dir)
    spec = write_spec(out, training, **train_kwargs)
    for stale in (out / METRICS_FILE, out / LOG_FILE):  # never read back a previous run's result
        stale.unlink(missing_ok=True)
    cmd = torchrun_command(training.distributed, spec, node_rank=node_rank)
    with (out / LAUNCH_LOG).open("wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        offset = 0
        while True:
            rc = proc.poll()
            offset = _forward_log(out / LOG_FILE, offset, on_log)
            if rc is not None:
                break
            time.sleep(poll_s)
    if rc != 0:
        tail = (out / LAUNCH_LOG).read_text(errors="replace")[-3000:]
        raise DistributedTrainingError(f"torchrun ({' '.join(cmd[3:6])}) exited with {rc}; "
                                       f"checkpoints in {out} let a re-run resume. Log tail:\n{tail}")
    if not (out / METRICS_FILE).is_file():
        raise DistributedTrainingError(f"torchrun exited 0 but wrote no {out / METRICS_FILE} (node {node_rank} "
                                       "is not the one holding rank 0?)")
    return TrainResult.load(out / METRICS_FILE)


def _forward_log(path: Path, offset: int, on_log: Callable[[dict], None] | None) -> int:
    """Hand complete new lines of rank 0's JSONL log to ``on_log``; returns the new offset."""
    if not path.is_file():
        return offset
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
    for line in data[:end].splitlines():
        if line.strip() and on_log is not None:
            on_log(json.loads(line))
    return offset + end


def main(argv: list[str] | None = None) -> int:
    """The torchrun worker: ``python -m codellm_assets.core.training.distributed SPEC.json``."""
    from codellm_assets.core.training.lora import train_lora
    from codellm_assets.settings import TrainingSettings

    args = argv if argv is not None else sys.argv[1:]
    spec = json.loads(Path(args[0]).read_text())
    training = TrainingSettings.model_validate(spec.pop("training"))
    out_dir = Path(spec["out_dir"])
    d = init(training.distributed)
    log_file = (out_dir / LOG_FILE).open("a") if d.main else None

    def on_log(record: dict) -> None:
        if log_file is not None:
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()

    try:
        train_lora(training=training, on_log=on_log, **spec)
    finally:
        if log_file is not None:
            log_file.close()
        shutdown(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
