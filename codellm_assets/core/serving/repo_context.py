"""Repository context for completions: which configured repo a request names, and the retrieved snippets of
that repo's code index (core/data/code_index_store.py) to put before the prompt.

A request names its repo by Tabby's ``segments.git_url``, an ``x-codellm-repo`` header or a ``repo`` field;
any of them may be the repo's settings name, a clone URL in any usual form (``git@host:org/x.git``,
``ssh://git@host:22/org/x``, ``https://user@host/org/x.git``: all normalise to ``host/org/x``) or a local
path. URLs match the repo's ``url``, its ``remotes`` and the git remotes of its ``path`` (read once, here).
An unknown repo gets no context: that is counted, never an error.

The indexes are loaded when ``current.json`` changes (a ``stat`` at most every ``check_s`` seconds; a
repo whose index directory did not change keeps its loaded index). Everything here is blocking work (disk,
BM25, tokenizing): the gateway calls it in a worker thread.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from codellm_assets.core.data.code_index import CodeIndex, CodeIndexError
from codellm_assets.core.data.code_index_store import POINTER_FILE, read_pointer
from codellm_assets.core.data.context_render import rendered_chunks
from codellm_assets.core.data.languages import language_from_path

log = logging.getLogger(__name__)
CHECK_S = 1.0
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$")    # git@host:org/x.git (scp syntax)


def normalize_remote(url: str) -> str | None:
    """``host/org/x`` for a git remote URL (scp-like, ssh://, git://, http(s)://; user, password, port and
    ``.git`` dropped, lower case), None for what is not one (a name, a local path)."""
    url = url.strip().rstrip("/")
    if not url:
        return None
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    else:
        m = _SCP_LIKE.match(url)
        if not m or url.startswith(("/", ".", "~")):
            return None
        host, path = m.group(1), m.group(2)
    path = path.strip("/").removesuffix(".git").strip("/")
    return f"{host}/{path}".lower() if path else None


def local_path(value: str) -> Path | None:
    """The resolved path of a ``file://`` URL or an absolute path, else None."""
    value = value.strip()
    if value.startswith("file://"):
        value = urlsplit(value).path
    if not value.startswith("/"):
        return None
    try:
        return Path(value).resolve()
    except OSError:
        return None


def git_remotes(path: Path) -> list[str]:
    """The fetch URLs of the git remotes of a local clone ([] when it is not one)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "remote", "-v"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split()[1] for line in out.stdout.splitlines() if len(line.split()) >= 2})


def _main_language(paths: Iterable[str]) -> str | None:
    counts = Counter(lang for lang in map(language_from_path, paths) if lang)
    return counts.most_common(1)[0][0] if counts else None


@dataclass(frozen=True)
class RepoRef:
    """One configured repo as requests may name it."""

    name: str
    path: Path | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, repo, resolve: Callable[[str], Path], *, read_remotes: bool = True) -> RepoRef:
        """From a settings ``RepoSettings`` (``resolve``: Settings.resolve for its relative path)."""
        path = resolve(repo.path) if repo.path else None
        urls = [u for u in (repo.url, *repo.remotes) if u]
        if path is not None and read_remotes and path.exists():
            urls += git_remotes(path)
        return cls(repo.name, path, tuple(urls))


class GrowingTextCount:
    """``count`` for texts that grow by whole lines, as render_context measures its block (block + next
    snippet, then that block + the next...): the count of the longest earlier text this one starts with (cut
    at a line end, where code tokenizers do not merge tokens) plus the count of the rest. A tokenizer then
    reads each snippet once instead of the whole block per snippet."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self.count = count
        self.known: list[tuple[str, int]] = []

    def __call__(self, text: str) -> int:
        base, n = "", 0
        for known, k in self.known:
            if len(known) > len(base) and known.endswith("\n") and text.startswith(known):
                base, n = known, k
        total = n + self.count(text[len(base):]) if base else self.count(text)
        self.known.append((text, total))
        return total


@dataclass
class ContextResult:
    """What the gateway logs per request: ``outcome`` is added | empty (nothing matched or fit) | no_repo
    (the request names none) | unknown_repo | no_index | no_room | skipped (not one completion prompt) |
    error."""

    outcome: str
    repo: str | None = None
    text: str = ""
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0


class RepoContext:
    """Resolves repo names and serves each repo's current code index from ``root``."""

    def __init__(self, root: Path, repos: Iterable[RepoRef], *, check_s: float = CHECK_S) -> None:
        self.root, self.repos, self.check_s = Path(root), list(repos), check_s
        self._by_name = {r.name: r for r in self.repos}
        self._by_url = {n: r.name for r in self.repos for n in map(normalize_remote, r.urls) if n}
        self._by_path = {r.path: r.name for r in self.repos if r.path is not None}
        self._lock = threading.Lock()
        self._indexes: dict[str, CodeIndex] = {}
        self._dirs: dict[str, str] = {}
        self._paths: dict[str, frozenset[str]] = {}
        self._languages: dict[str, str | None] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")

    @classmethod
    def from_settings(cls, settings, *, read_remotes: bool = True) -> RepoContext:
        """The configured repos of a ``Settings`` and its ``code_index_dir``."""
        refs = [RepoRef.from_settings(r, settings.resolve, read_remotes=read_remotes) for r in settings.repos]
        return cls(settings.code_index_dir, refs)

    # ---- which repo ------------------------------------------------------------------------------------
    def resolve(self, *names: str | None) -> str | None:
        """The configured repo the first given name means (settings name, remote URL or local path)."""
        for value in names:
            if not value or not value.strip():
                continue
            value = value.strip()
            if value in self._by_name:
                return value
            url = normalize_remote(value)
            if url is not None and url in self._by_url:
                return self._by_url[url]
            path = local_path(value)
            if path is not None:
                for repo_path, name in self._by_path.items():
                    if path == repo_path or repo_path in path.parents:
                        return name
        return None

    # ---- the indexes -----------------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Reload what ``current.json`` changed (at most every ``check_s`` s unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_s:
            return
        with self._lock:
            self._checked = now
            try:
                st = (self.root / POINTER_FILE).stat()
                stamp = (st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp == self._stamp and not force:
                return
            try:
                entries = read_pointer(self.root)["repos"] if stamp else {}
            except CodeIndexError as e:
                log.error("repository context: %s", e)
                return
            indexes, dirs = {}, {}
            for repo, entry in entries.items():
                if repo not in self._by_name:
                    continue
                if self._dirs.get(repo) == entry["dir"]:
                    indexes[repo], dirs[repo] = self._indexes[repo], entry["dir"]
                    continue
                try:
                    indexes[repo], dirs[repo] = CodeIndex.load(self.root / entry["dir"]), entry["dir"]
                except (CodeIndexError, OSError, ValueError) as e:
                    log.error("repository context: cannot load the index of %s: %s", repo, e)
            self._paths = {r: frozenset(c.path for c in ix.chunks) for r, ix in indexes.items()}
            self._languages = {r: _main_language(paths) for r, paths in self._paths.items()}
            self._indexes, self._dirs, self._stamp = indexes, dirs, stamp
            log.info("repository context: indexes of %s loaded from %s", sorted(indexes), self.root)

    def index(self, repo: str) -> CodeIndex | None:
        self.refresh()
        return self._indexes.get(repo)

    def repo_path(self, repo: str, filepath: str | None) -> str | None:
        """The indexed path ``filepath`` (relative, absolute or under the repo's checkout) stands for."""
        if not filepath:
            return None
        paths = self._paths.get(repo, frozenset())
        fp = filepath.replace("\\", "/")
        ref = self._by_name.get(repo)
        if ref is not None and ref.path is not None and fp.startswith("/"):
            try:
                fp = Path(fp).resolve().relative_to(ref.path).as_posix()
            except ValueError:
                pass
        fp = fp.removeprefix("./").lstrip("/")
        if fp in paths:
            return fp
        tails = [p for p in paths if fp.endswith("/" + p)]
        return max(tails, key=len) if tails else fp

    def context(self, repo: str | None, prefix: str, suffix: str, *, filepath: str | None,
                language: str | None, budget: int, count: Callable[[str], int]) -> ContextResult:
        """The retrieved-context block for a cursor in ``repo`` within ``budget`` (``count`` units)."""
        t0 = time.perf_counter()
        if repo is None:
            return ContextResult("unknown_repo")
        index = self.index(repo)
        if index is None:
            return ContextResult("no_index", repo)
        if budget <= 0:
            return ContextResult("no_room", repo)
        path = self.repo_path(repo, filepath)
        # The comment syntax of the block: the cursor file's language, else the repo's most common one.
        language = language or (language_from_path(path) if path else None) or self._languages.get(repo)
        text, used = "", 0
        cut = budget
        for _ in range(3):     # the cached count may be a token or two short: check whole, cut, retry
            text = index.context(prefix, suffix, path=path, language=language, budget=cut,
                                 count=GrowingTextCount(count))
            used = count(text) if text else 0
            if used <= budget:
                break
            cut -= used - budget
            text, used = "", 0
        seconds = time.perf_counter() - t0
        if not text:
            return ContextResult("empty", repo, seconds=seconds)
        return ContextResult("added", repo, text, rendered_chunks(text), used, seconds)
