"""git_scan against real git repositories made in tmp_path: safety, skip reasons, incremental reads."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from codellm_assets.core.data import git_scan
from codellm_assets.core.data.git_scan import (
    NULL_SHA,
    PreviousFile,
    RepoError,
    ensure_mirror,
    previous_from_records,
    resolve_head,
    scan_branch,
    scan_repo,
)
from codellm_assets_tests.conftest import commit_files, git

CODE = "def add(a, b):\n    return a + b\n"


def blob_sha(repo: Path, path: str, rev: str = "HEAD") -> str:
    return git(repo, "rev-parse", f"{rev}:{path}")


def by_path(records: list[dict]) -> dict[str, dict]:
    return {r["path"]: r for r in records}


def test_records_carry_repo_branch_commit_language_and_content(make_git_repo):
    repo = make_git_repo("svc", {"app/main.py": CODE, "web/ui.ts": "export const x = 1;\n",
                                 "README": "hello\n", "logo.png": b"\x89PNG\r\n\x1a\n\0\0"})
    head = git(repo, "rev-parse", "HEAD")
    result = scan_branch(repo, "main", repo_name="svc")
    assert result.commit == head
    assert by_path(result.records)["app/main.py"] == {
        "repo": "svc", "branch": "main", "commit": head, "path": "app/main.py", "language": "python",
        "bytes": len(CODE), "content": CODE, "blob_sha": blob_sha(repo, "app/main.py")}
    assert by_path(result.records)["web/ui.ts"]["language"] == "typescript"
    # README (no extension, not executable) and the PNG are skipped by their names, never read.
    assert result.skipped == {"UNKNOWN_LANGUAGE": 2}
    assert sorted(result.read_blobs) == sorted([blob_sha(repo, "app/main.py"), blob_sha(repo, "web/ui.ts")])


def test_executable_extensionless_scripts_are_detected_by_shebang(make_git_repo):
    repo = make_git_repo("scripts")
    for name, text in {"bin/deploy": "#!/usr/bin/env python3\nprint('hi')\n",
                       "bin/run": "#!/bin/bash\necho run\n", "bin/data": "no shebang here\n"}.items():
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text(text)
        (repo / name).chmod(0o755)
    (repo / "NOTES").write_text("#!/usr/bin/env python3\nnot executable, never read\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "scripts")
    result = scan_branch(repo, "HEAD", repo_name="scripts")
    assert {r["path"]: r["language"] for r in result.records} == {"bin/deploy": "python", "bin/run": "shell"}
    assert result.skipped == {"UNKNOWN_LANGUAGE": 2}
    assert blob_sha(repo, "NOTES") not in result.read_blobs


def test_language_selection_and_unknown_language_names(make_git_repo):
    repo = make_git_repo("poly", {"a.py": CODE, "b.go": "package b\n", "c.rs": "fn main() {}\n"})
    result = scan_branch(repo, "main", repo_name="poly", languages=["python", "Go"])
    assert sorted(r["language"] for r in result.records) == ["go", "python"]
    assert result.skipped == {"LANGUAGE_NOT_SELECTED": 1}
    assert blob_sha(repo, "c.rs") not in result.read_blobs
    with pytest.raises(ValueError, match="cobol"):
        scan_branch(repo, "main", repo_name="poly", languages=["cobol"])


def test_200mb_blob_is_skipped_by_its_listed_size_without_being_read(make_git_repo):
    repo = make_git_repo("big", {"small.py": CODE})
    with open(repo / "dump.py", "wb") as f:  # sparse: 200 MB on paper, nothing in memory or on disk
        f.truncate(200 * 2**20)
    git(repo, "add", "dump.py")
    git(repo, "commit", "-qm", "big")
    tracemalloc.start()
    try:
        result = scan_branch(repo, "main", repo_name="big", max_file_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.skipped == {"TOO_LARGE": 1}
    assert [r["path"] for r in result.records] == ["small.py"]
    assert result.read_blobs == [blob_sha(repo, "small.py")]
    assert peak < 5 * 2**20, f"scan allocated {peak / 2**20:.1f} MB at peak"


def test_encodings_binary_utf16_and_non_utf8(make_git_repo):
    utf16 = "// grüße\nclass A {}\n"
    repo = make_git_repo("enc", {
        "latin1.py": "caf\xe9 = 1\n".encode("latin-1"),
        "utf16_bom.cs": utf16.encode("utf-16"),             # with BOM: decoded
        "utf16_nobom.cs": utf16.encode("utf-16-le"),        # no BOM: NUL bytes, binary
        "binary.c": b"int x;\0\0\x01\x02",
        "bom8.py": b"\xef\xbb\xbfx = 1\n",                  # UTF-8 BOM: dropped from the text
        "lfs.py": b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n",
    })
    result = scan_branch(repo, "main", repo_name="enc")
    records = by_path(result.records)
    assert records["utf16_bom.cs"]["content"] == utf16
    assert records["bom8.py"]["content"] == "x = 1\n"
    assert set(records) == {"utf16_bom.cs", "bom8.py"}
    assert result.skipped == {"NOT_UTF8": 1, "NOT_TEXT": 2, "LFS_POINTER": 1}


@pytest.mark.parametrize("data,expected", [
    (b"x = 1\n", ("x = 1\n", None)),
    ("é\n".encode(), ("é\n", None)),
    (b"\xff\xfeA\x00", ("A", None)),
    (b"\xfe\xff\x00A", ("A", None)),
    (b"\xff\xfe\x00\xd8", (None, "NOT_UTF8")),  # a lone surrogate
    (b"\xff\xfe\x00\x00A\x00\x00\x00", (None, "NOT_TEXT")),  # UTF-32: NULs once decoded
    (b"\xe9t\xe9", (None, "NOT_UTF8")),
    (b"a\0b", (None, "NOT_TEXT")),
])
def test_decode_blob_table(data, expected):
    assert git_scan.decode_blob(data) == expected


def test_symlinks_are_never_followed(make_git_repo, tmp_path):
    repo = make_git_repo("links", {"ok.py": CODE})
    outside = tmp_path / "outside_secret.py"
    outside.write_text("SECRET = 'outside the repo'\n")
    os.symlink("/etc/passwd", repo / "passwd.py")
    os.symlink(str(outside), repo / "secret.py")
    os.symlink("loop_b.py", repo / "loop_a.py")  # a loop: a -> b -> a
    os.symlink("loop_a.py", repo / "loop_b.py")
    os.symlink("/etc", repo / "etc")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "links")
    result = scan_branch(repo, "main", repo_name="links")
    assert [r["path"] for r in result.records] == ["ok.py"]
    assert result.skipped == {"SYMLINK": 5}
    assert result.read_blobs == [blob_sha(repo, "ok.py")]
    assert not any("root:" in r["content"] or "SECRET" in r["content"] for r in result.records)


def test_submodules_are_skipped_and_counted(make_git_repo):
    repo = make_git_repo("parent", {"main.py": CODE})
    sub = make_git_repo("child", {"lib.py": CODE})
    sub_head = git(sub, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sub_head},vendor/child")
    git(repo, "commit", "-qm", "submodule")
    result = scan_branch(repo, "main", repo_name="parent")
    assert [r["path"] for r in result.records] == ["main.py"]
    assert result.skipped == {"SUBMODULE": 1}


def test_empty_repo_is_an_empty_result_with_a_reason(make_git_repo):
    repo = make_git_repo("empty")
    assert resolve_head(repo, "HEAD") == NULL_SHA
    assert resolve_head(repo, "main") == NULL_SHA
    result = scan_branch(repo, "HEAD", repo_name="empty")
    assert (result.records, result.commit, result.reason) == ([], None, git_scan.EMPTY_REPO_REASON)
    assert scan_repo(repo, repo_name="empty", branches=["main"]).records == []


def test_missing_branch_names_the_branch_and_lists_existing_ones(make_git_repo):
    repo = make_git_repo("br", {"a.py": CODE})
    git(repo, "branch", "dev")
    with pytest.raises(RepoError) as err:
        scan_branch(repo, "release", repo_name="br")
    message = str(err.value)
    assert "'release'" in message and "['dev', 'main']" in message and "repos[].branches" in message
    git(repo, "symbolic-ref", "HEAD", "refs/heads/unborn")
    with pytest.raises(RepoError, match=r"HEAD of .* points at no commit.*\['dev', 'main'\]"):
        resolve_head(repo, "HEAD", repo_name="br")


def test_missing_path_and_non_git_folders(tmp_path, make_git_repo):
    missing = tmp_path / "nowhere"
    expected = r"repo 'ghost'.*nowhere.*does not exist.*fix `repos\[\].path` in codellm.yaml"
    with pytest.raises(RepoError, match=expected):
        scan_branch(missing, "HEAD", repo_name="ghost")
    # A plain folder INSIDE another checkout must not silently scan the enclosing repository.
    outer = make_git_repo("outer", {"a.py": CODE})
    (outer / "plain").mkdir()
    with pytest.raises(RepoError, match=r"repo 'plain'.*not a git repository.*repos\[\].path"):
        resolve_head(outer / "plain", "HEAD", repo_name="plain")
    with pytest.raises(RepoError, match="is a file"):
        resolve_head(outer / "a.py", "HEAD", repo_name="afile")


def test_incremental_rescan_reads_only_changed_and_new_blobs(make_git_repo):
    files = {f"pkg/m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(6)}
    repo = make_git_repo("inc", files)
    first = scan_branch(repo, "main", repo_name="inc")
    assert first.blobs_read == 6 and first.blobs_reused == 0
    git(repo, "mv", "pkg/m5.py", "pkg/renamed.py")
    new_head = commit_files(repo, {"pkg/m0.py": "def f0():\n    return 'changed'\n", "pkg/new.py": CODE})
    previous = previous_from_records(first.records)
    second = scan_branch(repo, "main", repo_name="inc", previous=previous)
    assert second.commit == new_head
    assert sorted(second.read_blobs) == sorted([blob_sha(repo, "pkg/m0.py"), blob_sha(repo, "pkg/new.py")])
    assert second.blobs_reused == 5  # m1..m4 and the renamed m5
    records = by_path(second.records)
    assert records["pkg/m0.py"]["content"] == "def f0():\n    return 'changed'\n"
    assert records["pkg/renamed.py"]["content"] == files["pkg/m5.py"]
    assert {r["commit"] for r in second.records} == {new_head}
    assert "pkg/m5.py" not in records
    # Nothing moved: nothing read at all.
    third = scan_branch(repo, "main", repo_name="inc", previous={p: PreviousFile(r["blob_sha"], r)
                                                                 for p, r in records.items()})
    assert third.read_blobs == [] and len(third.records) == 7


def test_several_branches_read_each_shared_blob_once(make_git_repo):
    repo = make_git_repo("multi", {"shared.py": CODE, "only_main.py": "x = 1\n"})
    git(repo, "checkout", "-qb", "dev")
    commit_files(repo, {"only_dev.py": "y = 2\n"})
    git(repo, "tag", "v1")
    scan = scan_repo(repo, repo_name="multi", branches=["main", "dev", "main"])
    assert [r.branch for r in scan.results] == ["main", "dev"]
    assert sorted((r["branch"], r["path"]) for r in scan.records) == [
        ("dev", "only_dev.py"), ("dev", "only_main.py"), ("dev", "shared.py"),
        ("main", "only_main.py"), ("main", "shared.py")]
    assert scan.blobs_read == 3 and scan.blobs_reused == 2
    assert scan.commits == {"main": git(repo, "rev-parse", "main"), "dev": git(repo, "rev-parse", "dev")}
    assert resolve_head(repo, "v1") == git(repo, "rev-parse", "dev")
    rescan = scan_repo(repo, repo_name="multi", branches=["main", "dev"], previous_records=scan.records)
    assert rescan.blobs_read == 0 and len(rescan.records) == 5


def test_mirror_of_a_file_url_is_cloned_then_fetched(make_git_repo, tmp_path):
    source = make_git_repo("upstream", {"a.py": CODE})
    dest = tmp_path / "mirrors" / "upstream.git"
    assert ensure_mirror(source.as_uri(), dest, repo_name="upstream") == dest
    assert git(dest, "rev-parse", "--is-bare-repository") == "true"
    assert [r["path"] for r in scan_branch(dest, "main", repo_name="upstream").records] == ["a.py"]
    moved = commit_files(source, {"b.py": CODE})
    ensure_mirror(source.as_uri(), dest, repo_name="upstream")
    assert resolve_head(dest, "main") == moved
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temp clone left


def test_mirror_errors_name_the_repo_and_hide_credentials(tmp_path, free_port):
    with pytest.raises(RepoError, match=r"repo 'gone'.*cannot clone.*repos\[\].url"):
        ensure_mirror((tmp_path / "missing").as_uri(), tmp_path / "m" / "gone.git", repo_name="gone")
    url = f"http://alice:s3cret@127.0.0.1:{free_port}/x.git"  # nothing listens: refused at once
    with pytest.raises(RepoError) as err:
        ensure_mirror(url, tmp_path / "m" / "x.git", repo_name="x")
    assert "s3cret" not in str(err.value) and "***@127.0.0.1" in str(err.value)
    assert not list((tmp_path / "m").iterdir())
