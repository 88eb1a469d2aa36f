"""Secrets/PII scrubber: recall and look-alike keep rate per type, and throughput, beside detect-secrets.

1. The company-style labelled set (codellm_assets/testing/company_secrets.py): files of many types generated
   from templates with seeds: TUNING (the templates the rules were tuned on), HELD (other templates and
   seeds; only its totals were looked at while tuning) and FRESH (written after tuning, other ecosystems)
   side by side, for ``scrub_text`` and for detect-secrets 1.5 with ALL its plugins (``default_settings``
   enables every plugin) scanning each file under its own name as its CLI does. A secret is caught by the
   scrubber when its value no longer occurs; by detect-secrets when it reports a finding on a line holding
   the secret (any Private Key finding for a key block). A look-alike is kept when its text survives / when
   detect-secrets reports nothing on its line.
2. The older snippet set (secrets_labelled.py), scrubber only.
3. Throughput on real code: the .py files of the installed site-packages, read until ``--mb`` MB. Then the
   independent re-scan (``find_leftovers``) over the scrubbed output. detect-secrets scans ``--baseline-mb``.

    .venv/bin/python benchmarks/scrub_recall.py [--seeds 3] [--per-template 10] [--mb 20] [--baseline-mb 2]
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
from codellm_assets.testing.company_secrets import CompanyFile, build_company_files, score_files
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


def detect_secrets_stats(files: list[CompanyFile], workdir: Path) -> dict[str, list[int]]:
    """Per type ``[n, ok]`` for detect-secrets (all plugins), attributing findings by line."""
    stats: dict[str, list[int]] = {}
    for index, f in enumerate(files):
        target = workdir / str(index) / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.text, encoding="utf-8")
        findings = list(scan_file(str(target)))
        flagged = {x.line_number for x in findings}
        has_key = any(x.type == "Private Key" for x in findings)
        lines = f.text.splitlines()

        def on_flagged_line(value: str, lines: list[str] = lines, flagged: set[int] = flagged) -> bool:
            return any(value in lines[n - 1] for n in flagged if 0 < n <= len(lines))
        for kind, value in f.secrets:
            row = stats.setdefault(f"secret:{kind}", [0, 0])
            row[0] += 1
            row[1] += has_key if kind == "private_key" else on_flagged_line(value)
        for cat, value in f.keeps:
            row = stats.setdefault(f"keep:{cat}", [0, 0])
            row[0] += 1
            row[1] += not on_flagged_line(value)
    return stats


SLICES = ("tuning", "held", "fresh")  # see company_secrets: tuned on / never tuned on / written after tuning


def company_table(seeds: int, per_template: int) -> None:
    columns = {}
    with default_settings(), tempfile.TemporaryDirectory() as tmp:
        for name in SLICES:
            files = build_company_files(name, seeds=seeds, per_template=per_template)
            columns[name] = (len(files), score_files(files, lambda t: scrub_text(t).text),
                             detect_secrets_stats(files, Path(tmp) / name))
    kinds = sorted({k for _, ours, _ in columns.values() for k in ours}, key=lambda k: (k.startswith("keep:"), k))
    print("company-style files: " + ", ".join(f"{name} {columns[name][0]} files" for name in SLICES))
    print(f"{'type':28s}" + "".join(f" {'n ' + name:>8s} {'scrub':>6s} {'d-s':>6s}" for name in SLICES)
          + "   (secret: recall; keep: look-alikes kept)")

    def cell(stats: dict[str, list[int]], key: str) -> str:
        n, ok = stats.get(key, [0, 0])
        return f"{ok / n:6.3f}" if n else f"{'-':>6s}"
    for kind in kinds:
        row = [f"{kind:28s}"]
        for name in SLICES:
            _, ours, theirs = columns[name]
            row += [f"{ours.get(kind, [0])[0]:8d}", cell(ours, kind), cell(theirs, kind)]
        print(" ".join(row))
    for prefix, label in (("secret:", "RECALL (all secrets)"), ("keep:", "KEPT (all look-alikes)")):
        row = [f"{label:28s}"]
        for name in SLICES:
            _, ours, theirs = columns[name]
            tot = [[sum(v[i] for k, v in st.items() if k.startswith(prefix)) for i in (0, 1)] for st in (ours, theirs)]
            row += [f"{tot[0][0]:8d}", f"{tot[0][1] / tot[0][0]:6.3f}", f"{tot[1][1] / tot[1][0]:6.3f}"]
        print(" ".join(row))
        worst = {name: min((v[1] / v[0], k) for k, v in columns[name][1].items() if k.startswith(prefix))
                 for name in columns}
        print(f"{'  worst type':28s} " + "; ".join(f"{name} {worst[name][1]} {worst[name][0]:.3f}" for name in SLICES))


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
    started, cpu_started = time.perf_counter(), time.process_time()
    results = [scrub_text(text) for _, text in corpus]
    scrub_s, scrub_cpu = time.perf_counter() - started, time.process_time() - cpu_started
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
    print(f"{'scrub_text':32s} {size / scrub_s:8.1f} MB/s wall, {size / scrub_cpu:.1f} MB/s of CPU time "
          f"({scrub_s:.1f} s; {sum(counts.values())} redactions, {sum(1 for r in results if r.counts)} files touched)")
    print(f"{'find_leftovers on its output':32s} {size / check_s:8.1f} MB/s  ({leftovers} leftovers)")
    print(f"{'detect-secrets scan_file':32s} {base_size / base_s:8.1f} MB/s  (on {base_size:.1f} MB: "
          f"{base_findings} findings, all plugins)")
    print("redactions by type:", dict(counts.most_common()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per slice (different secrets)")
    parser.add_argument("--per-template", type=int, default=10, help="files per template and seed")
    parser.add_argument("--mb", type=float, default=20.0, help="MB of real code for the throughput run")
    parser.add_argument("--baseline-mb", type=float, default=2.0, help="MB for detect-secrets (slow)")
    args = parser.parse_args()
    company_table(args.seeds, args.per_template)
    print()
    labelled_table(args.seeds)
    throughput(args.mb, args.baseline_mb)


if __name__ == "__main__":
    main()
