"""`codellm scrub SRC DST` as a user runs it: a real directory tree, typer's runner and a real process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from codellm_assets.cli import app
from codellm_assets.testing.secrets_labelled import FakeSecrets

F = FakeSecrets(99)
GITHUB = "ghp_" + F.chars(36)
PASSWORD = F.password()


def row(stdout: str, label: str) -> str:
    """The count cell of a row of the summary table."""
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == label:
            return cells[1]
    raise AssertionError(f"no row {label!r} in:\n{stdout}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "repo"
    (src / "app").mkdir(parents=True)
    (src / "app" / "config.py").write_text(f'TOKEN = "{GITHUB}"\nDB_PASSWORD = "{PASSWORD}"\n')
    (src / "app" / "contacts.yaml").write_text("owner: jane.doe@acme-corp.com\nhost: 10.4.2.9\n")
    (src / "app" / "clean.py").write_text("def add(a, b):\n    return a + b\n")
    (src / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01")
    (src / "notes.txt").write_bytes("résumé\n".encode("latin-1"))
    return src


def invoke(*args: str):
    return CliRunner().invoke(app, ["scrub", *args], env={"COLUMNS": "200"})


def test_scrub_writes_copies_and_prints_summary(tree, tmp_path):
    dst = tmp_path / "out"
    result = invoke(str(tree), str(dst))
    assert result.exit_code == 0, result.output
    config = (dst / "app" / "config.py").read_text()
    assert GITHUB not in config and PASSWORD not in config
    assert config == 'TOKEN = "<SECRET:github_token>"\nDB_PASSWORD = "<SECRET:password>"\n'
    assert (dst / "app" / "contacts.yaml").read_text() == "owner: <EMAIL>\nhost: <IP>\n"
    assert (dst / "app" / "clean.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert not (dst / "logo.png").exists() and not (dst / "notes.txt").exists()
    out = result.stdout
    for label, count in [("github_token", "1"), ("password", "1"), ("email", "1"), ("ip", "1"),
                         ("total redactions", "4"), ("files written", "3"),
                         ("files skipped: NOT_TEXT", "1"), ("files skipped: NOT_UTF8", "1")]:
        assert row(out, label) == count


def test_scrub_settings_come_from_config(tree, tmp_path):
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(yaml.safe_dump({"scrub": {"redact_emails": False, "redact_ips": False}}))
    result = invoke(str(tree), str(tmp_path / "out"), "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "app" / "contacts.yaml").read_text() == "owner: jane.doe@acme-corp.com\nhost: 10.4.2.9\n"


@pytest.mark.parametrize(("src", "dst", "message"), [
    ("missing", "out", "does not exist"),
    ("repo", "repo/scrubbed", "inside the source"),
])
def test_scrub_bad_paths_exit_nonzero_with_a_clear_message(tree, tmp_path, src, dst, message):
    result = invoke(str(tmp_path / src), str(tmp_path / dst))
    assert result.exit_code == 2
    assert message in result.stderr and str(tmp_path / src) in result.stderr
    assert not (tmp_path / "repo" / "scrubbed").exists()


def test_scrub_bad_config_exits_nonzero(tree, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"scrub": {"entropy_threshold": -1}}))
    result = invoke(str(tree), str(tmp_path / "out"), "--config", str(cfg))
    assert result.exit_code == 2 and "entropy_threshold" in result.stderr


def test_scrub_single_file_in_a_real_process(tree, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codellm_assets.cli", "scrub", str(tree / "app" / "config.py"),
                           str(tmp_path / "one")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "one" / "config.py").read_text().count("<SECRET:") == 2
