"""Tree-sitter parsing of every configured language and the symbol table of a repository: which file defines
which name (functions, classes, types, class members, module-level variables), at which line.

Used by the repository context (core/data/code_index.py: the definition of a name used near the cursor)
and by the repo-level benchmark (core/evaluation/fim_mining.py: is a masked span cross-file?).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

GRAMMARS: dict[str, tuple[str, str]] = {
    "python": ("tree_sitter_python", "language"), "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"), "go": ("tree_sitter_go", "language"),
    "java": ("tree_sitter_java", "language"), "rust": ("tree_sitter_rust", "language"),
    "c": ("tree_sitter_c", "language"), "cpp": ("tree_sitter_cpp", "language"),
}
FUNCTION_TYPES = frozenset({"function_definition", "function_declaration", "method_definition",
                            "method_declaration", "constructor_declaration", "function_item",
                            "generator_function_declaration"})
IDENTIFIER_TYPES = frozenset({"identifier", "field_identifier", "property_identifier", "type_identifier",
                              "package_identifier", "namespace_identifier", "shorthand_property_identifier",
                              "statement_identifier", "constant"})
DEFINITION_TYPES = FUNCTION_TYPES | frozenset({
    "class_definition", "class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
    "struct_item", "enum_item", "trait_item", "type_item", "const_item", "static_item", "type_spec",
    "type_alias_declaration", "struct_specifier", "class_specifier", "enum_specifier", "variable_declarator",
    "const_spec", "var_spec", "field_declaration", "abstract_class_declaration"})


@functools.cache
def load_parser(module: str, function: str) -> Any | None:
    """A tree-sitter parser for the grammar wheel ``module``'s ``function()`` (None when not installed)."""
    try:
        import tree_sitter

        grammar = importlib.import_module(module)
        return tree_sitter.Parser(tree_sitter.Language(getattr(grammar, function)()))
    except (ImportError, AttributeError, ValueError):
        return None


def parser_for(language: str) -> Any | None:
    """A tree-sitter parser for ``language`` (names as in core/data/languages.py), or None if no grammar."""
    spec = GRAMMARS.get(language)
    return load_parser(*spec) if spec else None


def supported_languages() -> list[str]:
    return sorted(lang for lang in GRAMMARS if parser_for(lang) is not None)


def parse(content: str, language: str | None) -> Any | None:
    p = parser_for(language or "")
    return p.parse(content.encode("utf-8")) if p is not None else None


def walk(node: Any, *, into_functions: bool = True) -> Iterator[Any]:
    """Pre-order walk; with ``into_functions=False`` function bodies are skipped (their locals are not
    the file's definitions)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        children = n.children
        if not into_functions and n.type in FUNCTION_TYPES:
            children = [c for c in children if c != n.child_by_field_name("body")]
        stack.extend(reversed(children))


def _definition_name(node: Any) -> Any | None:
    name = node.child_by_field_name("name")
    if name is None:   # C/C++ functions: the name sits at the bottom of a declarator chain
        decl = node.child_by_field_name("declarator")
        while decl is not None and decl.type not in IDENTIFIER_TYPES:
            decl = decl.child_by_field_name("declarator") or decl.child_by_field_name("name")
        name = decl
    return name if name is not None and name.type in IDENTIFIER_TYPES else None


def file_definitions(tree: Any) -> dict[str, int]:
    """Name -> 1-based line of its first definition outside function bodies."""
    found: dict[str, int] = {}
    for node in walk(tree.root_node, into_functions=False):
        if node.type in DEFINITION_TYPES:
            targets = [t for t in [_definition_name(node)] if t is not None]
        elif node.type == "assignment" and node.parent is not None and node.parent.type == "expression_statement":
            left = node.child_by_field_name("left")   # python: x = ... or x, y = ...
            targets = [left] if left is not None and left.type == "identifier" else \
                [c for c in (left.children if left is not None else []) if c.type == "identifier"]
        else:
            continue
        for t in targets:
            found.setdefault(t.text.decode("utf-8", "replace"), t.start_point[0] + 1)
    return found


def file_symbols(tree: Any) -> set[str]:
    return set(file_definitions(tree))


def repo_definitions(files: Iterable[Mapping], *, cache_root: Path | None = None, partition: str = "_",
                     compact: bool = False) -> dict[str, dict[str, int]]:
    """Name -> {path: line} over ``files`` (dicts with path, language, content); unparsable files skipped.

    ``cache_root``: each file's definitions are kept there (core/data/blob_cache.py, stage ``definitions``,
    keyed by language + content, under a hash of this module and the grammars' versions), so an unchanged
    file is not parsed again: the code_index asset, the training context sampler and the benchmark's index
    read the same files (parsing and walking them was ~40 % of each index build). ``partition``: the repo;
    ``compact``: ``files`` are all of the repo's files the cache needs to keep."""
    files = list(files)
    if cache_root is None:
        per_file = [file_definitions_of(f) for f in files]
    else:
        from codellm_assets.core.data.blob_cache import StageCache, cached_map, content_key

        cache = StageCache(cache_root, "definitions", _definitions_stage_hash(), partition, DEFINITIONS_SCHEMA)
        keys = [content_key(str(f.get("language") or ""), str(f["content"])) for f in files]
        values, _ = cached_map(cache, keys, files, _definitions_batch, compact=compact)
        per_file = [json.loads(v["defs"]) for v in values]
    table: dict[str, dict[str, int]] = defaultdict(dict)
    for f, found in zip(files, per_file, strict=True):
        for name, line in found.items():
            table[name][f["path"]] = line
    return dict(table)


def file_definitions_of(f: Mapping) -> dict[str, int]:
    """:func:`file_definitions` of one file record ({} when its language has no grammar or it does not parse)."""
    tree = parse(f["content"], f.get("language"))
    return file_definitions(tree) if tree is not None else {}


def _definitions_batch(files: list[Mapping]) -> list[dict[str, str]]:
    return [{"defs": json.dumps(file_definitions_of(f))} for f in files]


DEFINITIONS_SCHEMA = pa.schema([("defs", pa.string())])     # name -> line, as JSON


@functools.cache
def _definitions_stage_hash() -> str:
    from codellm_assets.core.data.blob_cache import code_version, stage_hash

    versions = {}
    for dist in ["tree-sitter", *(m.replace("_", "-") for m, _ in GRAMMARS.values())]:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return stage_hash(versions, code_version(__file__))


def repo_symbols(files: Iterable[Mapping]) -> dict[str, set[str]]:
    """Name -> the paths of the files that define it."""
    return {name: set(paths) for name, paths in repo_definitions(files).items()}
