"""How retrieved code is laid out in a prompt: CrossCodeEval's retrieved-context block (a header, then per
snippet a separator, ``the below code fragment can be found in:``, the file path, a separator and the
snippet, every line commented out in the cursor file's language) under a character or token budget, and
the cached line counts that make measuring thousands of such blocks cheap (:class:`LineCounter`).

The index that chooses the snippets is core/data/code_index.py; serving, the benchmark and training all
render through :func:`render_context`, so the model reads at serving time the layout it trained on.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codellm_assets.core.data.code_index import Chunk

MIN_SNIPPET_LINES = 3       # a snippet cut to fit the budget keeps at least this many lines
# Languages whose line comment is not ``//``.
_HASH_COMMENT = {"python", "shell", "ruby", "perl", "r", "yaml", "toml", "makefile", "starlark", "elixir"}
_SEP = "-" * 50
_FOUND_IN = "the below code fragment can be found in:"


def comment_prefix(language: str | None) -> str:
    return "#" if (language or "") in _HASH_COMMENT else "//"


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
