"""Training dataset and tiny base: figures side by side with a baseline, in one run.

1. Encoding: ``encode_documents`` (Rust ``encode_batch`` on a copy of the tokenizer) vs the baseline
   ``tokenizer(texts)`` (transformers' batched call), same texts, same tokenizer.
2. ``build_training_dataset`` end to end (split, BPE training, encode, pack, save) in MB/s.
3. Tiny base pre-training (hidden 128, 2 layers, 4 heads, batch 8 x 256, 2 threads): untied embeddings in
   fp32 and with bf16 autocast (where the CPU has native bf16), and tied ones, interleaved per seed: seconds and
   validation loss after the same number of steps.
4. ``ensure_base_model`` on a fresh home (the fallback a fresh clone's ``codellm serve`` builds).

    .venv/bin/python benchmarks/tokenize_and_base.py [--mb 20] [--steps 60] [--seeds 2]
"""

from __future__ import annotations

import argparse
import glob
import sysconfig
import tempfile
import time
from pathlib import Path

from codellm_assets.core.data.tokenization import build_training_dataset, encode_documents
from codellm_assets.core.training import base_model as M
from codellm_assets.settings import Settings


def corpus(max_mb: float) -> list[dict]:
    """Python files of the installed packages: a real, varied code corpus available offline."""
    records, total = [], 0
    for f in sorted(glob.glob(f"{sysconfig.get_paths()['purelib']}/**/*.py", recursive=True)):
        try:
            text = Path(f).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text.strip():
            continue
        records.append({"repo": f.split("site-packages/")[1].split("/")[0], "branch": "main", "commit": "0" * 40,
                        "path": f, "language": "python", "content": text})
        total += len(text)
        if total > max_mb * 1e6:
            break
    return records


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    records = corpus(args.mb)
    mb = sum(len(r["content"].encode()) for r in records) / 1e6
    work = Path(tempfile.mkdtemp(prefix="codellm-bench-"))
    t = time.perf_counter()
    summary = build_training_dataset(records, work / "ds", vocab_size=4096, seq_len=256)
    s = time.perf_counter() - t
    print(f"build_training_dataset: {len(records)} files, {mb:.1f} MB in {s:.1f} s = {mb / s:.2f} MB/s; "
          f"tokens {summary.tokens}")

    tok = AutoTokenizer.from_pretrained(str(work / "ds" / "tokenizer"))
    texts = [r["content"] for r in records]
    t = time.perf_counter()
    ours = encode_documents(tok, texts)
    s_ours = time.perf_counter() - t
    t = time.perf_counter()
    base = tok(texts, add_special_tokens=False)["input_ids"]
    s_base = time.perf_counter() - t
    n = sum(map(len, ours))
    print(f"\n{'encoding ' + format(mb, '.1f') + ' MB':<38}{'seconds':>9}{'MB/s':>8}{'M tok/s':>9}")
    print(f"{'encode_documents (encode_batch)':<38}{s_ours:>9.2f}{mb / s_ours:>8.2f}{n / s_ours / 1e6:>9.2f}")
    print(f"{'baseline tokenizer(texts)':<38}{s_base:>9.2f}{mb / s_base:>8.2f}"
          f"{sum(map(len, base)) / s_base / 1e6:>9.2f}")

    import datasets
    dsd = datasets.load_from_disk(str(work / "ds" / "dataset"))
    seqs = M.pretrain_sequences(dsd, tok, 256, max_rows=args.steps * 8, seed=0)
    val = torch.from_numpy(np.asarray(dsd["validation"].with_format("numpy")["input_ids"][:64], dtype=np.int64))
    print(f"\n{'pre-training ' + str(args.steps) + ' steps':<26}{'params':>9}{'seconds':>9}{'first':>7}"
          f"{'last':>7}{'val loss':>9}")
    for seed in range(args.seeds):
        # the default base (untied) in fp32 and with bf16 autocast (model.tiny_pretrain_precision; bf16 only
        # where the CPU has it), beside a tied-embedding one (measured: higher loss)
        for tied, precision in ((False, "fp32"), (False, "bf16"), (True, "fp32")):
            if precision == "bf16" and M.resolve_precision("auto") != "bf16":
                continue
            torch.manual_seed(seed)
            cfg = M._tiny_config(tok, 128, 2, 4)
            cfg.tie_word_embeddings = tied
            model = AutoModelForCausalLM.from_config(cfg)
            t = time.perf_counter()
            losses = M.pretrain(model, seqs, steps=args.steps, seed=seed, precision=precision)
            s = time.perf_counter() - t
            with torch.no_grad():
                vl = float(model(input_ids=val, labels=val).loss)
            label = f"seed {seed} {'tied' if tied else 'untied'} {precision}"
            print(f"{label:<26}{sum(p.numel() for p in model.parameters()):>9}{s:>9.1f}{losses[0]:>7.2f}"
                  f"{losses[-1]:>7.2f}{vl:>9.3f}")

    t = time.perf_counter()
    path = M.ensure_base_model(Settings(home=str(work / "home")))
    print(f"\nensure_base_model fallback on a fresh home: {time.perf_counter() - t:.1f} s -> {path}")


if __name__ == "__main__":
    main()
