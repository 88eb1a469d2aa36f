"""Secrets/PII scrubber: recall and look-alike keep rate per type, and throughput, beside detect-secrets.

1. The labelled set (codellm_assets/testing/secrets_labelled.py, generated secrets in code contexts and
   look-alikes) through ``scrub_text`` and through detect-secrets 1.5 used alone with its default plugins
   and filters, each sample written to a file of its type and scanned as its CLI does (``scan_file``). A
   secret counts as caught by detect-secrets when it reports a finding on a line that holds part of the
   secret; a look-alike is kept when it reports nothing.
2. Throughput on real code: the .py files of the installed site-packages, read until ``--mb`` MB. Then the
   independent re-scan (``find_leftovers``) over the scrubbed output, which must find nothing. detect-secrets
   scans its own slice (``--baseline-mb``), as it is much slower.

    .venv/bin/python benchmarks/scrub_recall.py [--seeds 3] [--mb 100] [--baseline-mb 3]
"""

from __future__ import annotations

import argparse
import site
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the labelled set lives in the test package

from detect_secrets.core.scan import scan_file
from detect_secrets.settings import default_settings

from codellm_assets.core.data.scrub.scrubber import find_leftovers, scrub_text
from codellm_assets.testing.secrets_labelled import Sample, build_labelled_set

_EXTENSIONS = {"python": ".py", "js": ".js", "yaml": ".yaml", "json": ".json", "env": ".env", "ini": ".ini",
               "shell": ".sh", "dockerfile": "", "java": ".java", "go": ".go", "xml": ".xml", "npmrc": ".npmrc",
               "html": ".html", "http": ".txt", "pem": ".pem", "netrc": ".netrc", "nginx": ".conf"}


def detect_secrets_flags(sample: Sample, workdir: Path, index: int) -> bool:
    """Does detect-secrets (default plugins, scanning a file as its CLI does) report something on the lines
    that matter for ``sample``: a line holding part of a secret, or any line of a look-alike?"""
    ext = _EXTENSIONS.get(sample.context, ".txt")
    path = workdir / (f"sample{index}{ext}" if ext else f"Dockerfile.{index}")
    path.write_text(sample.text, encoding="utf-8")
    lines = sample.text.splitlines()
    for finding in scan_file(str(path)):
        line = lines[finding.line_number - 1] if 0 < finding.line_number <= len(lines) else ""
        if not sample.is_secret or sample.kind == "private_key" or any(
                p in line for s in sample.secrets for p in (s, s[:24], s[-24:])):  # PEM: the BEGIN line
            return True
    return False


def labelled_table(seeds: int) -> None:
    ours: Counter[tuple[str, str]] = Counter()
    theirs: Counter[tuple[str, str]] = Counter()
    with default_settings(), tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            for index, sample in enumerate(build_labelled_set(seed)):
                out = scrub_text(sample.text).text
                ok = all(v not in out for v in sample.secrets) if sample.is_secret else out == sample.text
                flagged = detect_secrets_flags(sample, Path(tmp), index)
                ours[(sample.kind, "n")] += 1
                ours[(sample.kind, "ok")] += ok
                theirs[(sample.kind, "ok")] += flagged if sample.is_secret else not flagged
    kinds = sorted({k for k, _ in ours}, key=lambda k: (k.startswith("lookalike:"), k))
    print(f"{'type':32s} {'n':>4s} {'scrub':>7s} {'detect-secrets':>15s}"
          "   (recall for secrets, keep rate for look-alikes)")
    totals = {True: [0, 0, 0], False: [0, 0, 0]}
    for kind in kinds:
        n, a, b = ours[(kind, "n")], ours[(kind, "ok")], theirs[(kind, "ok")]
        print(f"{kind:32s} {n:4d} {a / n:7.3f} {b / n:15.3f}")
        row = totals[not kind.startswith("lookalike:")]
        row[0] += n
        row[1] += a
        row[2] += b
    for is_secret, label in ((True, "RECALL (all secret types)"), (False, "KEEP RATE (all look-alikes)")):
        n, a, b = totals[is_secret]
        print(f"{label:32s} {n:4d} {a / n:7.3f} {b / n:15.3f}")


def load_corpus(limit_bytes: int, skip_bytes: int = 0) -> list[tuple[Path, str]]:
    files, seen = [], 0
    for root in site.getsitepackages():
        for path in sorted(Path(root).rglob("*.py")):
            try:
                text = path.read_text("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            seen += len(text.encode())
            if seen <= skip_bytes:
                continue
            files.append((path, text))
            if seen - skip_bytes >= limit_bytes:
                return files
    return files


def throughput(mb: float, baseline_mb: float) -> None:
    corpus = load_corpus(int(mb * 1e6))
    size = sum(len(t.encode()) for _, t in corpus) / 1e6
    started = time.perf_counter()
    results = [scrub_text(text) for _, text in corpus]
    scrub_s = time.perf_counter() - started
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(r.counts)
    started = time.perf_counter()
    leftovers = sum(len(find_leftovers(r.text)) for r in results)
    check_s = time.perf_counter() - started

    baseline = load_corpus(int(baseline_mb * 1e6))
    base_size = sum(len(t.encode()) for _, t in baseline) / 1e6
    started = time.perf_counter()
    with default_settings():
        base_findings = sum(len(list(scan_file(str(path)))) for path, _ in baseline)
    base_s = time.perf_counter() - started

    print(f"\ncorpus: {len(corpus)} .py files of site-packages, {size:.1f} MB")
    print(f"{'scrub_text':32s} {size / scrub_s:8.1f} MB/s  ({scrub_s:.1f} s; {sum(counts.values())} redactions, "
          f"{sum(1 for r in results if r.counts)} files touched)")
    print(f"{'find_leftovers on its output':32s} {size / check_s:8.1f} MB/s  ({leftovers} leftovers)")
    print(f"{'detect-secrets scan_file':32s} {base_size / base_s:8.1f} MB/s  (on {base_size:.1f} MB: "
          f"{base_findings} findings, default plugins)")
    print("redactions by type:", dict(counts.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="labelled sets to generate (different secrets)")
    parser.add_argument("--mb", type=float, default=100.0, help="MB of real code for the throughput run")
    parser.add_argument("--baseline-mb", type=float, default=3.0, help="MB for detect-secrets (slow)")
    args = parser.parse_args()
    labelled_table(args.seeds)
    throughput(args.mb, args.baseline_mb)


if __name__ == "__main__":
    main()
