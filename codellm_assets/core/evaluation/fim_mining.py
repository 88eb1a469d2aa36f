"""Syntax-aware fill-in-the-middle tasks mined from source files with tree-sitter (every configured language).

Kinds (after RepoEval / ExecRepoBench / SAFIM):

* ``single_line`` - one statement line inside a function body, from its first non-blank character to the
  line's end (RepoBench's "next line" with the suffix kept);
* ``multi_line`` - a statement spanning 2..``MAX_SPAN_LINES`` lines, whole lines;
* ``call_args`` - the argument list of a call, between the parentheses, on one line;
* ``condition`` - the condition of an ``if`` / ``while`` / ``elif``, inside its parentheses where the
  language has them;
* ``function_body`` - the inner lines of a function of 2..``MAX_BODY_LINES`` lines.

Labels (after RepoBench / CrossCodeEval): a task is **cross-file** when its masked span uses a name that a
*different* file of the same repo defines at top level (or as a class member) and the task's own file
does not define; the defining files are recorded. The repository's symbol table comes from
:func:`repo_symbols`. Names shorter than ``MIN_SYMBOL_LEN`` (``id``, ``ok``) and dunders (``__init__``)
never make a task cross-file. The label is by name, not by type resolution: a method name that another
file also defines (``get``) can make a task cross-file that a type checker would call in-file.

A file tree-sitter cannot parse cleanly (a syntax error, a dialect the grammar lacks) yields no tasks: a
mask computed on an error-recovered tree may cut through a token.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from codellm_assets.core.data.code_symbols import (  # noqa: F401  (re-exported for the benchmark)
    FUNCTION_TYPES,
    IDENTIFIER_TYPES,
    file_symbols,
    parse,
    parser_for,
    repo_symbols,
    supported_languages,
    walk,
)

KINDS = ("single_line", "multi_line", "call_args", "condition", "function_body")
MAX_SPAN_LINES, MAX_BODY_LINES, MAX_INLINE_CHARS = 6, 15, 100
MIN_LINE_CHARS, MIN_SYMBOL_LEN = 4, 3
# A task keeps this much of the file around the span (whole lines); prompts use far less (repo_bench's
# MAX_PREFIX_CHARS), and thousands of tasks of a 100 kB file must not each hold a copy of it.
MAX_TASK_PREFIX_BYTES, MAX_TASK_SUFFIX_BYTES = 16_000, 8_000

BLOCK_TYPES = frozenset({"block", "statement_block", "compound_statement", "statement_list", "constructor_body"})
CALL_TYPES = frozenset({"call", "call_expression", "method_invocation"})
CONDITION_TYPES = frozenset({"if_statement", "while_statement", "elif_clause", "if_expression",
                             "while_expression", "do_statement"})
_UNCOMMON_PARENS = frozenset({"parenthesized_expression", "condition_clause"})


@dataclass
class FimTask:
    task_id: str
    repo: str
    path: str
    language: str
    kind: str
    prefix: str
    suffix: str
    reference: str
    line: int                                   # 1-based line where the masked span starts
    cross_file: bool = False
    cross_file_symbols: list[str] = field(default_factory=list)
    defining_paths: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


# ---- spans ----------------------------------------------------------------------------------------------

def _line_start(src: bytes, i: int) -> int:
    return src.rfind(b"\n", 0, i) + 1


def _line_end(src: bytes, i: int) -> int:
    """Offset just past the newline ending the line that holds ``i`` (the file's end if none)."""
    j = src.find(b"\n", i)
    return len(src) if j < 0 else j + 1


def _spans(tree: Any, src: bytes) -> Iterator[tuple[str, int, int]]:
    """(kind, start byte, end byte) candidates, in file order within each kind."""
    for node in walk(tree.root_node):
        t = node.type
        if node.parent is not None and node.parent.type in BLOCK_TYPES and node.is_named and t != "comment":
            yield from _statement_spans(node, src)
        if t in FUNCTION_TYPES:
            span = _body_span(node, src)
            if span:
                yield ("function_body", *span)
        elif t in CALL_TYPES:
            args = node.child_by_field_name("arguments")
            if args is not None and args.text.startswith(b"(") and args.start_point[0] == args.end_point[0]:
                yield ("call_args", args.start_byte + 1, args.end_byte - 1)
        elif t in CONDITION_TYPES:
            cond = node.child_by_field_name("condition")
            if cond is not None and cond.start_point[0] == cond.end_point[0]:
                if cond.type in _UNCOMMON_PARENS and cond.text.startswith(b"(") and cond.text.endswith(b")"):
                    yield ("condition", cond.start_byte + 1, cond.end_byte - 1)
                else:
                    yield ("condition", cond.start_byte, cond.end_byte)


def _statement_spans(node: Any, src: bytes) -> Iterator[tuple[str, int, int]]:
    start = _line_start(src, node.start_byte)
    if src[start:node.start_byte].strip():       # another statement shares the line
        return
    rows = node.end_point[0] - node.start_point[0] + 1
    if rows == 1:
        end = _line_end(src, node.start_byte)
        end -= src[end - 1:end] == b"\n"
        yield ("single_line", node.start_byte, end)
    elif rows <= MAX_SPAN_LINES:
        yield ("multi_line", start, _line_end(src, node.end_byte - 1))


def _body_span(fn: Any, src: bytes) -> tuple[int, int] | None:
    body = fn.child_by_field_name("body")
    if body is None:
        return None
    if body.text.startswith(b"{"):              # inner lines: after the "{" line, before the "}" line
        start = _line_end(src, body.start_byte)
        end = _line_start(src, body.end_byte - 1)
        if src[end:body.end_byte - 1].strip() or src[body.start_byte + 1:start].strip():
            return None
    else:                                       # python: the block's lines, indentation included
        start, end = _line_start(src, body.start_byte), _line_end(src, body.end_byte - 1)
    n_lines = src[start:end].count(b"\n")
    return (start, end) if 2 <= n_lines <= MAX_BODY_LINES else None


def _around(src: bytes, start: int, end: int) -> tuple[str, str]:
    """(prefix, suffix) of the span, each cut to whole lines at ``MAX_TASK_*_BYTES`` from it."""
    pre, suf = src[max(0, start - MAX_TASK_PREFIX_BYTES):start], src[end:end + MAX_TASK_SUFFIX_BYTES]
    if start > MAX_TASK_PREFIX_BYTES:
        pre = pre[pre.find(b"\n") + 1:]
    if len(src) - end > MAX_TASK_SUFFIX_BYTES:
        suf = suf[:suf.rfind(b"\n") + 1]
    return pre.decode("utf-8", "replace"), suf.decode("utf-8", "replace")


def _acceptable(kind: str, text: str) -> bool:
    stripped = text.strip()
    if not stripped:
        return False
    if kind in ("single_line", "call_args", "condition"):
        return "\n" not in stripped and len(stripped) <= MAX_INLINE_CHARS and \
            (kind != "single_line" or len(stripped.strip("{}();")) >= MIN_LINE_CHARS)
    return True


class _Identifiers:
    """The file's identifier nodes in byte order, for range queries (one tree walk per file, not per span)."""

    def __init__(self, tree: Any):
        nodes = [n for n in walk(tree.root_node) if n.type in IDENTIFIER_TYPES]
        self.starts = [n.start_byte for n in nodes]
        self.items = [(n.end_byte, n.text.decode("utf-8", "replace")) for n in nodes]

    def within(self, start: int, end: int) -> list[str]:
        i = bisect.bisect_left(self.starts, start)
        out = []
        while i < len(self.starts) and self.starts[i] < end:
            if self.items[i][0] <= end:
                out.append(self.items[i][1])
            i += 1
        return out


# ---- mining ---------------------------------------------------------------------------------------------

def mine_file(f: Mapping, symbols: Mapping[str, set[str]] | None = None) -> list[FimTask]:
    """Every candidate task of one file (a dict with repo, path, language, content); labelled cross-file
    against ``symbols`` (:func:`repo_symbols` of the repo), all in-file without it."""
    tree = parse(f["content"], f["language"])
    if tree is None or tree.root_node.has_error:
        return []
    src = f["content"].encode("utf-8")
    own = file_symbols(tree)
    idents = _Identifiers(tree)
    newlines = [m.start() for m in re.finditer(b"\n", src)]
    tasks, seen = [], set()
    for kind, start, end in _spans(tree, src):
        if (kind, start, end) in seen or end <= start:
            continue
        seen.add((kind, start, end))
        reference = src[start:end].decode("utf-8", "replace")
        if not _acceptable(kind, reference):
            continue
        used = set(idents.within(start, end))
        foreign = sorted(n for n in used if len(n) >= MIN_SYMBOL_LEN and not n.startswith("__") and n not in own
                         and symbols
                         and any(p != f["path"] for p in symbols.get(n, ())))
        paths = sorted({p for n in foreign for p in symbols[n] if p != f["path"]}) if foreign else []
        prefix, suffix = _around(src, start, end)
        digest = hashlib.sha256(f"{f['repo']}:{f['path']}:{kind}:{start}:{end}".encode()).hexdigest()[:12]
        tasks.append(FimTask(
            task_id=f"fim/{digest}", repo=f["repo"], path=f["path"], language=f["language"], kind=kind,
            prefix=prefix, suffix=suffix,
            reference=reference, line=bisect.bisect_left(newlines, start) + 1, cross_file=bool(foreign),
            cross_file_symbols=foreign, defining_paths=paths))
    return tasks
