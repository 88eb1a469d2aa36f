"""Where the per-repo code indexes live on disk, and how they are rebuilt incrementally.

Layout under ``root`` (``settings.code_index_dir``: ``<home>/data/code_index``)::

    current.json              the pointer: {"format", "repos": {repo: {dir, commit, content_hash, chunks, ...}}}
    <repo>/<content hash>/    one CodeIndex (core/data/code_index.py) per repo and content

The pointer is replaced atomically (write to a temp file, rename), and each index directory is complete
before the pointer names it, so a reader (the gateway, the benchmark) sees the old set or the new one, whole.
A repo whose files did not change (same content hash) keeps its directory: it is reused, not rebuilt. Per
repo the newest ``keep`` directories stay (the current one and the one before it, for a reader that loaded
the previous pointer a moment ago); older ones and those of repos no longer in the corpus are removed.

Readers::

    indexes = load_current(root)               # {repo: CodeIndex}; {} before the first build
    indexes["acme"].context(prefix, suffix, path="app/x.py", language="python", budget=1000)

Only the deduplicated, scrubbed corpus (the ``deduped_corpus`` asset) is ever indexed: what a prompt may show
of the repo is what training may see of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codellm_assets.core.data.code_index import (
    META_FILE,
    SHARD_CHUNKS,
    STRIDE_LINES,
    WINDOW_LINES,
    CodeIndex,
    CodeIndexError,
)
from codellm_assets.core.fsutil import atomic_write

POINTER_FILE = "current.json"
POINTER_FORMAT = 1
KEEP_DIRS = 2
# Part of every content hash: a change to the chunking, the shards (or to this format) rebuilds every index.
INDEX_LAYOUT = f"window={WINDOW_LINES},stride={STRIDE_LINES},format={POINTER_FORMAT}"


@dataclass
class RepoIndexBuild:
    """One repo's index in a build: where it is, what it holds, and whether it was rebuilt or reused."""

    repo: str
    commit: str
    content_hash: str
    dir: str                # relative to the root: "<repo>/<content hash>"
    files: int
    chunks: int
    bytes: int
    seconds: float
    rebuilt: bool
    shards: int = 0               # BM25 shards of the index (0: not known, an index reused whole)
    reused_shards: int = 0        # of a rebuilt index: shards whose files did not change, loaded not rebuilt


@dataclass
class IndexBuildSummary:
    repos: list[RepoIndexBuild] = field(default_factory=list)
    removed_dirs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rebuilt(self) -> int:
        return sum(r.rebuilt for r in self.repos)

    @property
    def reused(self) -> int:
        return sum(not r.rebuilt for r in self.repos)

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.repos)


def content_hash(files: Iterable[Mapping], shard_chunks: int = SHARD_CHUNKS) -> str:
    """A hash of one repo's indexed files (paths and contents) and of the index layout."""
    h = hashlib.sha256(f"{INDEX_LAYOUT},shards={shard_chunks}".encode())
    for f in sorted(files, key=lambda r: r["path"]):
        h.update(f["path"].encode() + b"\0" + hashlib.sha256(f["content"].encode()).digest())
    return h.hexdigest()[:20]


def repo_files(records: Iterable[Mapping]) -> dict[str, list[Mapping]]:
    """Records by repo, one per path: a path on several branches is indexed once, from the first branch by
    name (the corpus keeps both only when their contents differ)."""
    by_repo: dict[str, dict[str, Mapping]] = {}
    for r in sorted(records, key=lambda r: (r["repo"], r.get("branch") or "", r["path"])):
        by_repo.setdefault(r["repo"], {}).setdefault(r["path"], r)
    return {repo: list(paths.values()) for repo, paths in by_repo.items()}


def _commit_label(files: list[Mapping]) -> str:
    """The commit the files come from; ``branch@commit`` pairs when they come from several branches."""
    pairs = sorted({(f.get("branch") or "", f.get("commit") or "") for f in files})
    commits = sorted({c for _, c in pairs})
    if len(commits) <= 1:
        return commits[0] if commits else ""
    return ",".join(f"{b}@{c}" for b, c in pairs)


def read_pointer(root: Path) -> dict:
    """The pointer file's content; ``{"repos": {}}`` when nothing was built yet."""
    path = Path(root) / POINTER_FILE
    if not path.is_file():
        return {"format": POINTER_FORMAT, "repos": {}}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise CodeIndexError(f"{path} is not valid JSON ({e}): re-materialize the code_index asset") from None
    if not isinstance(data, dict) or not isinstance(data.get("repos"), dict):
        raise CodeIndexError(f"{path} has no 'repos' mapping: re-materialize the code_index asset")
    return data


def load_current(root: Path, repos: Iterable[str] | None = None) -> dict[str, CodeIndex]:
    """The current index of every repo the pointer names (or of ``repos`` only); a repo whose directory is
    gone or broken raises CodeIndexError naming it."""
    root = Path(root)
    wanted = None if repos is None else set(repos)
    return {repo: CodeIndex.load(root / entry["dir"]) for repo, entry in read_pointer(root)["repos"].items()
            if wanted is None or repo in wanted}


def _build_one(repo: str, files: list[Mapping], root: Path, previous: Mapping | None,
               file_cache: Path | None = None, compact_cache: bool = False,
               shard_chunks: int = SHARD_CHUNKS) -> RepoIndexBuild:
    t0 = time.perf_counter()
    digest = content_hash(files, shard_chunks)
    rel = f"{repo}/{digest}"
    target = root / rel
    n_bytes = sum(len(f["content"].encode()) for f in files)
    commit = _commit_label(files)
    if (target / META_FILE).is_file():          # same files as an index already built: reuse it
        chunks = (previous or {}).get("chunks") if (previous or {}).get("dir") == rel else None
        if chunks is None:
            chunks = len(json.loads((target / META_FILE).read_text())["chunks"])
        os.utime(target)                        # "newest" for pruning means last used, not first built
        return RepoIndexBuild(repo, commit, digest, rel, len(files), chunks, n_bytes,
                              round(time.perf_counter() - t0, 3), rebuilt=False)
    earlier = root / previous["dir"] if previous and previous.get("dir") else None    # its unchanged shards
    index = CodeIndex.build(files, repo=repo, commit=commit, cache_root=file_cache, compact_cache=compact_cache,
                            shard_chunks=shard_chunks, reuse=earlier)
    index.save(target)
    return RepoIndexBuild(repo, commit, digest, rel, len(files), len(index.chunks), n_bytes,
                          round(time.perf_counter() - t0, 3), rebuilt=True, shards=len(index.shards),
                          reused_shards=index.reused_shards)


def _prune(root: Path, current: Mapping[str, str], keep: int) -> list[str]:
    """Remove index dirs beyond the newest ``keep`` per repo (the current one always stays) and every dir
    of a repo not in ``current`` ({repo: current dir}). Returns what was removed, relative to the root."""
    removed = []
    for repo_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        dirs = [d for d in repo_dir.iterdir() if d.is_dir()]
        cur = current.get(repo_dir.name)
        if cur is None:
            shutil.rmtree(repo_dir, ignore_errors=True)
            removed.append(repo_dir.name)
            continue
        others = sorted((d for d in dirs if f"{repo_dir.name}/{d.name}" != cur),
                        key=lambda d: d.stat().st_mtime, reverse=True)
        for d in others[max(keep - 1, 0):]:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"{repo_dir.name}/{d.name}")
    return removed


def build_repo_indexes(records: Iterable[Mapping], root: Path, *, keep: int = KEEP_DIRS,
                       file_cache: Path | None = None, compact_cache: bool = False,
                       shard_chunks: int = SHARD_CHUNKS) -> IndexBuildSummary:
    """Index every repo of ``records`` (corpus rows: repo, branch, commit, path, content) under ``root``,
    reusing the index of a repo whose files did not change, then point ``current.json`` at the new set and
    prune old directories. A repo with no indexable code (only blank files) is left out, with no error.
    ``file_cache``: the blob cache root where each file's definitions are kept across builds and between the
    indexes built from the same files (CodeIndex.build); ``compact_cache``: ``records`` are all of each
    repo's files (the corpus), so the cache may drop the rest."""
    t0 = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    previous = read_pointer(root)["repos"]
    summary = IndexBuildSummary()
    for repo, files in sorted(repo_files(records).items()):
        try:
            summary.repos.append(_build_one(repo, files, root, previous.get(repo), file_cache, compact_cache,
                                            shard_chunks))
        except ValueError as e:
            if "no code to index" not in str(e):
                raise
    entries = {r.repo: {k: v for k, v in asdict(r).items()
                        if k not in ("repo", "seconds", "rebuilt", "shards", "reused_shards")}
               for r in summary.repos}
    pointer = {"format": POINTER_FORMAT, "built_at": time.time(), "repos": entries}
    atomic_write(root / POINTER_FILE, lambda tmp: Path(tmp).write_text(json.dumps(pointer, indent=1,
                                                                                  sort_keys=True)))
    summary.removed_dirs = _prune(root, {r.repo: r.dir for r in summary.repos}, keep)
    summary.seconds = round(time.perf_counter() - t0, 3)
    return summary
