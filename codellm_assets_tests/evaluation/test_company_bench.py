"""Company benchmark: mining tasks with ast, hand-written tasks, scoring."""

import json
from pathlib import Path

import pytest

from codellm_assets.core.evaluation.company_bench import (
    TaskFileError,
    edit_similarity,
    exact_match,
    load_handwritten_tasks,
    mine_function_tasks,
    mine_tasks,
    score_tasks,
)

SOURCE = '''"""A module."""
import math


def area(r):
    """Area of a circle.

    >>> area(1) == math.pi
    True
    """
    value = math.pi * r * r
    return value


def short(x):
    """Too short a body to be a task."""
    return x


def no_doc(x):
    y = x + 1
    return y
'''


def test_mines_functions_with_docstring_and_body():
    tasks = mine_function_tasks(SOURCE, origin="repo:mod.py")
    assert [t.entry_point for t in tasks] == ["area"]
    t = tasks[0]
    assert t.prompt.endswith('    """\n') and "def area(r):" in t.prompt
    assert t.reference == "    value = math.pi * r * r\n    return value\n"
    assert t.test_cases == ["assert (area(1) == math.pi) == (True)"]
    assert t.task_id.startswith("company/")


def test_mining_is_deterministic_and_bounded():
    files = [{"repo": "b", "path": f"m{i}.py", "content": SOURCE} for i in range(5)] + \
            [{"repo": "a", "path": "x.js", "content": "function f() {}"},
             {"repo": "a", "path": "bad.py", "content": "def ("}]
    first = [t.task_id for t in mine_tasks(files, max_tasks=3)]
    assert first == [t.task_id for t in mine_tasks(list(reversed(files)), max_tasks=3)]
    assert len(first) == 3 and len(set(first)) == 3


@pytest.mark.parametrize("a,b,exact,sim_min", [
    ("    return x\n", "    return x   \n\n", True, 0.99),
    ("    return x\n", "    return y\n", False, 0.5),
    ("", "    return y\n", False, 0.0),
])
def test_exact_and_similarity(a, b, exact, sim_min):
    assert exact_match(a, b) is exact
    assert edit_similarity(a, b) >= sim_min


def test_score_tasks_with_execution():
    tasks = mine_function_tasks(SOURCE, origin="r:m.py")
    ran = []

    def run(req, timeout_s):
        ran.append(req.program)
        ns = {}
        try:
            exec(req.program + "\n" + req.tests, ns)  # trusted here; the asset judges it in the sandbox
            return True
        except Exception:
            return False

    good = score_tasks(tasks, [tasks[0].reference], run_program=run)
    bad = score_tasks(tasks, ["    return 0\n"], run_program=run)
    assert good["summary"]["exact_match"] == 1.0 and good["summary"]["execution_pass_rate"] == 1.0
    assert bad["summary"]["execution_pass_rate"] == 0.0 and bad["summary"]["company_score"] < 0.6
    assert len(ran) == 2


def test_handwritten_tasks_file(tmp_path):
    p = tmp_path / "tasks.jsonl"
    p.write_text(json.dumps({"task_id": "t1", "prompt": "def f():\n", "test_cases": ["assert f() == 1"],
                             "tags": ["x"]}) + "\n\n")
    [t] = load_handwritten_tasks(p)
    assert t.task_id == "t1" and t.test_cases == ["assert f() == 1"] and t.source == "handwritten"
    p.write_text('{"prompt": "no id"}\n')
    with pytest.raises(TaskFileError, match="tasks.jsonl:1"):
        load_handwritten_tasks(p)


def test_shipped_handwritten_tasks_pass_their_own_tests():
    from codellm_assets.settings import PROJECT_ROOT
    tasks = load_handwritten_tasks(PROJECT_ROOT / "benchmarks" / "company_tasks.jsonl")
    assert len(tasks) >= 8
    for t in tasks:
        ns = {}
        exec(t.prompt + t.reference + "\n" + "\n".join(t.test_cases), ns)  # noqa: S102 - our own fixtures


def test_mined_from_a_real_git_repo(make_git_repo):
    """Files read from a temp git repo (the way the pipeline reads them) become benchmark tasks."""
    from codellm_assets.core.data.git_scan import scan_branch

    repo = make_git_repo("company", {"billing/tax.py": SOURCE, "billing/README.md": "# billing\n"})
    records = scan_branch(repo, "main", repo_name="company").records
    tasks = mine_tasks(records, max_tasks=5)
    assert [t.entry_point for t in tasks] == ["area"]
    assert tasks[0].source == "mined:company:billing/tax.py" and tasks[0].test_cases


FORGERIES = {
    "exit_zero": "    import os\n    os._exit(0)\n",
    "sys_exit": "    import sys\n    sys.exit(0)\n",
    "patch_assert_error": "    import builtins\n    builtins.AssertionError = type('A', (BaseException,), {})\n"
                          "    return 0\n",
    "always_equal": "    class Eq:\n        def __eq__(self, other):\n            return True\n    return Eq()\n",
    "wrong": "    return {}\n",
}


@pytest.mark.parametrize("attack", sorted(FORGERIES))
def test_a_company_completion_cannot_forge_its_tests(attack):
    """The hand-written tasks' tests run in the sandbox's judge: a wrong completion that exits early,
    patches assert's exception or returns an always-equal object fails; the right one passes."""
    from codellm_assets.core.evaluation.company_bench import load_handwritten_tasks
    from codellm_assets.core.evaluation.evaluate import sandbox_runner

    [task] = [t for t in load_handwritten_tasks(Path(__file__).parents[2] / "benchmarks" / "company_tasks.jsonl")
              if t.task_id == "handwritten/parse_kv"]
    run = sandbox_runner(10.0, isolation="any")
    scored = score_tasks([task, task], [task.reference, FORGERIES[attack]], run_program=run, timeout_s=10.0)
    assert [r["passed"] for r in scored["results"]] == [True, False]
