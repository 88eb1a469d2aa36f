"""The company benchmark: function-body completion tasks mined from held-out company files, plus
hand-written tasks, scored by exact match, edit similarity and (where tests exist) sandboxed execution.

Mined tasks come only from the held-out split of the dataset (files never trained on). A task's prompt
is everything in the file up to and including the function's signature and docstring; the reference is
the body. Where the docstring carries doctest examples, they become the task's tests.
"""

from __future__ import annotations

import ast
import difflib
import doctest
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_PROMPT_CHARS = 4000
MIN_BODY_LINES, MAX_BODY_LINES = 2, 30


@dataclass
class BenchTask:
    task_id: str
    prompt: str
    reference: str
    entry_point: str
    source: str                           # "mined:<repo>:<path>" or "handwritten"
    description: str = ""
    test_cases: list[str] = field(default_factory=list)   # python statements (asserts), run after the code
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


class TaskFileError(ValueError):
    """A hand-written task file that cannot be used; names the file, the line and the fix."""


def _doctest_cases(docstring: str | None) -> list[str]:
    """`>>> f(1)` / `2` examples -> `assert f(1) == 2` statements (only simple one-line examples)."""
    if not docstring:
        return []
    cases = []
    for ex in doctest.DocTestParser().get_examples(docstring):
        src, want = ex.source.strip(), ex.want.strip()
        if "\n" in src or not want or "\n" in want or want.startswith("Traceback"):
            continue
        cases.append(f"assert ({src}) == ({want})")
    return cases


def mine_function_tasks(source: str, *, origin: str, max_tasks: int = 5) -> list[BenchTask]:
    """Top-level functions with a docstring and a body of a sensible size become completion tasks."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    tasks = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or len(node.body) < 2:
            continue
        doc = node.body[0]
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
            continue
        body_start, body_end = doc.end_lineno, node.end_lineno   # 1-based, inclusive
        n_body = body_end - body_start
        if not MIN_BODY_LINES <= n_body <= MAX_BODY_LINES:
            continue
        prompt = "".join(lines[:body_start])[-MAX_PROMPT_CHARS:]
        reference = "".join(lines[body_start:body_end])
        digest = hashlib.sha256(f"{origin}:{node.name}".encode()).hexdigest()[:10]
        tasks.append(BenchTask(task_id=f"company/{digest}", prompt=prompt, reference=reference,
                               entry_point=node.name, source=f"mined:{origin}",
                               test_cases=_doctest_cases(ast.get_docstring(node)), tags=["mined"]))
        if len(tasks) >= max_tasks:
            break
    return tasks


def mine_tasks(files: Iterable[dict], *, max_tasks: int, per_file: int = 2) -> list[BenchTask]:
    """Deterministic mining over held-out Python files (dicts with repo, path, content)."""
    tasks: list[BenchTask] = []
    for f in sorted(files, key=lambda r: (r["repo"], r["path"])):
        if not f["path"].endswith(".py"):
            continue
        tasks.extend(mine_function_tasks(f["content"], origin=f"{f['repo']}:{f['path']}", max_tasks=per_file))
        if len(tasks) >= max_tasks:
            break
    return tasks[:max_tasks]


def load_handwritten_tasks(path: Path) -> list[BenchTask]:
    """Seed format, one JSON object a line: task_id, description, prompt, test_cases, tags (+ optional
    canonical_solution / entry_point)."""
    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            tasks.append(BenchTask(
                task_id=str(raw["task_id"]), prompt=raw["prompt"], reference=raw.get("canonical_solution", ""),
                entry_point=raw.get("entry_point", ""), source="handwritten",
                description=raw.get("description", ""), test_cases=list(raw.get("test_cases", [])),
                tags=list(raw.get("tags", []))))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise TaskFileError(f"{path}:{n}: not a task ({type(e).__name__}: {e}); each line needs "
                                f"task_id, prompt, test_cases (fix it or set eval.company_tasks_file)") from e
    return tasks


def edit_similarity(a: str, b: str) -> float:
    """1 - normalized edit distance, approximated by difflib's ratio on lines-stripped text."""
    a_norm, b_norm = "\n".join(x.rstrip() for x in a.strip().splitlines()), \
        "\n".join(x.rstrip() for x in b.strip().splitlines())
    if not a_norm and not b_norm:
        return 1.0
    return difflib.SequenceMatcher(None, a_norm, b_norm, autojunk=False).ratio()


def exact_match(candidate: str, reference: str) -> bool:
    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.strip().splitlines() if line.strip()]

    return norm(candidate) == norm(reference)


@dataclass(frozen=True)
class ExecutionRequest:
    """A task's execution split like HumanEval's: ``program`` (the prompt + the completion, untrusted) runs
    in the sandbox's worker; ``tests`` (the task's own asserts, trusted) run in the judge with each name in
    ``calls`` a proxy of the program's function, so nothing the completion does can forge a pass."""

    program: str
    tests: str
    calls: tuple[str, ...]


def execution_request(task: BenchTask, completion: str) -> ExecutionRequest | None:
    if not task.test_cases:
        return None
    return ExecutionRequest(task.prompt + completion, "\n".join(task.test_cases) + "\n", (task.entry_point,))


def score_tasks(tasks: Sequence[BenchTask], completions: Sequence[str], *, run_program=None,
                timeout_s: float = 5.0) -> dict:
    """Scores one completion per task. ``run_program(request: ExecutionRequest, timeout_s) -> bool`` runs
    the tests (the sandbox, judged: see :class:`ExecutionRequest`)."""
    rows = []
    for task, completion in zip(tasks, completions, strict=True):
        request = execution_request(task, completion)
        passed = None
        if request is not None and run_program is not None:
            passed = bool(run_program(request, timeout_s))
        rows.append({"task_id": task.task_id, "source": task.source,
                     "exact_match": exact_match(completion, task.reference) if task.reference else None,
                     "edit_similarity": (round(edit_similarity(completion, task.reference), 4)
                                         if task.reference else None),
                     "executed": request is not None and run_program is not None, "passed": passed})
    em = [r["exact_match"] for r in rows if r["exact_match"] is not None]
    es = [r["edit_similarity"] for r in rows if r["edit_similarity"] is not None]
    ex = [r["passed"] for r in rows if r["passed"] is not None]
    summary = {
        "tasks": len(rows),
        "exact_match": sum(em) / len(em) if em else 0.0,
        "edit_similarity": sum(es) / len(es) if es else 0.0,
        "executed": len(ex),
        "execution_pass_rate": sum(ex) / len(ex) if ex else None,
    }
    # One headline number for the gate: execution where we have tests, edit similarity elsewhere.
    parts = [summary["edit_similarity"]] + ([summary["execution_pass_rate"]] if ex else [])
    summary["company_score"] = sum(parts) / len(parts)
    return {"summary": summary, "results": rows}
