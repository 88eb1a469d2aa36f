"""The per-repo code index store: one index per repo and content under the root, current.json pointing at
them; an unchanged repo's index is reused, a changed one rebuilt; old dirs pruned (newest 2 stay); a repo
gone from the corpus is gone from the store; load_current gives each repo's CodeIndex."""

from __future__ import annotations

import json
import os

import pytest

from codellm_assets.core.data.code_index import CodeIndexError
from codellm_assets.core.data.code_index_store import (
    POINTER_FILE,
    build_repo_indexes,
    content_hash,
    load_current,
    read_pointer,
)
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.data.test_code_index import LEDGER, NOISE, USER


def _records(repo_path, name):
    return scan_branch(repo_path, "HEAD", repo_name=name).records


@pytest.fixture
def two_repos(make_git_repo):
    acme = make_git_repo("acme", {"billing/ledger.py": LEDGER, "app/close.py": USER, **NOISE})
    tools = make_git_repo("tools", {"tools/fmt.py": "def fmt_money(cents):\n    return f'{cents / 100:.2f}'\n"})
    return acme, tools


def test_build_reuse_rebuild_and_prune(two_repos, tmp_path):
    acme, tools = two_repos
    root = tmp_path / "code_index"
    first = build_repo_indexes(_records(acme, "acme") + _records(tools, "tools"), root)
    assert (first.rebuilt, first.reused) == (2, 0)
    pointer = read_pointer(root)
    assert sorted(pointer["repos"]) == ["acme", "tools"]
    entry = pointer["repos"]["acme"]
    assert entry["dir"] == f"acme/{entry['content_hash']}" and entry["chunks"] == first.repos[0].chunks > 0
    assert entry["commit"] == _records(acme, "acme")[0]["commit"] and entry["files"] == 6
    assert (root / entry["dir"] / "chunks.json").is_file()

    indexes = load_current(root)
    hits = indexes["acme"].search("reconcile_ledger(client, entries)", k=1, exclude_paths=["app/close.py"])
    assert hits[0][0].path == "billing/ledger.py"

    # Nothing changed: both reused, same dirs, the pointer names the same indexes.
    again = build_repo_indexes(_records(acme, "acme") + _records(tools, "tools"), root)
    assert (again.rebuilt, again.reused) == (0, 2) and again.removed_dirs == []
    assert read_pointer(root)["repos"]["acme"]["dir"] == entry["dir"]

    # One file of acme changes: acme rebuilt into a new dir, tools reused; the old acme dir stays (2 kept).
    commit_files(acme, {"billing/ledger.py": LEDGER + "\n\ndef void_entry(entry):\n    return None\n"})
    changed = build_repo_indexes(_records(acme, "acme") + _records(tools, "tools"), root)
    assert {r.repo: r.rebuilt for r in changed.repos} == {"acme": True, "tools": False}
    new_dir = read_pointer(root)["repos"]["acme"]["dir"]
    assert new_dir != entry["dir"] and sorted(p.name for p in (root / "acme").iterdir()) == sorted(
        [entry["dir"].split("/")[1], new_dir.split("/")[1]])
    assert "void_entry" in load_current(root, ["acme"])["acme"].definitions

    # A third content: the oldest acme dir is pruned; tools leaves the corpus: its dirs go too.
    os.utime(root / entry["dir"], (1, 1))  # mtimes decide which is older: make it deterministic
    commit_files(acme, {"app/close.py": USER + "\n\ndef close_year(c, e):\n    return close_month(c, e)\n"})
    third = build_repo_indexes(_records(acme, "acme"), root)
    assert sorted(third.removed_dirs) == sorted([entry["dir"], "tools"])
    assert len(list((root / "acme").iterdir())) == 2 and not (root / "tools").exists()
    assert sorted(read_pointer(root)["repos"]) == ["acme"]


def test_content_hash_follows_files_not_order():
    a = [{"path": "a.py", "content": "x = 1\n"}, {"path": "b.py", "content": "y = 2\n"}]
    assert content_hash(a) == content_hash(list(reversed(a)))
    assert content_hash(a) != content_hash([a[0], {"path": "b.py", "content": "y = 3\n"}])
    assert content_hash(a) != content_hash([a[0], {"path": "c.py", "content": "y = 2\n"}])


def test_blank_repo_is_left_out_and_broken_pointer_is_named(tmp_path):
    root = tmp_path / "ix"
    summary = build_repo_indexes([{"repo": "blank", "path": "a.py", "content": "\n\n", "commit": "c1"}], root)
    assert summary.repos == [] and read_pointer(root)["repos"] == {}
    assert load_current(tmp_path / "nothing-built") == {}
    (root / POINTER_FILE).write_text("{not json")
    with pytest.raises(CodeIndexError, match="re-materialize the code_index asset"):
        load_current(root)
    (root / POINTER_FILE).write_text(json.dumps({"repos": {"acme": {"dir": "acme/gone"}}}))
    with pytest.raises(CodeIndexError, match="acme/gone"):
        load_current(root)
