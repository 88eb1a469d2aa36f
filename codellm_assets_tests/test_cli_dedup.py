"""`codellm dedup` as a user runs it: real git checkouts in a directory, a real process, the keep list."""

from __future__ import annotations

import inspect
import json
import json.decoder
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from codellm_assets.core.data.decontam import humaneval_items

SOURCE = inspect.getsource(json.decoder)
OTHER = inspect.getsource(textwrap)
PROMPT = dict(humaneval_items())["HumanEval/2/prompt"]


def codellm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codellm_assets.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def summary_row(stdout: str, label: str) -> str:
    """The value cell of a row of the summary table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{stdout}")


def write_config(tmp_path: Path, **dedup) -> Path:
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(yaml.safe_dump({"dedup": dedup, "eval": {"company_tasks_file": None}}))
    return cfg


@pytest.fixture
def corpus(tmp_path, make_git_repo) -> Path:
    """Two checkouts: an exact copy across repos, a near copy, a contaminated file, binary and Latin-1."""
    root = tmp_path / "src"
    license_header = "# SPDX-License-Identifier: Apache-2.0\n# Copyright 2024 Acme Corp.\n"
    make_git_repo(
        "src/alpha",
        {
            "decoder.py": SOURCE,
            "wrap.py": OTHER,
            "logo.png": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            "legacy.py": "# caf\xe9\nx = 1\n".encode("latin-1"),
        },
    )
    make_git_repo(
        "src/beta",
        {
            "lib/decoder.py": SOURCE,  # exact copy in another repo
            "decoder_v2.py": license_header + SOURCE.replace("scanstring", "scan_str", 3),  # near copy
            "solutions.py": "import math\n\n" + PROMPT + "    return number % 1.0\n",  # HumanEval/2
        },
    )
    return root


def test_dedup_writes_the_sorted_keep_list_and_a_summary(tmp_path, corpus):
    keep = tmp_path / "out" / "keep.txt"
    report = tmp_path / "out" / "report.json"
    proc = codellm(
        "dedup",
        str(corpus),
        "--keep-list",
        str(keep),
        "--report",
        str(report),
        "--config",
        str(write_config(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    # the near copy is the longest file of its cluster (a license header was added): it is the one kept
    assert keep.read_text().splitlines() == ["alpha/wrap.py", "beta/decoder_v2.py"]
    assert summary_row(proc.stdout, "text files") == "5"
    assert (
        summary_row(proc.stdout, "skipped: binary") == summary_row(proc.stdout, "skipped: not UTF-8") == "1"
    )
    assert summary_row(proc.stdout, "decontam hits").startswith("1 (against 328 eval items)")
    assert summary_row(proc.stdout, "exact duplicates") == summary_row(proc.stdout, "near duplicates") == "1"
    assert summary_row(proc.stdout, "dedup ratio") == "0.500"  # 2 of the 4 clean files
    data = json.loads(report.read_text())
    assert data["decontam_hits"] == {
        "beta/solutions.py": [
            "HumanEval/2/prompt:docstring",
            "HumanEval/2/prompt:ngram",
            "HumanEval/2/prompt:signature",
        ]
    }
    assert data["exact_duplicates"] == {"beta/lib/decoder.py": "beta/decoder_v2.py"}
    assert data["near_duplicates"] == {"alpha/decoder.py": "beta/decoder_v2.py"}
    assert data["skipped"] == {"binary": 1, "not UTF-8": 1}
    assert not any(".git/" in line for line in keep.read_text().splitlines())


def test_decontamination_can_be_switched_off_and_eval_files_added(tmp_path, corpus):
    keep = tmp_path / "keep.txt"
    cfg = write_config(tmp_path, decontaminate=False)
    proc = codellm("dedup", str(corpus), "-o", str(keep), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert "beta/solutions.py" in keep.read_text().splitlines()

    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"task_id": "company/wrap", "prompt": OTHER[:3000]}) + "\n")
    proc = codellm(
        "dedup",
        str(corpus),
        "-o",
        str(keep),
        "--config",
        str(write_config(tmp_path)),
        "--eval-file",
        str(tasks),
    )
    assert proc.returncode == 0, proc.stderr
    assert keep.read_text().splitlines() == ["beta/decoder_v2.py"]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [str(tmp / "missing"), "-o", str(tmp / "k.txt")], "missing is not a directory"),
        (
            lambda tmp: [str(tmp), "-o", str(tmp / "k.txt"), "--eval-file", str(_bad_tasks(tmp))],
            "bad.jsonl:1",
        ),
        (
            lambda tmp: [str(tmp), "-o", str(tmp / "k.txt"), "--config", str(_bad_config(tmp))],
            "dedup.threshold",
        ),
    ],
)
def test_bad_input_exits_2_naming_it(tmp_path, make_args, message):
    proc = codellm("dedup", *make_args(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "k.txt").exists()


def _bad_tasks(tmp: Path) -> Path:
    (tmp / "bad.jsonl").write_text("not json\n")
    return tmp / "bad.jsonl"


def _bad_config(tmp: Path) -> Path:
    (tmp / "bad.yaml").write_text("dedup:\n  threshold: 1.5\n")
    return tmp / "bad.yaml"
