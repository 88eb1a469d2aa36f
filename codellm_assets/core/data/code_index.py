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

:func:`CodeIndex.context` lays the hits out like CrossCodeEval's retrieved-context prompts: a header, then
per snippet a separator, ``the below code fragment can be found in:``, the file path, a separator and
the snippet, every line commented out in the cursor file's language, under a character (or token) budget.
"""

from __future__ import annotations

import json
import re
import tempfile
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import bm25s
import numpy as np

from codellm_assets.core.data.code_symbols import repo_definitions
from codellm_assets.core.fsutil import replace_dir

WINDOW_LINES, STRIDE_LINES = 20, 10
QUERY_PREFIX_LINES, QUERY_SUFFIX_LINES = 10, 3
MAX_DEFINITIONS, HEAD_LINES = 3, 40
MIN_SNIPPET_LINES = 3       # a snippet cut to fit the budget keeps at least this many lines
META_FILE = "chunks.json"
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
# Languages whose line comment is not ``//``.
_HASH_COMMENT = {"python", "shell", "ruby", "perl", "r", "yaml", "toml", "makefile", "starlark", "elixir"}
_SEP = "-" * 50
_FOUND_IN = "the below code fragment can be found in:"


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
    for word in _WORD.findall(text):
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


def comment_prefix(language: str | None) -> str:
    return "#" if (language or "") in _HASH_COMMENT else "//"


class CodeIndex:
    """BM25 over the chunks of one repository at one commit (``repo``, ``commit`` say which)."""

    def __init__(self, chunks: list[Chunk], retriever: bm25s.BM25, *, repo: str, commit: str,
                 definitions: dict[str, dict[str, int]] | None = None):
        self.chunks, self.retriever, self.repo, self.commit = chunks, retriever, repo, commit
        self.definitions = definitions or {}          # name -> {path: line}
        self._by_path: dict[str, list[Chunk]] = {}
        self._ids_by_path: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            self._by_path.setdefault(c.path, []).append(c)
            self._ids_by_path.setdefault(c.path, []).append(i)

    @classmethod
    def build(cls, files: Iterable[Mapping], *, repo: str, commit: str, window: int = WINDOW_LINES,
              stride: int = STRIDE_LINES, cache_root: Path | None = None,
              compact_cache: bool = False) -> CodeIndex:
        """``files``: dicts with ``path`` and ``content`` (corpus records); other repos' files are skipped.
        ``cache_root``: where each file's definitions are cached (code_symbols.repo_definitions)."""
        files = [f for f in sorted(files, key=lambda r: r["path"]) if f.get("repo", repo) == repo]
        chunks: list[Chunk] = []
        tokens: list[list[str]] = []
        for f in files:
            file_chunks = chunk_file(repo, f["path"], f["content"], window=window, stride=stride)
            chunks += file_chunks
            tokens += chunk_tokens(f["content"], file_chunks)
        if not chunks:
            raise ValueError(f"no code to index for repo '{repo}' at {commit}: pass its corpus records "
                             f"(dicts with repo, path, content)")
        retriever = bm25s.BM25()
        retriever.index([t or ["<empty>"] for t in tokens], show_progress=False)
        return cls(chunks, retriever, repo=repo, commit=commit, definitions=repo_definitions(
            files, cache_root=cache_root, partition=repo, compact=compact_cache))

    # ---- persistence ------------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the index to ``directory`` atomically: readers see the old index or the new one, whole."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
        self.retriever.save(str(tmp), show_progress=False)
        chunks = [{"repo": c.repo, "path": c.path, "start_line": c.start_line, "end_line": c.end_line,
                   "text": c.text} for c in self.chunks]      # asdict() per chunk: seconds for a big repo
        meta = {"repo": self.repo, "commit": self.commit, "chunks": chunks,
                "definitions": self.definitions}
        (tmp / META_FILE).write_text(json.dumps(meta))
        replace_dir(tmp, directory)

    @classmethod
    def load(cls, directory: Path) -> CodeIndex:
        directory = Path(directory)
        if not (directory / META_FILE).is_file():
            raise CodeIndexError(f"{directory} holds no code index ({META_FILE} missing): build it with "
                              f"CodeIndex.build(...).save({directory})")
        meta = json.loads((directory / META_FILE).read_text())
        retriever = bm25s.BM25.load(str(directory), show_progress=False)
        return cls([Chunk(**c) for c in meta["chunks"]], retriever, repo=meta["repo"], commit=meta["commit"],
                   definitions=meta.get("definitions", {}))

    # ---- queries ----------------------------------------------------------------------------------------

    def search(self, query: str, *, k: int = 5, exclude_paths: Iterable[str] = ()) -> list[tuple[Chunk, float]]:
        """The ``k`` best chunks for ``query`` (score > 0), none from ``exclude_paths`` (the cursor's file);
        ties by chunk order, so the same query always gets the same snippets.

        Scored with bm25s, selected here: only the top ``k`` are partitioned out (bm25s' ``retrieve`` would
        have to sort every chunk to leave the excluded file's out, per query, thousands of times a build)."""
        token_ids = self.retriever.get_tokens_ids(code_tokens(query))
        if not token_ids or k <= 0:
            return []
        scores = self.retriever.get_scores_from_ids(token_ids)
        for p in exclude_paths:
            scores[self._ids_by_path.get(p, [])] = 0.0
        hits = np.flatnonzero(scores > 0)
        if len(hits) > k:
            kth = np.partition(scores[hits], len(hits) - k)[len(hits) - k]     # the k-th best score
            above, tied = hits[scores[hits] > kth], hits[scores[hits] == kth]
            hits = np.concatenate([above, tied[:k - len(above)]])
        best = hits[np.lexsort((hits, -scores[hits]))]
        return [(self.chunks[int(i)], float(scores[i])) for i in best]

    def definition_chunks(self, query: str, *, path: str | None = None, head: str = "",
                          limit: int = MAX_DEFINITIONS) -> list[Chunk]:
        """Chunks holding the definitions of names in ``query`` that another file defines and ``path`` does
        not, the name nearest the end of ``query`` (the cursor) first, then the names of ``head`` (the top
        of the file: its imports) in order; one chunk per defining file."""
        out: list[Chunk] = []
        for word in [*reversed(_WORD.findall(query)), *_WORD.findall(head)]:
            where = self.definitions.get(word, {})
            if path in where:
                continue
            for def_path, line in sorted(where.items()):
                starts = [c for c in self._by_path.get(def_path, []) if c.start_line <= line <= c.end_line]
                if starts and all(c.path != def_path for c in out):
                    out.append(max(starts, key=lambda c: c.start_line))   # the definition near the top
            if len(out) >= limit:
                break
        return out[:limit]

    def context(self, prefix: str, suffix: str = "", *, path: str | None = None, language: str | None = None,
                budget: int = 2000, count: Callable[[str], int] = len, k: int = 5) -> str:
        """The retrieved-context block for a cursor between ``prefix`` and ``suffix`` in ``path``: the
        definitions of the names used near the cursor, then the best BM25 snippets, while the block stays
        within ``budget`` (``count`` measures it: characters by default, a tokenizer's length for tokens).
        Empty when nothing fits or nothing matches."""
        query = "\n".join(prefix.splitlines()[-QUERY_PREFIX_LINES:] + suffix.splitlines()[:QUERY_SUFFIX_LINES])
        head = "\n".join(prefix.splitlines()[:-QUERY_PREFIX_LINES][:HEAD_LINES])
        chunks = self.definition_chunks(query, path=path, head=head)
        chunks += [c for c, _ in self.search(query, k=k, exclude_paths=[path] if path else []) if c not in chunks]
        return render_context(chunks, language=language, budget=budget, count=count)


class LineCounter:
    """A ``count`` for :func:`render_context` that reads each distinct line once: a block's count is taken as
    the sum of its lines' counts, cached across blocks (the same snippets are rendered for many cursors).

    Every rendered line starts with a comment marker and ends with a newline, trailing whitespace stripped.
    A byte-level BPE whose pre-tokenizer is GPT-2's regex splits before such a line, so its sum is exact
    (``sums_exact``: a tokenizer's property, core/data/encoding.py checks it); otherwise render_context
    checks each block once with ``count`` and, where the sum fell short, measures that block the exact way.
    ``count_many``: counts of many texts at once (a tokenizer's batch encode); default one ``count`` each."""

    MAX_LINES = 500_000

    def __init__(self, count: Callable[[str], int], count_many: Callable[[list[str]], list[int]] | None = None,
                 *, sums_exact: bool = False) -> None:
        self.count = count
        self.count_many = count_many or (lambda texts: [count(t) for t in texts])
        self.sums_exact = sums_exact
        self._known: dict[str, int] = {}
        self.exact_fallbacks = 0      # blocks whose line sum was short (a tokenizer merging across lines)

    def __call__(self, text: str) -> int:
        return self.count(text)

    def lines(self, lines: Sequence[str]) -> list[int]:
        known = self._known
        missing = [t for t in dict.fromkeys(lines) if t not in known]
        if missing:
            if len(known) + len(missing) > self.MAX_LINES:     # a bound, not an LRU: start over
                known.clear()
                missing = list(dict.fromkeys(lines))
            known.update(zip(missing, self.count_many(missing), strict=True))
        return [known[t] for t in lines]


def render_context(chunks: list[Chunk], *, language: str | None, budget: int,
                   count: Callable[[str], int] = len) -> str:
    """CrossCodeEval's layout, commented out in ``language``, within ``budget``: whole snippets while they
    fit, then the first lines of the next one (at least MIN_SNIPPET_LINES: a definition chunk starts with
    the signature, the part a completion needs; a small window still gets it). ``count``: characters by
    default; a :class:`LineCounter` sums cached line counts (one exact check per block)."""
    c = comment_prefix(language)
    if isinstance(count, LineCounter):
        block = _render_by_lines(chunks, c, budget, count)
        if not block or count.sums_exact or count(block) <= budget:
            return block
        count.exact_fallbacks += 1
    block, end = _frame(c)
    used = 0
    for chunk in chunks:
        head, lines = _snippet(chunk, c)
        keep = _lines_that_fit(block + head, lines, end, budget, count)
        if keep < min(MIN_SNIPPET_LINES, len(lines)):
            continue
        block += head + "".join(lines[:keep])
        used += 1
    return block + end if used else ""


def _frame(c: str) -> tuple[str, str]:
    """A block's first and last line, commented out with ``c``."""
    return f"{c} Here are some relevant code fragments from other files of the repo:\n", f"{c} {_SEP}\n"


def _snippet(chunk: Chunk, c: str) -> tuple[str, list[str]]:
    """A chunk's header (separator, where it is found) and its lines, commented out with ``c``."""
    return (f"{c} {_SEP}\n{c} {_FOUND_IN}\n{c} {chunk.path}\n{c} {_SEP}\n",
            [f"{c} {line}".rstrip() + "\n" for line in chunk.text.splitlines()])


def _render_by_lines(chunks: list[Chunk], c: str, budget: int, counter: LineCounter) -> str:
    """render_context's choice with a block's count taken as the sum of its lines' (LineCounter); a snippet
    whose head and first lines do not fit is skipped with only those counted."""
    top, end = _frame(c)
    used = sum(counter.lines([top, end]))
    parts = [top]
    for chunk in chunks:
        head, lines = _snippet(chunk, c)
        floor = min(MIN_SNIPPET_LINES, len(lines))
        costs = counter.lines([head, *lines[:floor]])
        if used + sum(costs) > budget:
            continue
        costs += counter.lines(lines[floor:])
        sums = list(accumulate(costs[1:]))
        keep = bisect_right(sums, budget - used - costs[0])     # lines whose running total still fits
        parts += [head, *lines[:keep]]
        used += costs[0] + (sums[keep - 1] if keep else 0)
    return "".join(parts) + end if len(parts) > 1 else ""


def _lines_that_fit(start: str, lines: list[str], end: str, budget: int, count: Callable[[str], int]) -> int:
    """How many of ``lines`` fit after ``start`` (a binary search: ``count`` may be a tokenizer); 0 when fewer
    than MIN_SNIPPET_LINES fit. The two ends are tried first: a whole small window, or a full block, is then
    one or two tokenizations instead of a search (a re-encoded repo renders thousands of blocks)."""
    if count(start + "".join(lines) + end) <= budget:
        return len(lines)
    floor = min(MIN_SNIPPET_LINES, len(lines))
    if count(start + "".join(lines[:floor]) + end) > budget:
        return 0
    lo, hi = floor, len(lines) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(start + "".join(lines[:mid]) + end) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def rendered_chunks(block: str) -> int:
    """How many snippets a block from :func:`render_context` holds (for logs and metrics)."""
    return sum(1 for line in block.splitlines() if line.endswith(f" {_FOUND_IN}"))
