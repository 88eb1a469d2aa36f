"""The tiny base's short from-scratch pre-training: token windows, the optimizer loop, its precision.

Kept apart from presets and caching (``base_model.py``): this is the part whose speed decides how good a base
the embedded default can afford in its time budget.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Literal

from codellm_assets.core.data.tokenization import encode_documents, pack_sequences

PRETRAIN_BATCH, PRETRAIN_SEQ_LEN, PRETRAIN_LR = 8, 256, 3e-3
MIN_LR_FRACTION = 0.1   # cosine decay to a tenth of the peak: the last steps anneal instead of bouncing
Precision = Literal["fp32", "bf16"]


def cpu_bf16_supported() -> bool:
    """True where oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX): there bf16 autocast made a
    tiny-base step 1.2-1.6x faster (measured on this project's 2-core machines; benchmarks/tokenize_and_base.py
    compares them); elsewhere it would be emulated."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_precision(configured: str) -> Precision:
    """``model.tiny_pretrain_precision``: auto = bf16 autocast where the CPU has native bf16, else fp32."""
    if configured == "auto":
        return "bf16" if cpu_bf16_supported() else "fp32"
    if configured not in ("fp32", "bf16"):
        raise ValueError(f"model.tiny_pretrain_precision={configured!r}: use auto, fp32 or bf16")
    return configured  # type: ignore[return-value]


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first tenth, then cosine decay to MIN_LR_FRACTION at the last step."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - 1 - warmup)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain_sequences(source: Any, tokenizer, seq_len: int, *, max_rows: int, seed: int,
                       fim_rate: float = 0.0, fim_spm_rate: float = 0.0):
    """Token windows for pre-training from texts, a ``datasets`` Dataset/DatasetDict, or its directory.

    A dataset is sampled down to ``max_rows`` windows first (a short pre-training sees few of them). Texts
    get the FIM transform at ``fim_rate``, ``fim_spm_rate`` of it SPM (a dataset already has its own).
    """
    import numpy as np
    import torch

    if isinstance(source, (str, Path)) and Path(source).is_dir():
        import datasets
        source = datasets.load_from_disk(str(source))
    if hasattr(source, "keys") and "train" in source:  # DatasetDict
        source = source["train"]
    if hasattr(source, "column_names"):  # Dataset
        if len(source) > max_rows:
            rows = np.random.default_rng(seed).choice(len(source), size=max_rows, replace=False)
            source = source.select(np.sort(rows))
        ids = np.asarray(source.with_format("numpy")["input_ids"], dtype=np.int64)
        return torch.from_numpy(ids.reshape(len(source), -1))
    # A short pre-training needs max_rows windows: encode texts (in a seeded order) only until there are as many
    # tokens as that, not a whole 3 MB corpus for a 3-step test base.
    texts = [t for t in source if t]
    random.Random(seed).shuffle(texts)
    ids: list[list[int]] = []
    need, have = max_rows * seq_len, 0
    for start in range(0, len(texts), 32):
        chunk = encode_documents(tokenizer, texts[start:start + 32], fim_rate=fim_rate, seed=seed,
                                 fim_window=seq_len, fim_spm_rate=fim_spm_rate)
        ids.extend(chunk)
        have += sum(map(len, chunk))
        if have >= need:
            break
    seqs = pack_sequences(ids, seq_len, tokenizer.eos_token_id, pad_id=tokenizer.eos_token_id)
    return torch.tensor(seqs, dtype=torch.long)


def pretrain(model, sequences, *, steps: int, batch_size: int = PRETRAIN_BATCH, lr: float = PRETRAIN_LR,
             seed: int = 0, time_budget_s: float | None = None, precision: Precision = "fp32") -> list[float]:
    """A short from-scratch pre-training: AdamW on random windows, warm-up then cosine decay
    (:func:`lr_factor`); returns the loss per step. ``precision`` bf16: autocast on the CPU (weights and the
    optimizer stay fp32). With ``time_budget_s`` it stops early once that much time has passed (a busy machine
    stays fast)."""
    import torch

    if steps <= 0 or len(sequences) == 0:
        return []
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
    model.train()
    losses: list[float] = []
    deadline = time.monotonic() + time_budget_s if time_budget_s is not None else None
    for _ in range(steps):
        if deadline is not None and losses and time.monotonic() > deadline:
            break
        batch = sequences[torch.randint(len(sequences), (batch_size,), generator=gen)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
    model.eval()
    return losses
