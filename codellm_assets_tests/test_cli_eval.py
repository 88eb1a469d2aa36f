"""`codellm eval ...` as a user runs it: a real process, JSON alone on stdout, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from codellm_assets.core.evaluation.humaneval import load_problems


def codellm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codellm_assets.cli", *args], capture_output=True, text=True,
                          check=False,
                          timeout=timeout)


@pytest.fixture(scope="module")
def first_problems() -> dict:
    return load_problems(8)


def write_samples(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_humaneval_prints_only_the_pass_at_k_json_and_writes_results(tmp_path, first_problems):
    rows = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in first_problems.items()]
    rows += [{"task_id": t, "completion": "    pass\n"} for t in first_problems]
    samples = write_samples(tmp_path / "samples.jsonl", rows)
    proc = codellm("eval", "humaneval", "--completions", str(samples), "--k", "1,2", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"pass@1": 0.5, "pass@2": 1.0}
    assert proc.stdout.count("\n") == 1, "stdout must hold the JSON line only"
    assert "isolation" in proc.stderr
    results = [json.loads(x) for x in Path(f"{samples}_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True] * 8 + [False] * 8


def test_humaneval_missing_file_exits_nonzero_naming_it(tmp_path):
    proc = codellm("eval", "humaneval", "--completions", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "nope.jsonl" in proc.stderr


def test_humaneval_file_without_usable_samples_fails(tmp_path):
    samples = write_samples(tmp_path / "bad.jsonl", [{"task_id": "Other/1", "completion": "x"}])
    proc = codellm("eval", "humaneval", "--completions", str(samples))
    assert proc.returncode == 1 and proc.stdout == ""
    assert "no usable sample" in proc.stderr


def test_humaneval_bad_k_is_refused(tmp_path):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    pass\n"}])
    proc = codellm("eval", "humaneval", "--completions", str(samples), "--k", "0,x")
    assert proc.returncode != 0 and "--k" in proc.stderr


def test_humaneval_isolation_comes_from_the_flag_or_the_env(tmp_path, monkeypatch):
    samples = write_samples(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    pass\n"}])
    proc = codellm("eval", "humaneval", "--completions", str(samples), "--isolation", "chroot")
    assert proc.returncode == 2 and "--isolation must be full, reduced or any" in proc.stderr
    monkeypatch.setenv("CODELLM__EVAL__ISOLATION", "nothing")
    proc = codellm("eval", "humaneval", "--completions", str(samples))
    assert proc.returncode == 2 and "'nothing'" in proc.stderr


def test_isolation_command_reports_the_mode():
    proc = codellm("eval", "isolation")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"].split(":")[0] in ("full", "reduced") and "netns" in report["features"]


def test_buggy_command_on_a_file(tmp_path):
    snippet = tmp_path / "snippet.py"
    snippet.write_text("def f():\n    return missing_name\n")
    proc = codellm("eval", "buggy", str(snippet))
    assert proc.returncode == 0, proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["buggy"] is True and any("F821" in f for f in verdict["lint_findings"])
