"""Throughput of the quality rules (stage clean_files) vs. a straightforward per-line implementation.

Corpus: the .py sources of the installed site-packages, read until ``--mb`` MB (default 100). Both
implementations must agree on every file; the baseline runs on the first ``--baseline-mb`` MB only
because it is slow, and the figures are MB/s so they compare directly.

    .venv/bin/python benchmarks/filters.py [--mb 100] [--baseline-mb 20]
"""

from __future__ import annotations

import argparse
import fnmatch
import site
import sys
import time
from collections import Counter
from pathlib import Path

from codellm_assets.core.data.filters import (
    _GENERATED as GENERATED_MARKERS,  # the same regex: compare the loops
)
from codellm_assets.core.data.filters import apply_quality_rules
from codellm_assets.settings import QualitySettings


def load_corpus(limit_bytes: int) -> list[dict]:
    records, total = [], 0
    for root in site.getsitepackages():
        for path in sorted(Path(root).rglob("*.py")):
            try:
                content = path.read_text("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            records.append({"path": path.relative_to(root).as_posix(), "content": content})
            total += len(content)
            if total >= limit_bytes:
                return records
    return records


def naive_reason(path: str, content: str, rules: QualitySettings) -> str | None:
    """The same rules written the obvious way: fnmatch per glob, a loop over lines and characters."""
    name = path.rsplit("/", 1)[-1]
    for glob in rules.exclude_globs:
        if fnmatch.fnmatchcase(path, glob) or ("/" not in glob and fnmatch.fnmatchcase(name, glob)):
            vendored = {"vendor", "vendors", "third_party", "thirdparty", "third-party", "node_modules",
                        "site-packages", "bower_components", "external_libs"}
            return "VENDORED" if vendored.intersection(path.split("/")[:-1]) else "EXCLUDED_BY_MASK"
    if len(content.encode("utf-8")) > rules.max_file_bytes:
        return "TOO_LARGE"
    if "\0" in content:
        return "NOT_TEXT"
    lines = content.split("\n")[:-1] if content.endswith("\n") else content.split("\n")
    if not content:
        lines = []
    if GENERATED_MARKERS.search("\n".join(lines[:10])):
        return "GENERATED"
    if len(lines) < rules.min_lines:
        return "TOO_FEW_LINES"
    if len(lines) > rules.max_lines:
        if rules.long_file_policy == "drop":
            return "TOO_MANY_LINES"
        lines = lines[: rules.max_lines]
    if any(len(line) > rules.max_line_length for line in lines):
        return "LINE_TOO_LONG"
    if sum(len(line) for line in lines) / len(lines) > rules.max_mean_line_length:
        return "MEAN_LINE_TOO_LONG"
    text = "\n".join(lines) + "\n"
    if sum(c.isalnum() for c in text) / len(text) < rules.min_alnum_fraction:
        return "LOW_ALNUM"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--baseline-mb", type=float, default=20)
    args = parser.parse_args()
    rules = QualitySettings()
    records = load_corpus(int(args.mb * 1e6))
    mb = sum(len(r["content"]) for r in records) / 1e6
    start = time.perf_counter()
    result = apply_quality_rules(records, rules)
    fast_s = time.perf_counter() - start

    subset, size = [], 0
    for r in records:
        if size >= args.baseline_mb * 1e6:
            break
        subset.append(r)
        size += len(r["content"])
    start = time.perf_counter()
    naive = Counter(naive_reason(r["path"], r["content"], rules) or "KEPT" for r in subset)
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    fast_subset = apply_quality_rules(subset, rules)
    fast_subset_s = time.perf_counter() - start
    fast_counts = Counter(fast_subset.dropped)
    fast_counts["KEPT"] = len(fast_subset.kept)
    agree = "yes" if fast_counts == naive else f"NO: {fast_counts} vs {naive}"

    print(f"corpus: {len(records)} files, {mb:.1f} MB of Python from site-packages")
    print(f"{'implementation':<34}{'MB':>8}{'seconds':>10}{'MB/s':>10}")
    rows = [("apply_quality_rules (all)", mb, fast_s), ("apply_quality_rules (subset)", size / 1e6, fast_subset_s),
            ("per-line baseline (subset)", size / 1e6, naive_s)]
    for name, mbytes, seconds in rows:
        print(f"{name:<34}{mbytes:>8.1f}{seconds:>10.2f}{mbytes / seconds:>10.1f}")
    print(f"speed-up on the subset: {naive_s / fast_subset_s:.1f}x; same decisions: {agree}")
    print(f"kept {len(result.kept)}, truncated {result.truncated}, dropped {dict(result.dropped.most_common())}")
    sys.exit(0 if agree == "yes" else 1)


if __name__ == "__main__":
    main()
