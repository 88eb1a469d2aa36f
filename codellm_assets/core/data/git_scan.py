"""Read the files at a branch's HEAD straight from git's object store, incrementally and safely.

How it reads (all through the git CLI, never through a working tree):

* ``git ls-tree -r -l -z <commit>`` lists every entry with its mode, blob sha and size WITHOUT reading
  contents, so oversize files are skipped by their listed size (a 200 MB blob is never read), symlinks
  (mode 120000: a blob holding the target path) are skipped and never followed, and submodules (mode
  160000, "commit" entries) are skipped. Nothing outside the repository can be read.
* The language comes from the path; only EXECUTABLE extensionless files are read for a shebang
  (README, LICENSE, .gitignore never are).
* ``git cat-file --batch`` streams only the blobs that are needed: blobs whose sha is already known from
  the previous snapshot are reused without reading (renames included, since the key is the blob sha).

Decoding: UTF-8 (a UTF-8 BOM is dropped); UTF-16 WITH a byte-order mark is decoded too (common for
Windows-edited C#/SQL files), everything else with NUL bytes is binary (NOT_TEXT) and undecodable bytes
are NOT_UTF8. ``bytes`` in a record is the blob's size in the repository.

Several branches: a file is kept once per branch (the record names its branch and commit, which the
dataset manifest needs); a blob shared by branches is read once. Exact dedup later drops the copies.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from codellm_assets.core.data.languages import (
    check_languages,
    language_from_path,
    language_from_shebang,
    needs_shebang,
)

# Skip reasons (keys of ScanResult.skipped).
TOO_LARGE = "TOO_LARGE"
NOT_TEXT = "NOT_TEXT"
NOT_UTF8 = "NOT_UTF8"
SYMLINK = "SYMLINK"
SUBMODULE = "SUBMODULE"
UNKNOWN_LANGUAGE = "UNKNOWN_LANGUAGE"
LANGUAGE_NOT_SELECTED = "LANGUAGE_NOT_SELECTED"
LFS_POINTER = "LFS_POINTER"
MISSING_OBJECT = "MISSING_OBJECT"

NULL_SHA = "0" * 40  # resolve_head's answer for a repository without commits
EMPTY_REPO_REASON = "empty repository: no commits yet"
_LFS_HEADER = b"version https://git-lfs.github.com/spec/"
_MODE_SYMLINK, _MODE_SUBMODULE, _MODE_EXECUTABLE = b"120000", b"160000", b"100755"
_REDIRECTING_GIT_VARS = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE", "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_DISCOVERY_ACROSS_FILESYSTEM"})


class RepoError(RuntimeError):
    """A repository that cannot be read; the message names the repo, the path and the fix."""


class PreviousFile(NamedTuple):
    """A file of the previous snapshot: its blob sha and its record (with ``content``)."""
    blob_sha: str
    record: Mapping[str, Any]


@dataclass
class ScanResult:
    """The files kept at one branch's HEAD, and why the others were skipped."""
    repo: str
    branch: str
    commit: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    read_blobs: list[str] = field(default_factory=list)  # shas read through cat-file, in order
    reused_blobs: set[str] = field(default_factory=set)  # shas not read: known from before (or a branch
    #                                                      scanned earlier in the same scan_repo call)
    reason: str | None = None  # why there is nothing to scan (an empty repository)

    @property
    def blobs_read(self) -> int:
        return len(self.read_blobs)

    @property
    def blobs_reused(self) -> int:
        return len(self.reused_blobs)


@dataclass
class RepoScan:
    """Several branches of one repository; properties add the branches up."""
    repo: str
    results: list[ScanResult]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for res in self.results for r in res.records]

    @property
    def commits(self) -> dict[str, str | None]:
        return {res.branch: res.commit for res in self.results}

    @property
    def skipped(self) -> Counter[str]:
        return sum((res.skipped for res in self.results), Counter())

    @property
    def blobs_read(self) -> int:
        return sum(res.blobs_read for res in self.results)

    @property
    def blobs_reused(self) -> int:
        return sum(res.blobs_reused for res in self.results)


@dataclass
class _BlobCache:
    """What is known per blob sha: a kept record to copy, or the reason it was skipped."""
    records: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


# ---- running git --------------------------------------------------------------------------------

def _git_env(repo: Path) -> dict[str, str]:
    # Variables that would point git at ANOTHER repository (set by a hook, say) are dropped; the rest
    # (GIT_SSH_COMMAND, GIT_ASKPASS, GIT_CONFIG_*) stay, for fetching with the user's credentials.
    env = {k: v for k, v in os.environ.items() if k not in _REDIRECTING_GIT_VARS}
    # Never discover a repository ABOVE the configured path (a plain folder inside another checkout must
    # be "not a git repository", not silently the parent's files); never prompt; parseable messages.
    env.update(GIT_CEILING_DIRECTORIES=str(repo.parent), GIT_TERMINAL_PROMPT="0", GIT_NO_REPLACE_OBJECTS="1",
               LC_ALL="C")
    return env


class RepoTimeout(RepoError):
    """A git command that did not finish in time (a hung remote, a stalled network mount): it was killed."""


def run_bounded(cmd: Sequence[str], *, env: Mapping[str, str] | None = None,
                timeout: float | None) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose timeout stops everything the command started: git runs in its own process
    group and the whole group is killed. (``subprocess.run`` kills only git itself: a hung remote helper,
    ``ssh`` or ``ext::`` command it started would live on, one more leaked process per poll.)"""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:   # the timeout, or the caller interrupted: leave no git process behind
        _kill_group(proc)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:   # a descendant that left the group (setsid) still holds a pipe
            for pipe in (proc.stdout, proc.stderr):
                pipe.close()
        raise
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _git(repo: Path, *args: str, check: bool = True,
         timeout: float | None = 300) -> subprocess.CompletedProcess:
    try:
        proc = run_bounded(["git", "-C", str(repo), *args], env=_git_env(repo), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RepoTimeout(f"git {' '.join(args[:3])} in {repo} did not finish in {timeout:.0f} s and was "
                          f"killed") from None
    if check and proc.returncode != 0:
        raise RepoError(f"git {' '.join(args[:3])} failed in {repo}: {_first_line(proc.stderr)}")
    return proc


def _first_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "(no message)"


# ---- resolving a branch ---------------------------------------------------------------------------

def _candidate_refs(branch: str) -> list[str]:
    if branch == "HEAD" or branch.startswith("refs/"):
        return [branch]
    # Local branches first; a plain clone only has origin's; tags work as a pinned "branch".
    return [f"refs/heads/{branch}", f"refs/remotes/origin/{branch}", f"refs/tags/{branch}"]


def resolve_head(repo_path: str | os.PathLike[str], branch: str = "HEAD", *,
                 repo_name: str | None = None) -> str:
    """The commit sha ``branch`` points at (``"HEAD"``: the repo's current HEAD). Fast: one git call.

    A repository without any commit gives ``NULL_SHA``; a missing path, a folder that is not a git
    repository or a branch that does not exist raise ``RepoError`` saying what to fix.
    """
    repo = Path(repo_path).expanduser().absolute()
    if repo.is_dir():
        for ref in _candidate_refs(branch):
            proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
            if proc.returncode == 0:
                return proc.stdout.decode().strip()
    return _diagnose(repo, branch, repo_name or repo.name)


def _check_repo(repo: Path, name: str) -> None:
    if not repo.exists():
        raise RepoError(f"repo '{name}': path {repo} does not exist; fix `repos[].path` in codellm.yaml "
                        f"(or set `url:` to clone it)")
    if not repo.is_dir():
        raise RepoError(f"repo '{name}': {repo} is a file, not a git repository; "
                        f"fix `repos[].path` in codellm.yaml")
    proc = _git(repo, "rev-parse", "--git-dir", check=False)
    if proc.returncode != 0:
        raise RepoError(f"repo '{name}': {repo} is not a git repository ({_first_line(proc.stderr)}); "
                        f"fix `repos[].path` in codellm.yaml to point at the root of a git checkout "
                        f"or mirror")


def _existing_refs(repo: Path) -> list[str]:
    out = _git(repo, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes", "refs/tags").stdout
    return out.decode("utf-8", "replace").split()


def _diagnose(repo: Path, branch: str, name: str) -> str:
    _check_repo(repo, name)
    refs = _existing_refs(repo)
    if not refs:
        return NULL_SHA
    branches = sorted(r.removeprefix("refs/heads/") for r in refs if r.startswith("refs/heads/"))
    others = sorted(r for r in refs if not r.startswith("refs/heads/"))
    if branch == "HEAD":
        raise RepoError(f"repo '{name}': HEAD of {repo} points at no commit (an unborn branch); existing "
                        f"branches: {branches}; set `repos[].branches` in codellm.yaml to one of them")
    raise RepoError(f"repo '{name}': branch '{branch}' does not exist in {repo}; "
                    f"existing branches: {branches}"
                    + (f" (other refs: {others[:10]})" if others else "")
                    + "; fix `repos[].branches` in codellm.yaml")


# ---- listing and reading blobs --------------------------------------------------------------------

class _Entry(NamedTuple):
    mode: bytes
    sha: str
    size: int
    path: str


def _ls_tree(repo: Path, commit: str) -> Iterator[_Entry]:
    out = _git(repo, "ls-tree", "-r", "-l", "-z", "--full-tree", commit).stdout
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, _, raw_path = item.partition(b"\t")
        mode, _type, sha, size = meta.split()
        yield _Entry(mode, sha.decode(), int(size) if size.isdigit() else 0,
                     raw_path.decode("utf-8", "backslashreplace"))


def _cat_blobs(repo: Path, shas: Sequence[str]) -> Iterator[tuple[str, bytes | None]]:
    """Stream ``(sha, content)`` through one ``git cat-file --batch``; None for a missing object."""
    if not shas:
        return
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, env=_git_env(repo))

        def feed() -> None:  # a thread, so a full stdout pipe can never deadlock our writes
            try:
                proc.stdin.write(b"".join(s.encode() + b"\n" for s in shas))
                proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        completed = False
        try:
            for sha in shas:
                header = proc.stdout.readline()
                if not header:
                    err.seek(0)
                    raise RepoError(f"git cat-file stopped early in {repo}: {_first_line(err.read())}")
                if header.endswith(b" missing\n"):
                    yield sha, None
                    continue
                size = int(header.split()[2])
                data = proc.stdout.read(size)
                if len(data) != size:
                    raise RepoError(f"git cat-file returned {len(data)} of {size} bytes of {sha} in {repo}")
                proc.stdout.read(1)  # the newline after each object
                yield sha, data
            completed = True
        finally:
            if not completed and proc.poll() is None:  # abandoned midway: git may block on a full pipe
                proc.kill()
            writer.join()
            proc.stdout.close()
            proc.wait()


def decode_blob(data: bytes) -> tuple[str | None, str | None]:
    """``(text, None)`` for a text blob, ``(None, reason)`` otherwise (see the module docstring)."""
    if data.startswith(_LFS_HEADER):
        return None, LFS_POINTER
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            text = data.decode("utf-16")  # the BOM picks the byte order and is dropped
        except UnicodeDecodeError:
            return None, NOT_UTF8
        return (None, NOT_TEXT) if "\0" in text else (text, None)
    if b"\0" in data:
        return None, NOT_TEXT
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        return None, NOT_UTF8


# ---- scanning -------------------------------------------------------------------------------------

def _record(repo_name: str, branch: str, commit: str, entry: _Entry, language: str,
            content: str) -> dict[str, Any]:
    return {"repo": repo_name, "branch": branch, "commit": commit, "path": entry.path, "language": language,
            "bytes": entry.size, "content": content, "blob_sha": entry.sha}


def _scan_commit(repo: Path, result: ScanResult, wanted: frozenset[str] | None, max_file_bytes: int,
                 cache: _BlobCache) -> None:
    """Fill ``result`` from the tree of ``result.commit``, reading only blobs ``cache`` does not know."""
    to_read: list[tuple[_Entry, str | None]] = []
    for entry in _ls_tree(repo, result.commit):
        reason, language = _classify(entry, wanted, max_file_bytes)
        if reason is None and entry.sha in cache.rejected:
            reason = cache.rejected[entry.sha]
        if reason is not None:
            result.skipped[reason] += 1
        elif entry.sha in cache.records:
            known = cache.records[entry.sha]
            language = language or known.get("language")
            if wanted is not None and language not in wanted:
                result.skipped[LANGUAGE_NOT_SELECTED] += 1
                continue
            result.records.append(_record(result.repo, result.branch, result.commit, entry, language,
                                          known["content"]))
            result.reused_blobs.add(entry.sha)
        else:
            to_read.append((entry, language))
    _read_pending(repo, result, to_read, wanted, cache)


def _classify(entry: _Entry, wanted: frozenset[str] | None,
              max_file_bytes: int) -> tuple[str | None, str | None]:
    """A skip reason known from the listing alone, else None and the language if the path tells it."""
    if entry.mode == _MODE_SUBMODULE:
        return SUBMODULE, None
    if entry.mode == _MODE_SYMLINK:
        return SYMLINK, None
    if entry.size > max_file_bytes:
        return TOO_LARGE, None
    language = language_from_path(entry.path)
    if language is None:
        # Only executable extensionless files are read for a shebang: README/LICENSE/.gitignore never are.
        shebang_script = entry.mode == _MODE_EXECUTABLE and needs_shebang(entry.path)
        return (None, None) if shebang_script else (UNKNOWN_LANGUAGE, None)
    if wanted is not None and language not in wanted:
        return LANGUAGE_NOT_SELECTED, None
    return None, language


def _read_pending(repo: Path, result: ScanResult, pending: list[tuple[_Entry, str | None]],
                  wanted: frozenset[str] | None, cache: _BlobCache) -> None:
    by_sha: dict[str, list[tuple[_Entry, str | None]]] = {}
    for entry, language in pending:
        by_sha.setdefault(entry.sha, []).append((entry, language))
    for sha, data in _cat_blobs(repo, list(by_sha)):
        result.read_blobs.append(sha)
        text, reason = decode_blob(data) if data is not None else (None, MISSING_OBJECT)
        if reason is not None:
            cache.rejected[sha] = reason
            result.skipped[reason] += len(by_sha[sha])
            continue
        for entry, language in by_sha[sha]:
            language = language or language_from_shebang(data[:256])
            if language is None:
                result.skipped[UNKNOWN_LANGUAGE] += 1
            elif wanted is not None and language not in wanted:
                result.skipped[LANGUAGE_NOT_SELECTED] += 1
            else:
                record = _record(result.repo, result.branch, result.commit, entry, language, text)
                result.records.append(record)
                cache.records[sha] = record


def _cache_from(previous: Iterable[PreviousFile] | None) -> _BlobCache:
    cache = _BlobCache()
    for prev in previous or ():
        if prev.record is not None and prev.record.get("content") is not None:
            cache.records[prev.blob_sha] = prev.record
    return cache


def previous_from_records(records: Iterable[Mapping[str, Any]],
                          branch: str | None = None) -> dict[str, PreviousFile]:
    """path -> PreviousFile from a previous snapshot's records (of one ``branch``, or all)."""
    return {r["path"]: PreviousFile(r["blob_sha"], r) for r in records
            if branch is None or r.get("branch") == branch}


def scan_branch(repo_path: str | os.PathLike[str], branch: str = "HEAD", *, repo_name: str,
                languages: Iterable[str] | None = None, max_file_bytes: int = 1_000_000,
                previous: Mapping[str, PreviousFile] | None = None) -> ScanResult:
    """Files at ``branch``'s HEAD. Blobs named in ``previous`` (path -> PreviousFile) are not read again."""
    wanted = check_languages(languages, where=f"repo '{repo_name}': languages")
    return _scan_one(Path(repo_path).expanduser(), branch, repo_name, wanted, max_file_bytes,
                     _cache_from(previous.values() if previous else None))


def _scan_one(repo: Path, branch: str, repo_name: str, wanted: frozenset[str] | None, max_file_bytes: int,
              cache: _BlobCache) -> ScanResult:
    commit = resolve_head(repo, branch, repo_name=repo_name)
    if commit == NULL_SHA:
        return ScanResult(repo_name, branch, None, reason=EMPTY_REPO_REASON)
    result = ScanResult(repo_name, branch, commit)
    _scan_commit(repo, result, wanted, max_file_bytes, cache)
    return result


def scan_repo(repo_path: str | os.PathLike[str], *, repo_name: str, branches: Sequence[str] = ("HEAD",),
              languages: Iterable[str] | None = None, max_file_bytes: int = 1_000_000,
              previous_records: Iterable[Mapping[str, Any]] | None = None) -> RepoScan:
    """Scan several branches; ``previous_records`` are the previous snapshot's records (any branch).

    Each file is kept once per branch; a blob present on several branches (or in the previous
    snapshot) is read at most once.
    """
    wanted = check_languages(languages, where=f"repo '{repo_name}': languages")
    cache = _cache_from(PreviousFile(r["blob_sha"], r) for r in previous_records or ())
    repo = Path(repo_path).expanduser()
    return RepoScan(repo_name, [_scan_one(repo, b, repo_name, wanted, max_file_bytes, cache)
                                for b in dict.fromkeys(branches)])


# ---- remote repositories --------------------------------------------------------------------------

def _redact_url(url: str) -> str:
    return re.sub(r"//[^/@]+@", "//***@", url)


def ensure_mirror(url: str, dest: str | os.PathLike[str], *, repo_name: str | None = None,
                  timeout_s: float = 1800) -> Path:
    """A bare mirror of ``url`` at ``dest``: cloned (atomically) the first time, fetched after that.

    The clone or fetch is killed after ``timeout_s`` (with every process it started): ``RepoTimeout``.
    """
    dest = Path(dest).expanduser()
    name = repo_name or dest.name
    if dest.exists():
        _check_repo(dest, name)
        proc = _remote_git(dest, name, url, timeout_s, "fetch", "--prune", "--quiet", "origin")
        if proc.returncode != 0:
            raise RepoError(f"repo '{name}': cannot fetch {_redact_url(url)} into {dest}: "
                            f"{_first_line(proc.stderr)}; check `repos[].url` in codellm.yaml "
                            f"and credentials")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.clone-"))
    try:
        proc = _remote_git(dest.parent, name, url, timeout_s, "clone", "--mirror", "--quiet", "--", url, str(tmp))
        if proc.returncode != 0:
            raise RepoError(f"repo '{name}': cannot clone {_redact_url(url)}: {_first_line(proc.stderr)}; "
                            f"check `repos[].url` in codellm.yaml and credentials")
        try:
            tmp.rename(dest)
        except OSError:
            if not dest.exists():  # lost a race to another process cloning the same mirror: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _remote_git(cwd: Path, name: str, url: str, timeout_s: float, *args: str) -> subprocess.CompletedProcess:
    try:
        return _git(cwd, *args, check=False, timeout=timeout_s)
    except RepoTimeout:
        raise RepoTimeout(f"repo '{name}': git {args[0]} of {_redact_url(url)} did not finish in {timeout_s:.0f} s "
                          f"and was killed; raise `ingest.fetch_timeout_s` in codellm.yaml if the remote is just "
                          f"slow, else check the network and `repos[].url`") from None
