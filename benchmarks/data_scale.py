"""The data plane at company scale: the data group through the real asset graph on 100 MB / 300 MB / 1 GB.

    PYTHONPATH=. .venv/bin/python benchmarks/data_scale.py [--sizes 100,300,1000] [--workdir DIR]

Per size: ten real git repos (codellm_assets/testing/scale_corpus.py: installed packages' sources plus
vendored near-duplicates), a temp settings file (the project's codellm.yaml with those repos and a fresh home),
then `python -m codellm_assets.cli run --select group:data` in a subprocess (this checkout's code). Printed:
wall time, MB/s of corpus, the peak RSS of the whole process tree (psutil, sampled every 0.2 s), the re-run
after one file changed in one repo as a fraction of the full run, and `tokenizers` batch-encoding the same
bytes alone (the tokenizer the run trained) as the throughput baseline. Each goal of issue 16 is printed
beside its figure as PASS / FAIL.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from codellm_assets.testing.scale_corpus import build_scale_corpus, corpus_texts, edit_one_file

ROOT = Path(__file__).resolve().parent.parent   # the checkout whose code the runs use (PYTHONPATH below)

SELECT = "group:data or key:feedback_dataset"   # training_dataset reads the feedback examples
GOAL_LINEAR = 11.0      # 1 GB time <= 11 x the 100 MB time
GOAL_RSS_GB = 2.0       # peak RSS at 1 GB
GOAL_RERUN = 0.05       # one-file re-run <= 5 % of the full run
GOAL_VS_TOKENIZERS = 0.5


@dataclass
class Measured:
    mb: float
    files: int
    full_s: float
    full_rss_gb: float
    rerun_s: float
    rerun_rss_gb: float
    tokenizers_s: float


def leftover_free(text: str) -> bool:
    """Whether the blocking leftover check would pass this file once scrubbed (default scrub settings)."""
    from codellm_assets.core.data.scrub.leftovers import LeftoverPolicy, find_leftovers
    from codellm_assets.core.data.scrub.scrubber import scrub_text
    from codellm_assets.settings import ScrubSettings

    scrub = ScrubSettings()
    return not find_leftovers(scrub_text(text, scrub).text, LeftoverPolicy.from_scrub_settings(scrub))


def settings_file(work: Path, repos: list[Path]) -> Path:
    cfg = yaml.safe_load((ROOT / "codellm.yaml").read_text())
    cfg["home"] = str(work / "home")
    cfg["repos"] = [{"name": p.name, "path": str(p), "branches": ["main"]} for p in repos]
    tasks = (cfg.get("eval") or {}).get("company_tasks_file")
    if tasks:
        cfg["eval"]["company_tasks_file"] = str(ROOT / tasks)
    path = work / "codellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_tree(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Run ``cmd``; (wall seconds, peak RSS in GB of it and all its descendants, the peak of their anonymous
    part: RSS less file-backed pages, e.g. the memory-mapped Arrow shards `datasets` reads while it saves).
    Fails on a non-zero exit."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    root = psutil.Process(proc.pid)
    peak = peak_anon = 0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            rss = anon = 0
            for p in tree:
                try:
                    mem = p.memory_info()
                    rss += mem.rss
                    anon += mem.rss - getattr(mem, "shared", 0)
                except psutil.Error:
                    pass
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); log: {log}\n{log.read_text()[-3000:]}")
    return wall, peak / 1e9, peak_anon / 1e9


STEP_LINE = re.compile(r"^✓ (?P<name>\S+)(?: \[(?P<part>[^\]]+)\])? (?P<s>[\d.]+)s\s+peak RSS (?P<rss>[\d.]+) GB")


def step_report(log: Path, top: int = 5) -> str:
    """The slowest steps of a run and the step after which its peak RSS was reached (from the CLI's lines)."""
    steps = [(m["name"] + (f"[{m['part']}]" if m["part"] else ""), float(m["s"]), float(m["rss"]))
             for m in map(STEP_LINE.match, log.read_text().splitlines()) if m]
    if not steps:
        return "  (no step lines in the log)"
    slow = ", ".join(f"{n} {s:.0f} s" for n, s, _ in sorted(steps, key=lambda t: -t[1])[:top])
    peak = max(r for _, _, r in steps)
    at = next(n for n, _, r in steps if r == peak)
    return f"  slowest: {slow}; per-repo steps {sum(s for n, s, _ in steps if '[' in n):.0f} s in all; " \
           f"peak RSS {peak:.2f} GB reached in {at}"


def tokenizers_alone(tokenizer_dir: Path, texts: list[str]) -> float:
    """Seconds for `tokenizers` to batch-encode every text (batches of 1000), the tokenizer the run trained."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    start = time.perf_counter()
    for i in range(0, len(texts), 1000):
        tok.encode_batch(texts[i:i + 1000])
    return time.perf_counter() - start


def measure(size_mb: int, workdir: Path, rerun: bool = True, baseline: bool = True) -> Measured:
    work = workdir / f"{size_mb}mb"
    t = time.perf_counter()
    repos = build_scale_corpus(work / "repos", size_mb * 1_000_000, keep=leftover_free, keep_name="leftover_free")
    texts = list(corpus_texts(repos))
    mb = sum(len(x.encode()) for x in texts) / 1e6
    print(f"[{size_mb} MB] corpus: {len(texts)} files, {mb:.1f} MB in {len(repos)} repos "
          f"(built/reused in {time.perf_counter() - t:.0f} s)", flush=True)
    if (work / "home").exists():
        shutil.rmtree(work / "home")   # a full run from nothing: no stored results to reuse
    config = settings_file(work, repos)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(work / "home" / "dagster"),
           "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false",
           "DAGSTER_DISABLE_TELEMETRY": "1", "COLUMNS": "250"}    # one line per step in the log
    cmd = [sys.executable, "-m", "codellm_assets.cli", "run", "--select", SELECT, "--config", str(config)]
    full_s, full_rss, full_anon = run_tree(cmd, env, work / "full.log")
    print(f"[{size_mb} MB] full run {full_s:.0f} s, peak RSS {full_rss:.2f} GB (anonymous {full_anon:.2f} GB)",
          flush=True)
    print(step_report(work / "full.log"), flush=True)
    rerun_s = rerun_rss = float("nan")
    if rerun:
        edited = edit_one_file(repos[3], message="benchmark: one file changed")
        rerun_s, rerun_rss, _ = run_tree(cmd, env, work / "rerun.log")
        print(f"[{size_mb} MB] re-run after editing {repos[3].name}/{edited}: {rerun_s:.0f} s", flush=True)
        print(step_report(work / "rerun.log"), flush=True)
    tokenizer_dir = work / "home" / "data" / "training_dataset" / "tokenizer"
    tok_s = tokenizers_alone(tokenizer_dir, texts) if baseline and tokenizer_dir.exists() else float("nan")
    return Measured(mb, len(texts), full_s, full_rss, rerun_s, rerun_rss, tok_s)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


HEADER = (f"{'size':>6} {'files':>7} {'MB':>7} {'full s':>8} {'MB/s':>6} {'peak RSS GB':>12} "
          f"{'re-run s':>9} {'re-run/full':>12} {'tokenizers MB/s':>16} {'vs tokenizers':>14}")


def row(size: int, m: Measured) -> str:
    """One size's figures, each goal's verdict beside it (the RSS goal is for 1 GB; a smaller corpus already
    above it cannot pass at 1 GB, so it is judged at every size)."""
    rerun_frac = m.rerun_s / m.full_s
    rerun_verdict = "n/a" if math.isnan(rerun_frac) else verdict(rerun_frac <= GOAL_RERUN)
    tok_mbs = m.mb / m.tokenizers_s
    ratio = (m.mb / m.full_s) / tok_mbs
    ratio_verdict = "n/a" if math.isnan(ratio) else verdict(ratio >= GOAL_VS_TOKENIZERS)
    return (f"{size:>6} {m.files:>7} {m.mb:>7.1f} {m.full_s:>8.0f} {m.mb / m.full_s:>6.2f} "
            f"{m.full_rss_gb:>7.2f} {verdict(m.full_rss_gb < GOAL_RSS_GB)} {m.rerun_s:>9.0f} {rerun_frac:>7.1%} "
            f"{rerun_verdict:>4} {tok_mbs:>11.2f} {ratio:>9.1%} {ratio_verdict}")


def report(results: dict[int, Measured]) -> None:
    print("\n" + HEADER)
    for size, m in results.items():
        print(row(size, m))
    if 100 in results and len(results) > 1:
        base = results[100]
        for size, m in results.items():
            if size == 100:
                continue
            allowed = GOAL_LINEAR / 10 * size / 100   # linear in size with 10 % slack (1 GB: x11)
            growth = m.full_s / base.full_s
            print(f"time growth 100 MB -> {size} MB: x{growth:.2f} (linear with 10 % slack: <= x{allowed:.1f}) "
                  f"{verdict(growth <= allowed)}")
    print(f"goals: one-file re-run <= {GOAL_RERUN:.0%} of the full run; peak RSS < {GOAL_RSS_GB} GB at 1 GB; "
          f"throughput >= {GOAL_VS_TOKENIZERS:.0%} of tokenizers alone; 1 GB <= {GOAL_LINEAR}x the 100 MB time")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,300,1000", help="corpus sizes in MB, comma-separated")
    ap.add_argument("--workdir", type=Path, help="keep corpora and homes here (default: a temp dir, removed)")
    ap.add_argument("--no-rerun", action="store_true", help="skip the one-file re-run (full runs only)")
    ap.add_argument("--no-baseline", action="store_true", help="skip timing tokenizers alone on the corpus")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="codellm-data-scale-"))
    print(f"{os.cpu_count()} cores; selection {SELECT!r}; work dir {workdir}", flush=True)
    try:
        results = {}
        for size in sizes:
            results[size] = measure(size, workdir, rerun=not args.no_rerun, baseline=not args.no_baseline)
            print(HEADER + "\n" + row(size, results[size]), flush=True)   # each size as soon as it is measured
        report(results)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
