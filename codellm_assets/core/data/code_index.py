"""A BM25 retrieval index over the code of one repository at one commit: the repository context that
serving adds to a completion prompt and that the repo-level benchmark measures with and without.

Chunks are sliding windows of lines per file (RepoCoder's layout: ``window`` lines every ``stride`` lines),
so a hit is a short, readable snippet rather than a whole file. Lexical similarity alone favours the files
that *look like* the cursor's (sibling services), so the context also carries, first, the chunk that holds
the definition of each name near the cursor that another file defines (the repo's tree-sitter symbol
table, core/data/code_symbols.py; Tabby's "declarations" context does the same), nearest use first.

Tokens are code-aware: an identifier is kept whole and split at ``snake_case`` / ``camelCase``
boundaries, lower-cased, so ``LedgerClient`` in a query meets ``ledger_client`` and ``LedgerClient`` in the
corpus. Scoring is ``bm25s`` (sparse matrices, save/load to a directory).

A big repo's chunks are split into shards of neighbouring paths (at most ``SHARD_CHUNKS`` each, cut where
the paths say, not the sizes: :func:`shard_starts`), each its own BM25; a search near a path scores that
path's shard, so retrieval costs the same per query in a monorepo as in a small repo. Small repos (the
embedded default's) are one shard.

:func:`CodeIndex.context` lays the hits out like CrossCodeEval's retrieved-context prompts
(core/data/context_render.py) under a character (or token) budget.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from codellm_assets.core.data.code_symbols import repo_definitions
from codellm_assets.core.data.context_render import render_context
from codellm_assets.core.fsutil import replace_dir

WINDOW_LINES, STRIDE_LINES = 20, 10
QUERY_PREFIX_LINES, QUERY_SUFFIX_LINES = 10, 3
MAX_DEFINITIONS, HEAD_LINES = 3, 40
SHARD_CHUNKS = 16384        # most chunks one BM25 shard holds (about 160,000 lines of code)
# A name more files define than this is ambiguous (``__init__``, ``run``, ``get``): no one of its
# definitions is *the* one, and looking them all up per cursor costs what the repo has of them.
MAX_DEFINING_FILES = 4
META_FILE = "chunks.json"
KEYS_FILE = "keys.json"          # the IndexScope
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


class CodeIndexError(ValueError):
    """An index directory that cannot be loaded; the message names it and the fix."""


@dataclass(frozen=True)
class Chunk:
    repo: str
    path: str
    start_line: int    # 1-based, inclusive
    end_line: int      # 1-based, inclusive
    text: str


_WORD_TOKENS: dict[str, tuple[str, ...]] = {}
_WORD_CACHE_MAX = 500_000      # distinct identifiers remembered (a repo has far fewer; a bound, not a tuning)


def _word_tokens(word: str) -> tuple[str, ...]:
    low = word.lower()
    parts = [p.lower() for piece in word.split("_") for p in _CAMEL.findall(piece)]
    return tuple(t for t in dict.fromkeys((low, *parts)) if len(t) > 1)


def code_tokens(text: str) -> list[str]:
    """Identifiers whole and split into their words, numbers; lower case; one-letter words dropped.

    Each distinct word is split once (identifiers repeat: indexing a repo splits millions of words, a few
    thousand distinct ones)."""
    out: list[str] = []
    cache = _WORD_TOKENS
    for word in WORD.findall(text):
        tokens = cache.get(word)
        if tokens is None:
            if len(cache) >= _WORD_CACHE_MAX:
                cache.clear()
            tokens = cache[word] = _word_tokens(word)
        out.extend(tokens)
    return out


def chunk_file(repo: str, path: str, content: str, *, window: int = WINDOW_LINES,
               stride: int = STRIDE_LINES) -> list[Chunk]:
    """Windows of ``window`` lines every ``stride`` lines; the last window ends at the file's end."""
    lines = content.splitlines()
    if not any(line.strip() for line in lines):
        return []
    starts = list(range(0, max(len(lines) - window, 0) + 1, stride))
    if starts[-1] + window < len(lines):
        starts.append(len(lines) - window)
    return [Chunk(repo, path, s + 1, min(s + window, len(lines)), "\n".join(lines[s:s + window]))
            for s in starts]


def chunk_tokens(content: str, chunks: Sequence[Chunk]) -> list[list[str]]:
    """:func:`code_tokens` of each chunk of one file, from its lines' tokens: no word spans a line, and the
    windows overlap, so each line is tokenized once instead of once per window holding it."""
    by_line = [code_tokens(line) for line in content.splitlines()]
    return [[t for line in by_line[c.start_line - 1:c.end_line] for t in line] for c in chunks]


def _marks_cut(path: str) -> bool:
    """One path in eight ends a shard once the shard is half full: where shards are cut depends on the paths,
    not on file sizes, so an edit moves no boundary but (rarely) one next to it (content-defined chunking)."""
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=1).digest()[0] < 32


def shard_starts(sizes: Sequence[tuple[str, int]], max_chunks: int) -> list[int]:
    """Where shards start, as indices into ``sizes`` ((path, chunks) per file, in path order): a shard holds
    whole files, at most ``max_chunks`` chunks (a bigger file alone), and ends after a path that
    :func:`_marks_cut` once it holds ``max_chunks // 2``."""
    starts, held = [0], 0
    for i, (path, n) in enumerate(sizes):
        if held and held + n > max_chunks:
            starts.append(i)
            held = 0
        held += n
        if held >= max_chunks // 2 and _marks_cut(path) and i + 1 < len(sizes):
            starts.append(i + 1)
            held = 0
    return starts


@dataclass(frozen=True)
class Shard:
    """Chunks ``start`` to ``end`` (exclusive) of an index, whole files from ``first_path`` on, with their own
    BM25; ``digest``: of their files' paths and contents, what a search in the shard depends on."""

    start: int
    end: int
    first_path: str
    digest: str


def _file_digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class IndexScope:
    """What a search and a definition lookup in an index depend on, without its chunks or BM25: the shards,
    each file's digest and the definitions table. Saved beside the index (``KEYS_FILE``), small to read: the
    token cache keys every context document by it before any index is needed to render one."""

    def __init__(self, shards: Sequence[Shard], file_digests: Mapping[str, str] | None = None,
                 definitions: Mapping[str, Mapping[str, int]] | None = None):
        self.shards = list(shards)
        self.file_digests = dict(file_digests or {})        # path -> digest of its content
        self.definitions = dict(definitions or {})          # name -> {path: line}
        self._first_paths = [s.first_path for s in self.shards]
        self._word_parts: dict[str, str] = {}               # name -> its part of a context key

    def shard_of(self, path: str) -> int:
        """The shard a search near ``path`` scores: the one holding it, or, for a path the index lacks (a new
        or held-out file), the one it would sort into."""
        return max(bisect_right(self._first_paths, path) - 1, 0)

    def context_key(self, path: str, content: str) -> str:
        """What CodeIndex.context for cursors in ``content`` (the file at ``path``) depends on: its shard's
        files and the definitions (entry and defining file) of the names ``content`` uses that are not
        ambiguous - so an edit elsewhere in the repo changes the key of only the documents whose context it
        can change."""
        h = hashlib.sha256(self.shards[self.shard_of(path)].digest.encode())
        definitions, parts = self.definitions, self._word_parts
        for word in sorted(w for w in set(WORD.findall(content)) if w in definitions):
            part = parts.get(word)
            if part is None:        # once per name: the same names recur in thousands of documents
                where = definitions[word]
                part = parts[word] = "" if len(where) > MAX_DEFINING_FILES else "".join(
                    f"{word}\0{p}\0{line}\0{self.file_digests.get(p, '')}\n" for p, line in sorted(where.items()))
            h.update(part.encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        return {"shards": [asdict(s) for s in self.shards], "file_digests": self.file_digests,
                "definitions": self.definitions}

    @classmethod
    def from_json(cls, keys: Mapping[str, Any]) -> IndexScope:
        return cls([Shard(**x) for x in keys["shards"]], keys["file_digests"], keys["definitions"])

    @classmethod
    def load(cls, directory: Path) -> IndexScope:
        """From an index directory (an index saved before ``KEYS_FILE``: from its chunks file, whole)."""
        directory = Path(directory)
        if (directory / KEYS_FILE).is_file():
            return cls.from_json(json.loads((directory / KEYS_FILE).read_text()))
        return CodeIndex.load(directory).scope


class CodeIndex:
    """BM25 over the chunks of one repository at one commit (``repo``, ``commit`` say which), in shards of
    at most ``SHARD_CHUNKS`` chunks (path order: a shard is a stretch of neighbouring directories). A search
    near a path scores that path's shard only, so its cost does not grow with the repo (a monorepo's index
    is searched thousands of times per training build); the definitions table is the whole repo's."""

    def __init__(self, chunks: list[Chunk], retrievers: Sequence[bm25s.BM25], scope: IndexScope, *,
                 repo: str, commit: str):
        if len(retrievers) != len(scope.shards) or not scope.shards:
            raise ValueError(f"an index of repo '{repo}' needs one retriever per shard "
                             f"({len(retrievers)} retrievers, {len(scope.shards)} shards)")
        self.chunks, self.repo, self.commit = chunks, repo, commit
        self.retrievers, self.scope = list(retrievers), scope
        self.reused_shards = 0       # of a build: shards whose BM25 came from an earlier index (build's reuse)
        self._by_path: dict[str, list[Chunk]] = {}
        self._ids_by_path: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            self._by_path.setdefault(c.path, []).append(c)
            self._ids_by_path.setdefault(c.path, []).append(i)

    @property
    def shards(self) -> list[Shard]:
        return self.scope.shards

    @property
    def definitions(self) -> dict[str, dict[str, int]]:
        return self.scope.definitions

    def shard_of(self, path: str) -> int:
        return self.scope.shard_of(path)

    def context_key(self, path: str, content: str) -> str:
        return self.scope.context_key(path, content)

    @classmethod
    def build(cls, files: Iterable[Mapping], *, repo: str, commit: str, window: int = WINDOW_LINES,
              stride: int = STRIDE_LINES, shard_chunks: int = SHARD_CHUNKS, cache_root: Path | None = None,
              compact_cache: bool = False, reuse: Path | None = None) -> CodeIndex:
        """``files``: dicts with ``path`` and ``content`` (corpus records); other repos' files are skipped.
        ``cache_root``: where each file's definitions are cached (code_symbols.repo_definitions). ``reuse``: an
        earlier index directory of the repo; a shard whose files are unchanged (same digest) loads its BM25
        from there instead of tokenizing and indexing them again (``reused_shards`` counts them)."""
        files = [f for f in sorted(files, key=lambda r: r["path"]) if f.get("repo", repo) == repo]
        per_file = [chunk_file(repo, f["path"], f["content"], window=window, stride=stride) for f in files]
        kept = [(f, cs) for f, cs in zip(files, per_file) if cs]
        if not kept:
            raise ValueError(f"no code to index for repo '{repo}' at {commit}: pass its corpus records "
                             f"(dicts with repo, path, content)")
        digests = {f["path"]: _file_digest(f["content"]) for f, _ in kept}
        earlier = _reusable_shards(reuse)
        chunks: list[Chunk] = []
        retrievers, shards, reused = [], [], 0
        starts = shard_starts([(f["path"], len(cs)) for f, cs in kept], shard_chunks)
        for a, b in zip(starts, [*starts[1:], len(kept)]):
            h = hashlib.sha256(f"window={window},stride={stride}\n".encode())     # what the BM25 indexed
            for f, _ in kept[a:b]:
                h.update(f"{f['path']}\0{digests[f['path']]}\n".encode("utf-8", "surrogatepass"))
            digest = h.hexdigest()[:20]
            if digest in earlier:
                retriever = bm25s.BM25.load(str(earlier[digest]), show_progress=False)
                reused += 1
            else:
                tokens = [t for f, cs in kept[a:b] for t in chunk_tokens(f["content"], cs)]
                retriever = bm25s.BM25()
                retriever.index([t or ["<empty>"] for t in tokens], show_progress=False)
            n = sum(len(cs) for _, cs in kept[a:b])
            shards.append(Shard(len(chunks), len(chunks) + n, kept[a][0]["path"], digest))
            retrievers.append(retriever)
            chunks += [c for _, cs in kept[a:b] for c in cs]
        definitions = repo_definitions(files, cache_root=cache_root, partition=repo, compact=compact_cache)
        index = cls(chunks, retrievers, IndexScope(shards, digests, definitions), repo=repo, commit=commit)
        index.reused_shards = reused
        return index

    # ---- persistence ------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` atomically: readers see the old index or the new one, whole."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
        for i, retriever in enumerate(self.retrievers):
            retriever.save(str(tmp / _shard_dir(i)), show_progress=False)
        chunks = [{"repo": c.repo, "path": c.path, "start_line": c.start_line, "end_line": c.end_line,
                   "text": c.text} for c in self.chunks]      # asdict() per chunk: seconds for a big repo
        (tmp / META_FILE).write_text(json.dumps({"repo": self.repo, "commit": self.commit, "chunks": chunks}))
        (tmp / KEYS_FILE).write_text(json.dumps(self.scope.to_json()))
        replace_dir(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> CodeIndex:
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise CodeIndexError(f"{directory} holds no code index ({META_FILE} missing): build it with "
                              f"CodeIndex.build(...).save({directory})")
        meta = json.loads((directory / META_FILE).read_text())
        chunks = [Chunk(**c) for c in meta["chunks"]]
        if (directory / KEYS_FILE).is_file():
            scope = IndexScope.from_json(json.loads((directory / KEYS_FILE).read_text()))
            retrievers = [bm25s.BM25.load(str(directory / _shard_dir(i)), show_progress=False)
                          for i in range(len(scope.shards))]
        else:       # an index written before shards: one BM25 at the top, the definitions in the chunks file
            scope = IndexScope([Shard(0, len(chunks), chunks[0].path if chunks else "", "")],
                               definitions=meta.get("definitions", {}))
            retrievers = [bm25s.BM25.load(str(directory), show_progress=False)]
        return cls(chunks, retrievers, scope, repo=meta["repo"], commit=meta["commit"])

    # ---- queries ----------------------------------------------------------------------------------------

    def search(self, query: str, *, k: int = 5, exclude_paths: Iterable[str] = (),
               near: str | None = None) -> list[tuple[Chunk, float]]:
        """The ``k`` best chunks for ``query`` (score > 0), none from ``exclude_paths`` (the cursor's file);
        ties by chunk order, so the same query always gets the same snippets. ``near`` (the cursor's path):
        only its shard is scored; without it, every shard, the best of each merged by score.

        Scored with bm25s, selected here: only the top ``k`` are partitioned out (bm25s' ``retrieve`` would
        have to sort every chunk to leave the excluded file's out, per query, thousands of times a build)."""
        if k <= 0:
            return []
        words = code_tokens(query)
        picked = range(len(self.shards)) if near is None else [self.shard_of(near)]
        ids, scores = [], []
        for i in picked:
            shard, retriever = self.shards[i], self.retrievers[i]
            token_ids = retriever.get_tokens_ids(words)
            if not token_ids:
                continue
            s = retriever.get_scores_from_ids(token_ids)
            for p in exclude_paths:
                s[[j - shard.start for j in self._ids_by_path.get(p, []) if shard.start <= j < shard.end]] = 0.0
            hits = _top_k(s, k)
            ids.append(hits + shard.start)
            scores.append(s[hits])
        if not ids:
            return []
        ids_all, scores_all = np.concatenate(ids), np.concatenate(scores)
        order = np.lexsort((ids_all, -scores_all))[:k]
        return [(self.chunks[int(ids_all[j])], float(scores_all[j])) for j in order]

    def definition_chunks(self, query: str, *, path: str | None = None, head: str = "",
                          limit: int = MAX_DEFINITIONS, names: Container[str] | None = None) -> list[Chunk]:
        """Chunks holding the definitions of names in ``query`` that another file defines and ``path`` does
        not, the name nearest the end of ``query`` (the cursor) first, then the names of ``head`` (the top
        of the file: its imports) in order; one chunk per defining file; a name that more than
        MAX_DEFINING_FILES files define is ambiguous and skipped. ``names``: only these are looked up
        (the words of the whole file: a cut's edge never makes up a name the file does not use)."""
        out: list[Chunk] = []
        for word in [*reversed(WORD.findall(query)), *WORD.findall(head)]:
            if names is not None and word not in names:
                continue
            where = self.definitions.get(word, {})
            if path in where or len(where) > MAX_DEFINING_FILES:
                continue
            for def_path, line in sorted(where.items()):
                starts = [c for c in self._by_path.get(def_path, []) if c.start_line <= line <= c.end_line]
                if starts and all(c.path != def_path for c in out):
                    out.append(max(starts, key=lambda c: c.start_line))   # the definition near the top
            if len(out) >= limit:
                break
        return out[:limit]

    def context(self, prefix: str, suffix: str = "", *, path: str | None = None, language: str | None = None,
                budget: int = 2000, count: Callable[[str], int] = len, k: int = 5,
                names: Container[str] | None = None) -> str:
        """The retrieved-context block for a cursor between ``prefix`` and ``suffix`` in ``path``: the
        definitions of the names used near the cursor, then the best BM25 snippets of ``path``'s shard (of
        every shard without a path), while the block stays within ``budget`` (``count`` measures it:
        characters by default, a tokenizer's length for tokens). Empty when nothing fits or nothing matches.
        ``names``: see :meth:`definition_chunks`."""
        query = "\n".join(prefix.splitlines()[-QUERY_PREFIX_LINES:] + suffix.splitlines()[:QUERY_SUFFIX_LINES])
        head = "\n".join(prefix.splitlines()[:-QUERY_PREFIX_LINES][:HEAD_LINES])
        chunks = self.definition_chunks(query, path=path, head=head, names=names)
        hits = self.search(query, k=k, exclude_paths=[path] if path else [], near=path)
        chunks += [c for c, _ in hits if c not in chunks]
        return render_context(chunks, language=language, budget=budget, count=count)


def _shard_dir(i: int) -> str:
    return f"shard-{i:03d}"


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best positive ``scores``, ties kept in index order (the lowest ids)."""
    hits = np.flatnonzero(scores > 0)
    if len(hits) > k:
        kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]     # the k-th best score
        above, tied = hits[scores[hits] > kth], hits[scores[hits] == kth]
        hits = np.concatenate([above, tied[:k - len(above)]])
    return hits


def _reusable_shards(directory: Path | None) -> dict[str, Path]:
    """Shard digest -> its BM25 directory in an earlier index (none for a missing or pre-shard index)."""
    if directory is None or not (Path(directory) / KEYS_FILE).is_file():
        return {}
    try:
        shards = IndexScope.load(Path(directory)).shards
    except (OSError, ValueError, KeyError, TypeError):
        return {}          # a broken earlier index is only not reused: this build makes every shard anew
    return {s.digest: Path(directory) / _shard_dir(i) for i, s in enumerate(shards)
            if (Path(directory) / _shard_dir(i)).is_dir()}
