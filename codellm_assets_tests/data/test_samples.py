"""Sample repos built from installed packages: real git history, deterministic shas, idempotent, atomic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.samples import SampleError, ensure_sample_repo, package_sources, plan_history
from codellm_assets_tests.conftest import git

CLICK_DIR = Path(importlib.util.find_spec("click").origin).parent


def test_builds_a_main_branch_whose_head_is_the_installed_source(tmp_path):
    repo = ensure_sample_repo(tmp_path / "samples" / "click", "click", commits=3)
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "rev-list", "--count", "main") == "3"
    tracked = set(git(repo, "ls-files").splitlines())
    expected = {f"src/click/{p.relative_to(CLICK_DIR).as_posix()}" for p in CLICK_DIR.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert tracked == expected | {"README.md"}
    assert git(repo, "show", "main:src/click/core.py") == (CLICK_DIR / "core.py").read_text().strip()
    assert git(repo, "status", "--porcelain") == ""


def test_history_adds_files_and_modifies_some(tmp_path):
    repo = ensure_sample_repo(tmp_path / "click", "click", commits=3)
    first = git(repo, "ls-tree", "-r", "--name-only", "main~2").splitlines()
    total = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert 0.4 * len(total) <= len(first) <= 0.7 * len(total)
    for rev in ("main~1", "main"):
        diff = git(repo, "diff", "--name-status", f"{rev}~1", rev)
        changes = [line.split("\t") for line in diff.splitlines()]
        assert {status for status, _ in changes} == {"A", "M"}, changes
    first_date = git(repo, "log", "-1", "--format=%ad", "--date=iso-strict", "main~2")
    assert first_date == "2024-01-01T00:00:00+00:00"


def test_same_package_version_gives_the_same_shas(tmp_path):
    a = ensure_sample_repo(tmp_path / "a" / "click", "click")
    b = ensure_sample_repo(tmp_path / "b" / "click", "click")
    assert git(a, "rev-parse", "main") == git(b, "rev-parse", "main")


def test_idempotent_and_leaves_no_temp_folders(tmp_path):
    dest = tmp_path / "samples" / "typer"
    ensure_sample_repo(dest, "typer", commits=2)
    head = git(dest, "rev-parse", "main")
    (dest / "marker").write_text("kept")
    assert ensure_sample_repo(dest, "typer", commits=5) == dest  # exists: untouched
    assert git(dest, "rev-parse", "main") == head and (dest / "marker").exists()
    assert [p.name for p in dest.parent.iterdir()] == ["typer"]


def test_one_commit_and_scanning_the_result(tmp_path):
    repo = ensure_sample_repo(tmp_path / "click1", "click", commits=1)
    assert git(repo, "rev-list", "--count", "main") == "1"
    result = scan_branch(repo, "main", repo_name="click")
    assert {r["path"] for r in result.records} >= {"src/click/core.py", "README.md"}
    assert result.skipped == {"UNKNOWN_LANGUAGE": 1}  # py.typed


def test_missing_package_is_a_clear_error_and_builds_nothing(tmp_path):
    with pytest.raises(SampleError, match=r"'no_such_pkg_xyz' is not installed.*pip install no_such_pkg_xyz"):
        ensure_sample_repo(tmp_path / "s" / "x", "no_such_pkg_xyz")
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


@pytest.mark.parametrize("n_files,commits,expected_sizes", [
    (10, 3, [5, 3, 2]),
    (10, 1, [10]),
    (1, 3, [1]),
    (4, 6, [2, 1, 1, 0, 0, 0]),
])
def test_plan_history_splits_files(n_files, commits, expected_sizes):
    files = {f"f{i}.py": b"x = 1\n" * 30 for i in range(n_files)}
    plan = plan_history(files, commits)
    added = [len([p for p in step if not any(p in earlier for earlier in plan[:i])])
             for i, step in enumerate(plan)]
    assert added == expected_sizes
    final = {}
    for step in plan:
        final.update(step)
    assert final == files  # HEAD is the source exactly


def test_package_sources_skips_bytecode():
    sources = package_sources("click")
    assert "src/click/core.py" in sources
    assert not [p for p in sources if p.endswith(".pyc") or "__pycache__" in p]
