"""Repo-level FIM benchmark figures (seconds on 2 cores): tasks mined per kind and label, and how often the
repository context holds the file that defines a cross-file task's symbol (BM25 alone vs definitions + BM25).

Repos: the generated company repo (core/data/company_sample.py; the retrieval design was chosen on it) and,
held back, the public sample repos built from installed packages (click, typer), never looked at while
designing. Holdout: the time split (newest 20% of files by last commit date).

    .venv/bin/python benchmarks/repo_bench.py [--budget 2000] [--per-stratum 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

from codellm_assets.core.data.code_index import CodeIndex
from codellm_assets.core.data.company_sample import ensure_company_repo
from codellm_assets.core.data.context_render import render_context
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.holdout import dates_for, split_holdout
from codellm_assets.core.data.samples import ensure_sample_repo
from codellm_assets.core.evaluation.repo_bench import mine_repo_tasks, sample_tasks, score_all, summarize


def measure(name: str, repo: Path, budget: int, per_stratum: int) -> None:
    t0 = time.perf_counter()
    scan = scan_branch(repo, "HEAD", repo_name=name)
    train, held = split_holdout(scan.records, fraction=0.2, dates=dates_for([(name, repo, scan.commit)]))
    tasks = mine_repo_tasks(scan.records, held)
    t_mine = time.perf_counter() - t0
    picked = sample_tasks(tasks, per_stratum=per_stratum, seed=0)
    t0 = time.perf_counter()
    index = CodeIndex.build(train, repo=name, commit=scan.commit)
    t_index = time.perf_counter() - t0
    cross = [t for t in picked if t.cross_file]
    hits = {"bm25": 0, "defs+bm25": 0}
    t0 = time.perf_counter()
    for t in cross:
        query = "\n".join(t.prefix.splitlines()[-10:] + t.suffix.splitlines()[:3])
        bm25 = render_context([c for c, _ in index.search(query, k=5, exclude_paths=[t.path])],
                              language=t.language, budget=budget)
        both = index.context(t.prefix, t.suffix, path=t.path, language=t.language, budget=budget)
        hits["bm25"] += any(p in bm25 for p in t.defining_paths)
        hits["defs+bm25"] += any(p in both for p in t.defining_paths)
    per_query_ms = 1000 * (time.perf_counter() - t0) / max(1, 2 * len(cross))
    kinds = Counter((t.kind, "x" if t.cross_file else "in") for t in tasks)
    oracle = summarize(score_all(picked, [t.reference for t in picked]))["company_score"]
    print(f"\n## {name}: {len(scan.records)} files, {len(held)} held out, {len(tasks)} tasks mined "
          f"({t_mine:.2f} s), {len(picked)} sampled, index {len(index.chunks)} chunks ({t_index:.2f} s)")
    print("mined by kind (cross-file / in-file): " + ", ".join(
        f"{k} {kinds[(k, 'x')]}/{kinds[(k, 'in')]}" for k in sorted({k for k, _ in kinds})))
    n = max(1, len(cross))
    print(f"defining file in the context (budget {budget} chars), {len(cross)} sampled cross-file tasks: "
          f"BM25 {hits['bm25']}/{len(cross)} = {hits['bm25'] / n:.2f}, definitions+BM25 "
          f"{hits['defs+bm25']}/{len(cross)} = {hits['defs+bm25'] / n:.2f}; {per_query_ms:.1f} ms/query; "
          f"oracle company_score {oracle}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--per-stratum", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure("company", ensure_company_repo(Path(tmp) / "company", services=24), args.budget, args.per_stratum)
        for pkg in ("click", "typer"):
            measure(pkg, ensure_sample_repo(Path(tmp) / pkg, pkg, commits=5), args.budget, args.per_stratum)


if __name__ == "__main__":
    main()
