"""Training throughput: ``train_lora`` vs a bare peft + torch loop vs transformers' ``Trainer``.

Same model (the tiny Llama: hidden 128, 2 layers, 4 heads, vocab 4096), same data (random packed
sequences), same LoRA (r 16 on q/k/v/o, dropout 0.05), same batch, optimizer (AdamW) and thread count.

This machine is shared: other processes make whole minutes 2-5x slower, so totals measured one after the
other compare noise. Here every step is PAIRED with a bare-loop step run right after it, in the same
process (from ``train_lora``'s ``on_log`` at every step, from a Trainer callback), and each pair gives a
ratio bare_time / method_time; the median of those ratios is the "vs bare" figure. Goal: train_lora >= 90 %.

    .venv/bin/python benchmarks/training.py [--steps 24] [--seq-len 256] [--batch 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from codellm_assets.core.training.lora import train_lora
from codellm_assets.settings import TrainingSettings

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def build(root: Path, seq_len: int, n_seq: int) -> tuple[Path, Path]:
    from datasets import Dataset, DatasetDict
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=4096, hidden_size=128, intermediate_size=344, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=seq_len)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")
    ids = torch.randint(4096, (n_seq, seq_len)).tolist()
    DatasetDict({"train": Dataset.from_dict({"input_ids": ids}),
                 "validation": Dataset.from_dict({"input_ids": ids[:8]})}).save_to_disk(str(root / "data"))
    return root / "base", root / "data"


def _peft_model(base_dir: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM")
    return get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)


class BareLoop:
    """The floor: forward, backward, AdamW step. Nothing else. ``step()`` returns its wall time."""

    def __init__(self, base_dir: Path, data_dir: Path, batch: int):
        from datasets import load_from_disk

        self.data = load_from_disk(str(data_dir))["train"].with_format("torch")
        self.model = _peft_model(base_dir).train()
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3)
        self.batch, self.i = batch, 0

    def step(self) -> float:
        t0 = time.perf_counter()
        start = (self.i * self.batch) % len(self.data)
        ids = self.data[start:start + self.batch]["input_ids"]
        self.model(input_ids=ids, labels=ids).loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.i += 1
        return time.perf_counter() - t0


class Pairs:
    """Called once per step of the measured method: times it (since the previous call returned), then runs
    and times one bare step. Yields (method_step_s, bare_step_s) pairs."""

    def __init__(self, bare: BareLoop):
        self.bare, self.pairs, self.mark = bare, [], None

    def tick(self) -> None:
        now = time.perf_counter()
        if self.mark is not None:
            self.pairs.append((now - self.mark, self.bare.step()))
        self.mark = time.perf_counter()


def paired_train_lora(bare: BareLoop, base_dir: Path, data_dir: Path, out: Path, steps: int, batch: int,
                      threads: int) -> tuple[list[tuple[float, float]], float]:
    """(pairs, tokens/s of the whole train_lora call minus the bare steps run inside it)."""
    settings = TrainingSettings(max_steps=steps, batch_size=batch, learning_rate=1e-3, warmup_steps=2,
                                logging_steps=1, eval_steps=10**6, save_steps=10**6, threads=threads,
                                eval_max_sequences=8)
    pairs = Pairs(bare)

    def on_log(record: dict) -> None:
        if "loss" in record or record.get("event") == "start":
            pairs.tick()

    t0 = time.perf_counter()
    res = train_lora(base_model_dir=base_dir, dataset_dir=data_dir, out_dir=out, training=settings,
                     target_modules=TARGETS, r=16, alpha=32, on_log=on_log)
    whole = time.perf_counter() - t0 - sum(b for _, b in pairs.pairs)
    return pairs.pairs, res.train_tokens / whole


def paired_trainer(bare: BareLoop, base_dir: Path, data_dir: Path, out: Path, steps: int,
                   batch: int) -> tuple[list[tuple[float, float]], float]:
    """(pairs, tokens/s from Trainer's train_runtime minus the bare steps run inside it)."""
    from datasets import load_from_disk
    from transformers import Trainer, TrainerCallback, TrainingArguments

    data = load_from_disk(str(data_dir))["train"]
    args = TrainingArguments(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=1e-3, warmup_steps=2, logging_steps=10**6, save_strategy="no",
                             eval_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, seed=42)
    pairs = Pairs(bare)

    class Tick(TrainerCallback):
        def on_train_begin(self, *a, **k):
            pairs.tick()

        def on_step_end(self, *a, **k):
            pairs.tick()

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([r["input_ids"] for r in rows])
        return {"input_ids": ids, "labels": ids}

    trainer = Trainer(model=_peft_model(base_dir), args=args, train_dataset=data, data_collator=collate,
                      callbacks=[Tick()])
    runtime = trainer.train().metrics["train_runtime"] - sum(b for _, b in pairs.pairs)
    return pairs.pairs, steps * batch * len(data[0]["input_ids"]) / runtime


def _report(name: str, pairs: list[tuple[float, float]], tokens_per_step: int, whole: float) -> None:
    ratios = sorted(b / m for m, b in pairs)
    method = tokens_per_step / statistics.median(m for m, _ in pairs)
    bare = tokens_per_step / statistics.median(b for _, b in pairs)
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    print(f"{name:<22}{method:>12.0f}{bare:>12.0f}{statistics.median(ratios):>10.0%}"
          f"{f'{q1:.0%}-{q3:.0%}':>14}{whole:>12.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base_dir, data_dir = build(root, a.seq_len, n_seq=max(64, 2 * a.steps * a.batch))
        bare = BareLoop(base_dir, data_dir, a.batch)
        for _ in range(2):
            bare.step()  # warm-up (oneDNN kernels, allocator) paid by nobody
        lora_pairs, lora_whole = paired_train_lora(bare, base_dir, data_dir, root / "lora", a.steps, a.batch,
                                                   a.threads)
        trainer_pairs, trainer_whole = paired_trainer(bare, base_dir, data_dir, root / "tr", a.steps, a.batch)
    tokens_per_step = a.batch * a.seq_len
    print(f"\nLoRA r=16 q/k/v/o, tiny Llama (hidden 128, 2 layers, vocab 4096), batch {a.batch} x "
          f"{a.seq_len}, {a.steps} steps each, {a.threads} threads; every step paired with a bare-loop step")
    print(f"{'method':<22}{'tokens/s':>12}{'bare tok/s':>12}{'vs bare':>10}{'IQR':>14}{'whole call':>12}")
    _report("train_lora", lora_pairs, tokens_per_step, lora_whole)
    _report("transformers Trainer", trainer_pairs, tokens_per_step, trainer_whole)
    print("tokens/s: median step; vs bare: median over steps of bare_step / method_step (IQR: its middle "
          "half);\nwhole call: train_lora incl. model load, base + final eval, adapter save; Trainer: its "
          "train_runtime")


if __name__ == "__main__":
    main()
