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
:func:`repo_symbols`. Names shorter than ``MIN_SYMBOL_LEN`` never make a task cross-file (``id``, ``ok``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("single_line", "multi_line", "call_args", "condition", "function_body")
GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"), "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"), "cpp": ("tree_sitter_cpp", "language"),
}
MAX_SPAN_LINES, MAX_BODY_LINES, MAX_INLINE_CHARS = 6, 15, 100
MIN_LINE_CHARS, MIN_SYMBOL_LEN = 4, 3

FUNCTION_TYPES = frozenset({"function_definition", "function_declaration", "method_definition",
                            "method_declaration", "constructor_declaration", "function_item",
                            "generator_function_declaration"})
BLOCK_TYPES = frozenset({"block", "statement_block", "compound_statement", "statement_list", "constructor_body"})
CALL_TYPES = frozenset({"call", "call_expression", "method_invocation"})
CONDITION_TYPES = frozenset({"if_statement", "while_statement", "elif_clause", "if_expression",
                             "while_expression", "do_statement"})
IDENTIFIER_TYPES = frozenset({"identifier", "field_identifier", "property_identifier", "type_identifier",
                              "package_identifier", "namespace_identifier", "shorthand_property_identifier",
                              "statement_identifier", "constant"})
DEFINITION_TYPES = FUNCTION_TYPES | frozenset({
    "class_definition", "class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
    "struct_item", "enum_item", "trait_item", "type_item", "const_item", "static_item", "type_spec",
    "type_alias_declaration", "struct_specifier", "class_specifier", "enum_specifier", "variable_declarator",
    "const_spec", "var_spec", "field_declaration", "abstract_class_declaration"})
_UNCOMMON_PARENS = frozenset({"parenthesized_expression", "condition_clause"})


@functools.cache
def parser_for(language: str) -> Any | None:
    """A tree-sitter parser for ``language`` (names as in core/data/languages.py), or None if no grammar."""
    spec = GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        import tree_sitter

        grammar = importlib.import_module(spec[0])
        return tree_sitter.Parser(tree_sitter.Language(getattr(grammar, spec[1])()))
    except (ImportError, AttributeError, ValueError):
        return None


def supported_languages() -> list[str]:
    return sorted(lang for lang in GRAMMARS if parser_for(lang) is not None)


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


# ---- the repository's symbol table ----------------------------------------------------------------------

def _walk(node: Any, *, into_functions: bool = True) -> Iterator[Any]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        children = n.children
        if not into_functions and n.type in FUNCTION_TYPES:
            children = [c for c in children if c != n.child_by_field_name("body")]
        stack.extend(reversed(children))


def _definition_name(node: Any) -> str | None:
    name = node.child_by_field_name("name")
    if name is None:   # C/C++ functions: the name sits at the bottom of a declarator chain
        decl = node.child_by_field_name("declarator")
        while decl is not None and decl.type not in IDENTIFIER_TYPES:
            decl = decl.child_by_field_name("declarator") or decl.child_by_field_name("name")
        name = decl
    if name is None or name.type not in IDENTIFIER_TYPES:
        return None
    return name.text.decode("utf-8", "replace")


def file_symbols(tree: Any) -> set[str]:
    """Names a file defines outside function bodies: functions, classes, types, members, module variables."""
    names = set()
    for node in _walk(tree.root_node, into_functions=False):
        if node.type in DEFINITION_TYPES:
            name = _definition_name(node)
            if name:
                names.add(name)
        elif node.type == "assignment" and node.parent is not None and node.parent.type == "expression_statement":
            left = node.child_by_field_name("left")
            if left is not None and left.type == "identifier":
                names.add(left.text.decode("utf-8", "replace"))
    return names


def parse(content: str, language: str) -> Any | None:
    p = parser_for(language)
    return p.parse(content.encode("utf-8")) if p is not None else None


def repo_symbols(files: Iterable[Mapping]) -> dict[str, set[str]]:
    """Name -> the paths of the files that define it, over ``files`` (dicts with path, language, content)."""
    table: dict[str, set[str]] = defaultdict(set)
    for f in files:
        tree = parse(f["content"], f["language"])
        if tree is not None:
            for name in file_symbols(tree):
                table[name].add(f["path"])
    return dict(table)


# ---- spans ----------------------------------------------------------------------------------------------

def _line_start(src: bytes, i: int) -> int:
    return src.rfind(b"\n", 0, i) + 1


def _line_end(src: bytes, i: int) -> int:
    """Offset just past the newline ending the line that holds ``i`` (the file's end if none)."""
    j = src.find(b"\n", i)
    return len(src) if j < 0 else j + 1


def _spans(tree: Any, src: bytes) -> Iterator[tuple[str, int, int]]:
    """(kind, start byte, end byte) candidates, in file order within each kind."""
    for node in _walk(tree.root_node):
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


def _acceptable(kind: str, text: str) -> bool:
    stripped = text.strip()
    if not stripped:
        return False
    if kind in ("single_line", "call_args", "condition"):
        return "\n" not in stripped and len(stripped) <= MAX_INLINE_CHARS and \
            (kind != "single_line" or len(stripped.strip("{}();")) >= MIN_LINE_CHARS)
    return True


def identifiers_in(tree: Any, start: int, end: int) -> list[str]:
    return [n.text.decode("utf-8", "replace") for n in _walk(tree.root_node)
            if n.type in IDENTIFIER_TYPES and n.start_byte >= start and n.end_byte <= end]


# ---- mining ---------------------------------------------------------------------------------------------

def mine_file(f: Mapping, symbols: Mapping[str, set[str]] | None = None) -> list[FimTask]:
    """Every candidate task of one file (a dict with repo, path, language, content); labelled cross-file
    against ``symbols`` (:func:`repo_symbols` of the repo), all in-file without it."""
    tree = parse(f["content"], f["language"])
    if tree is None or tree.root_node.has_error:
        return []
    src = f["content"].encode("utf-8")
    own = file_symbols(tree)
    tasks, seen = [], set()
    for kind, start, end in _spans(tree, src):
        if (kind, start, end) in seen or end <= start:
            continue
        seen.add((kind, start, end))
        reference = src[start:end].decode("utf-8", "replace")
        if not _acceptable(kind, reference):
            continue
        used = set(identifiers_in(tree, start, end))
        foreign = sorted(n for n in used if len(n) >= MIN_SYMBOL_LEN and n not in own and symbols
                         and any(p != f["path"] for p in symbols.get(n, ())))
        paths = sorted({p for n in foreign for p in symbols[n] if p != f["path"]}) if foreign else []
        digest = hashlib.sha256(f"{f['repo']}:{f['path']}:{kind}:{start}:{end}".encode()).hexdigest()[:12]
        tasks.append(FimTask(
            task_id=f"fim/{digest}", repo=f["repo"], path=f["path"], language=f["language"], kind=kind,
            prefix=src[:start].decode("utf-8", "replace"), suffix=src[end:].decode("utf-8", "replace"),
            reference=reference, line=src[:start].count(b"\n") + 1, cross_file=bool(foreign),
            cross_file_symbols=foreign, defining_paths=paths))
    return tasks
