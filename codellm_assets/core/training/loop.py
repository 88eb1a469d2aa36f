"""The LoRA training loop: deterministic batches, optimizer steps, logging, evaluation, checkpoint hooks.

Kept free of file layout and model loading (``train.py``) so the loop itself reads in one screen.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from codellm_assets.core.training.distributed import Dist, mean_over_ranks
from codellm_assets.settings import TrainingSettings

MAX_GRAD_NORM = 1.0


class Batches:
    """Deterministic batches: micro-batch ``i`` depends only on (seed, i); a resume replays the same order.

    The epoch order is torch's ``DistributedSampler`` split (``randperm`` seeded ``seed + epoch``, rank ``r``
    takes every ``world``-th index): with one process that is the plain permutation, and the union over
    ranks of their micro-batch ``i`` (``batch_size`` each) is the one-process micro-batch ``i`` of
    ``batch_size * world``, so N ranks see exactly the data of one process with an N-times batch.
    """

    def __init__(self, split, batch_size: int, seed: int, *, rank: int = 0, world: int = 1):
        from torch.utils.data.distributed import DistributedSampler

        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.sampler = DistributedSampler(split, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.per_epoch = math.ceil(len(self.sampler) / batch_size)
        self._perm: tuple[int, list[int]] | None = None

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        epoch, pos = divmod(i, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            self.sampler.set_epoch(epoch)
            self._perm = (epoch, list(self.sampler))
        idx = self._perm[1][pos * self.batch_size : (pos + 1) * self.batch_size]
        return self.split[idx]


@torch.no_grad()
def evaluate_loss(model, split, batch_size: int, max_sequences: int, autocast) -> float | None:
    """Token-weighted mean next-token loss over (the first ``max_sequences`` of) a split."""
    n = len(split) if max_sequences <= 0 else min(len(split), max_sequences)
    if n == 0:
        return None
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for start in range(0, n, batch_size):
        batch = split[start : min(n, start + batch_size)]
        with autocast():
            loss, _ = _forward_loss(model, batch, device)
        labels = batch.get("labels", batch["input_ids"])
        count = int((labels[:, 1:] != -100).sum())  # tokens the loss averaged over
        total += float(loss) * count
        tokens += count
    model.train(was_training)
    return total / max(tokens, 1)


def _forward_loss(model, batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, int]:
    ids = batch["input_ids"].to(device)
    labels = batch["labels"].to(device) if "labels" in batch else ids
    mask = batch["attention_mask"].to(device) if "attention_mask" in batch else None
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss, ids.numel()


# ---- the loop ----------------------------------------------------------------------------------------------


@dataclass
class Loop:
    model: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    batches: Batches
    training: TrainingSettings
    max_steps: int
    device: torch.device
    autocast: Callable[[], Any]
    emit: Callable[[dict[str, Any]], None]
    save: Callable[[dict[str, Any]], None]
    evaluate: Callable[[], float | None]
    dist: Dist = field(default_factory=Dist)  # rank 0 of 1 unless under torchrun

    def run(self, state: dict[str, Any], should_stop: Callable[[], bool] | None) -> bool:
        """Optimizer steps until ``max_steps``; True when finished, False when ``should_stop`` ended it."""
        t = self.training
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        window = torch.tensor(state["window_loss"], device=self.device)  # summed on device: no per-step sync
        self.model.train()
        while state["step"] < self.max_steps:
            if should_stop is not None and should_stop():  # one process only: lora.py refuses it under torchrun
                self.save({**state, "window_loss": self._window_mean(window)})
                return False
            t0 = time.perf_counter()
            tokens = 0
            for micro in range(t.gradient_accumulation_steps):
                last = micro == t.gradient_accumulation_steps - 1
                # DDP/FSDP: all-reduce gradients once per optimizer step, not per micro-batch
                sync = contextlib.nullcontext() if last or not self.dist.enabled else self.model.no_sync()
                with sync:
                    with self.autocast():
                        loss, n = _forward_loss(
                            self.model,
                            self.batches(state["step"] * t.gradient_accumulation_steps + micro),
                            self.device,
                        )
                    scaled = loss / t.gradient_accumulation_steps
                    (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                window += loss.detach()
                tokens += n * self.dist.world  # every rank's batch has the same shape: the global count
            self._optimizer_step(trainable)
            if self.device.type == "cuda":
                torch.cuda.synchronize()  # honest step timing on an asynchronous device
            state["train_time_s"] += time.perf_counter() - t0
            state["train_tokens"] += tokens
            state["window_n"] += t.gradient_accumulation_steps
            state["step"] += 1
            window = self._after_step(state, window)
        return True

    def _optimizer_step(self, trainable: list[torch.nn.Parameter]) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if hasattr(self.model, "clip_grad_norm_"):  # FSDP: the norm over all shards
            self.model.clip_grad_norm_(MAX_GRAD_NORM)
        else:  # DDP: gradients are already averaged, identical on every rank
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _after_step(self, state: dict[str, Any], window: torch.Tensor) -> torch.Tensor:
        """Logging, periodic evaluation and checkpointing after optimizer step ``state['step']``."""
        t, step = self.training, state["step"]
        if step % t.logging_steps == 0 or step == self.max_steps:
            mean = float(mean_over_ranks(window, self.dist)) / max(state["window_n"], 1)
            state["loss_curve"].append([step, mean])
            window, state["window_n"] = torch.zeros_like(window), 0
            self.emit(
                {
                    "step": step,
                    "loss": mean,
                    "learning_rate": self.scheduler.get_last_lr()[0],
                    "epoch": step * t.gradient_accumulation_steps / self.batches.per_epoch,
                    "tokens_per_s": state["train_tokens"] / max(state["train_time_s"], 1e-9),
                }
            )
        if step % t.eval_steps == 0 and step < self.max_steps:
            eval_loss = self.evaluate()
            if eval_loss is not None:
                state["eval_curve"].append([step, eval_loss])
                self.emit({"step": step, "eval_loss": eval_loss})
        if step % t.save_steps == 0 or step == self.max_steps:
            self.save({**state, "window_loss": self._window_mean(window)})
        return window

    def _window_mean(self, window: torch.Tensor) -> float:
        """The unlogged loss sum to checkpoint: its mean over ranks, which every rank restarts from on resume
        (the logged mean over ranks of ``restored + rest`` is then that of the uninterrupted run)."""
        return float(mean_over_ranks(window, self.dist))
