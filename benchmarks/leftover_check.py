"""The blocking check's re-scan (``find_leftovers``) on real code: throughput beside the scrubber's, and what it
flags on scrubbed text (on real code that should be nothing: each finding blocks a partition).

    .venv/bin/python benchmarks/leftover_check.py [--mb 20] [--root DIR]

Files: a seeded sample of source/config/doc files (.py .js .json .yaml .md ...) under DIR (default: the
installed site-packages), each under 300 kB.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

from codellm_assets.core.data.scrub.leftovers import find_leftovers  # noqa: E402
from codellm_assets.core.data.scrub.scrubber import scrub_text  # noqa: E402

EXTS = {".py", ".js", ".ts", ".json", ".yaml", ".yml", ".md", ".rst", ".txt", ".cfg", ".toml", ".ini", ".sh",
        ".html", ".c", ".h"}


def sample(root: Path, limit_bytes: int, seed: int = 0) -> list[tuple[Path, str]]:
    files = sorted(p for p in root.rglob("*") if p.suffix in EXTS and p.is_file() and p.stat().st_size < 300_000)
    random.Random(seed).shuffle(files)
    out, size = [], 0
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out.append((p, text))
        size += len(text.encode())
        if size >= limit_bytes:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20)
    ap.add_argument("--root", type=Path, default=Path(next(p for p in sys.path if p.endswith("site-packages"))))
    args = ap.parse_args()
    texts = sample(args.root, int(args.mb * 1e6))
    mb = sum(len(t.encode()) for _, t in texts) / 1e6
    t0 = time.perf_counter()
    scrubbed = [(p, scrub_text(t).text) for p, t in texts]
    scrub_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = [(p, find_leftovers(t)) for p, t in scrubbed]
    check_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw = sum(len(find_leftovers(t)) for _, t in texts)
    raw_s = time.perf_counter() - t0
    print(f"{len(texts)} files, {mb:.1f} MB under {args.root}")
    print(f"{'scrub_text':34s} {mb / scrub_s:6.1f} MB/s")
    print(f"{'find_leftovers on scrubbed text':34s} {mb / check_s:6.1f} MB/s")
    print(f"{'find_leftovers on raw text':34s} {mb / raw_s:6.1f} MB/s  ({raw} findings before scrubbing)")
    counts = Counter(f.type for _, fs in found for f in fs)
    print(f"leftovers after scrubbing: {sum(counts.values())} in {sum(1 for _, fs in found if fs)} files "
          f"{dict(counts)}")
    for p, fs in found:
        for f in fs[:3]:
            print(f"  {p.relative_to(args.root)}:{f.line} {f.type}: {f.excerpt[:100]}")


if __name__ == "__main__":
    main()
