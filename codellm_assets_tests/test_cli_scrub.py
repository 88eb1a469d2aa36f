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
CONTACTS = "owner: jane.doe@acme-corp.com\nhost: 10.4.2.9\n"


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
    (src / "app" / "contacts.yaml").write_text(CONTACTS)
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
    assert (tmp_path / "out" / "app" / "contacts.yaml").read_text() == CONTACTS


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
    """Like cp: FILE OUT writes the file OUT (not a directory named OUT)."""
    out = tmp_path / "one.py"
    proc = subprocess.run([sys.executable, "-m", "codellm_assets.cli", "scrub", str(tree / "app" / "config.py"),
                           str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.read_text().count("<SECRET:") == 2 and GITHUB not in out.read_text()


def test_scrub_file_to_file_replaces_an_existing_file(tree, tmp_path):
    out = tmp_path / "nested" / "clean.py"        # parents are created
    assert invoke(str(tree / "app" / "config.py"), str(out)).exit_code == 0
    assert out.read_text() == 'TOKEN = "<SECRET:github_token>"\nDB_PASSWORD = "<SECRET:password>"\n'
    out.write_text("old content\n")
    result = invoke(str(tree / "app" / "clean.py"), str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text() == "def add(a, b):\n    return a + b\n"
    assert [p.name for p in out.parent.iterdir()] == ["clean.py"]      # no temporary directory left behind


@pytest.mark.parametrize("existing", [True, False])
def test_scrub_file_to_dir_slash_or_existing_dir_writes_dir_file(tree, tmp_path, existing):
    target = tmp_path / "outdir"
    if existing:
        target.mkdir()
    dst = str(target) if existing else str(target) + "/"
    result = invoke(str(tree / "app" / "config.py"), dst)
    assert result.exit_code == 0, result.output
    assert (target / "config.py").read_text().count("<SECRET:") == 2
    assert [p.name for p in target.iterdir()] == ["config.py"]


def test_scrub_dir_to_out_is_unchanged(tree, tmp_path):
    assert invoke(str(tree), str(tmp_path / "o1")).exit_code == 0
    assert invoke(str(tree), str(tmp_path / "o2") + "/").exit_code == 0
    for out in ("o1", "o2"):
        assert (tmp_path / out / "app" / "config.py").read_text().count("<SECRET:") == 2


def test_scrub_file_onto_itself_is_refused(tree):
    src = tree / "app" / "config.py"
    before = src.read_text()
    result = invoke(str(src), str(src))
    assert result.exit_code == 2 and "is the source file itself" in result.stderr
    assert src.read_text() == before


def test_scrub_binary_file_to_file_writes_nothing(tree, tmp_path):
    result = invoke(str(tree / "logo.png"), str(tmp_path / "logo.out"))
    assert result.exit_code == 0 and "nothing was written" in result.stderr
    assert not (tmp_path / "logo.out").exists() and list(tmp_path.glob(".codellm-scrub-*")) == []
