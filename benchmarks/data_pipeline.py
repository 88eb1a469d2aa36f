"""Throughput of every data stage on a real corpus (~100 MB of Python from the installed packages),
side by side with `tokenizers` batch-encoding the same bytes, plus datasketch vs rensa signatures.

    .venv/bin/python benchmarks/data_pipeline.py [--mb 100] [--keep-repo DIR]

Each stage runs the same core function the asset calls. Figures: MB/s and files/s of input.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codellm_assets.core.data import dedup, filters, git_scan
from codellm_assets.core.data.scrub import scrubber as scrub
from codellm_assets.settings import DedupSettings, QualitySettings, ScrubSettings


def corpus_files(limit_bytes: int) -> list[Path]:
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    files, total = [], 0
    for p in sorted(site.rglob("*.py")):
        try:
            size = p.stat().st_size
        except OSError:
            continue
        if size == 0 or size > 1_000_000 or p.is_symlink():
            continue
        files.append(p)
        total += size
        if total >= limit_bytes:
            break
    return files


def build_repo(files: list[Path], dest: Path) -> None:
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for f in files:
        target = dest / f.relative_to(site)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "corpus"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, env=env)


def row(name: str, seconds: float, mb: float, files: int, note: str = "") -> None:
    print(f"{name:<34} {seconds:8.2f} s {mb / seconds:9.1f} MB/s {files / seconds:10.0f} files/s  {note}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100)
    ap.add_argument("--keep-repo", type=Path)
    args = ap.parse_args()
    files = corpus_files(int(args.mb * 1e6))
    tmp = Path(args.keep_repo or tempfile.mkdtemp(prefix="codellm-bench-"))
    if not (tmp / ".git").exists():
        t = time.perf_counter()
        build_repo(files, tmp)
        print(f"built a git repo of {len(files)} files in {time.perf_counter() - t:.1f} s at {tmp}")

    t = time.perf_counter()
    scan = git_scan.scan_branch(tmp, "main", repo_name="bench", max_file_bytes=1_000_000)
    t_scan = time.perf_counter() - t
    records = scan.records
    mb = sum(len(r["content"].encode()) for r in records) / 1e6
    n = len(records)
    print(f"\ncorpus: {n} files, {mb:.1f} MB of Python ({os.cpu_count()} cores)\n")
    print(f"{'stage':<34} {'time':>10} {'throughput':>14} {'files':>16}")
    row("repo_snapshots (git ls-tree+cat-file)", t_scan, mb, n)

    t = time.perf_counter()
    clean = filters.apply_quality_rules(records, QualitySettings())
    row("clean_files (quality rules)", time.perf_counter() - t, mb, n, f"kept {len(clean.kept)}")

    t = time.perf_counter()
    redactions = 0
    scrubbed = []
    for r in clean.kept:
        res = scrub.scrub_text(r["content"], ScrubSettings())
        redactions += sum(res.counts.values())
        scrubbed.append(res.text)
    clean_mb = sum(len(r["content"].encode()) for r in clean.kept) / 1e6
    row("scrubbed_corpus (scrub_text)", time.perf_counter() - t, clean_mb, len(clean.kept), f"{redactions} redactions")

    t = time.perf_counter()
    leftovers = sum(len(scrub.find_leftovers(text)) for text in scrubbed)
    row("check: find_leftovers (independent)", time.perf_counter() - t, clean_mb, len(scrubbed),
        f"{leftovers} leftovers")

    docs = [dedup.Doc(id=f"{i}", text=text, repo="bench", path=r["path"]) for i, (r, text) in
            enumerate(zip(clean.kept, scrubbed))]
    for backend in ("rensa", "datasketch"):
        t = time.perf_counter()
        result = dedup.dedup_documents(docs, DedupSettings(backend=backend))
        row(f"deduped_corpus ({backend})", time.perf_counter() - t, clean_mb, len(docs),
            f"ratio {result.dedup_ratio:.3f}")

    for backend in ("rensa", "datasketch"):
        sample = [d.text for d in docs[:3000]]
        t = time.perf_counter()
        dedup.minhash_signatures(sample, DedupSettings(backend=backend))
        s = time.perf_counter() - t
        row(f"minhash signatures ({backend}, 256p)", s, sum(len(x.encode()) for x in sample) / 1e6, len(sample))

    from codellm_assets.core.data.tokenization import train_bpe_tokenizer

    tok_dir = Path(tempfile.mkdtemp(prefix="codellm-tok-"))
    t = time.perf_counter()
    tok = train_bpe_tokenizer(scrubbed[:2000], 4096, tok_dir)
    print(f"\n(BPE tokenizer trained on 2,000 files in {time.perf_counter() - t:.1f} s)")
    from codellm_assets.core.data.tokenization import build_training_dataset

    kept_records = [{**r, "content": text} for r, text in zip(clean.kept, scrubbed)]
    t = time.perf_counter()
    summary = build_training_dataset(kept_records, tok_dir / "dataset", tokenizer=tok, seq_len=256)
    s = time.perf_counter() - t
    total_tokens = sum(summary.tokens.values())
    row("training_dataset (split+encode+pack+save)", s, clean_mb, len(scrubbed),
        f"{total_tokens / s / 1e6:.2f} M tok/s")
    raw = tok.backend_tokenizer
    t = time.perf_counter()
    enc = raw.encode_batch(scrubbed)
    s = time.perf_counter() - t
    row("BASELINE tokenizers encode_batch", s, clean_mb, len(scrubbed),
        f"{sum(len(e.ids) for e in enc) / s / 1e6:.2f} M tok/s")


if __name__ == "__main__":
    main()
