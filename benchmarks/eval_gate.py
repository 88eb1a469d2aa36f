"""What the paired gate costs on the embedded default: scoring one model (HumanEval subset + held-out
likelihood) at today's 10 tasks vs the seeded 164, per generation batch size, and the bootstrap verdict.

    python benchmarks/eval_gate.py [--tasks 10 164] [--batch 8 16 32]

The model is the tiny preset's shape (Llama, hidden 128, 2 layers, 4 heads), randomly initialised: its
completions are as long as a trained tiny model's (max_new_tokens), which is what the time depends on.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from codellm_assets.core.evaluation import evaluate, gate
from codellm_assets.settings import EvalSettings


def build(out: Path):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from codellm_assets.testing.tiny_model import build_tiny_model

    build_tiny_model(out)
    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, vocab_size=len(tok), max_position_embeddings=1024,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval(), tok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, nargs="+", default=[10, 164])
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    texts = [p.read_text() for p in sorted(Path(evaluate.__file__).parents[1].rglob("*.py"))][:64]
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = build(Path(tmp))
        print(f"{'tasks':>5} {'batch':>5} {'seconds':>8}  (HumanEval generate + sandbox, 64 held-out files)")
        record = None
        for n in args.tasks:
            for b in args.batch:
                ev = EvalSettings(humaneval_subset=n, generation_batch_size=b, max_new_tokens=64)
                started = time.monotonic()
                scores = evaluate.evaluate_model(model, tok, label="bench", settings=ev, company_tasks=[],
                                                 holdout_texts=texts, log=lambda _m: None)
                print(f"{n:>5} {b:>5} {time.monotonic() - started:>8.1f}")
                record = evaluate.paired_record(scores)
        started = time.monotonic()
        gate.compare("pass@1", record, record, EvalSettings())
        gate.compare("holdout_bits_per_char", record, record, EvalSettings())
        print(f"paired bootstrap (2000 resamples, 2 metrics): {time.monotonic() - started:.3f} s")


if __name__ == "__main__":
    main()
