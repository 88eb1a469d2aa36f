"""Which programming language a file is, from its path (extension or well-known name) or its shebang line.

Detection from the path needs no file content, so the scanner can skip files of unwanted languages
without reading their blobs. Only extensionless files with no well-known name need their first line
(``#!/usr/bin/env python3``), and only when they are small enough to be read at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

# Extension (lower case, with the dot) -> language. Ambiguous ".h" is counted as C.
EXTENSION_LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp", ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp",
    ".ipp": "cpp", ".inl": "cpp",
    ".cs": "csharp",
    ".rb": "ruby", ".rake": "ruby", ".gemspec": "ruby",
    ".php": "php",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".ksh": "shell",
    ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".sc": "scala",
    ".swift": "swift",
    ".m": "objective-c", ".mm": "objective-c",
    ".sql": "sql",
    ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".md": "markdown", ".rst": "restructuredtext",
    ".html": "html", ".htm": "html",
    ".css": "css", ".scss": "scss", ".less": "less",
    ".vue": "vue", ".svelte": "svelte",
    ".dart": "dart",
    ".lua": "lua",
    ".pl": "perl", ".pm": "perl",
    ".r": "r",
    ".jl": "julia",
    ".hs": "haskell",
    ".ex": "elixir", ".exs": "elixir",
    ".erl": "erlang", ".hrl": "erlang",
    ".clj": "clojure", ".cljs": "clojure",
    ".ml": "ocaml", ".mli": "ocaml",
    ".fs": "fsharp", ".fsx": "fsharp",
    ".groovy": "groovy", ".gradle": "groovy",
    ".ps1": "powershell",
    ".tf": "hcl", ".hcl": "hcl",
    ".proto": "protobuf",
    ".cmake": "cmake",
    ".mk": "makefile",
    ".dockerfile": "dockerfile",
}

# Whole file names (exact) that have no telling extension.
FILENAME_LANGUAGES: dict[str, str] = {
    "Makefile": "makefile", "makefile": "makefile", "GNUmakefile": "makefile",
    "Dockerfile": "dockerfile", "Containerfile": "dockerfile",
    "CMakeLists.txt": "cmake",
    "Rakefile": "ruby", "Gemfile": "ruby", "Vagrantfile": "ruby",
    "Jenkinsfile": "groovy",
    "BUILD": "starlark", "BUILD.bazel": "starlark", "WORKSPACE": "starlark",
}

# Shebang interpreter (basename, version digits stripped) -> language.
SHEBANG_LANGUAGES: dict[str, str] = {
    "python": "python", "pypy": "python",
    "node": "javascript", "nodejs": "javascript", "deno": "typescript", "ts-node": "typescript",
    "sh": "shell", "bash": "shell", "zsh": "shell", "ksh": "shell", "dash": "shell",
    "ruby": "ruby", "php": "php", "perl": "perl", "lua": "lua", "Rscript": "r",
}

KNOWN_LANGUAGES: frozenset[str] = frozenset(
    [*EXTENSION_LANGUAGES.values(), *FILENAME_LANGUAGES.values(), *SHEBANG_LANGUAGES.values()])

# The Dockerfile family: "Dockerfile.dev", "api.Dockerfile".
_DOCKERFILE = re.compile(r"^(Dockerfile|Containerfile)\.[\w.-]+$|\.[Dd]ockerfile$")
_VERSION_SUFFIX = re.compile(r"[\d.]+$")


def language_from_path(path: str) -> str | None:
    """The language of ``path`` from its name alone, or None when the name does not tell."""
    name = PurePosixPath(path).name
    if name in FILENAME_LANGUAGES:
        return FILENAME_LANGUAGES[name]
    if _DOCKERFILE.search(name):
        return "dockerfile"
    suffix = PurePosixPath(name).suffix.lower()
    return EXTENSION_LANGUAGES.get(suffix) if suffix else None


def needs_shebang(path: str) -> bool:
    """True when only the content can tell: no extension and no well-known file name."""
    name = PurePosixPath(path).name
    return not PurePosixPath(name).suffix and language_from_path(path) is None


def language_from_shebang(head: bytes) -> str | None:
    """The language named by a ``#!`` first line (``#!/usr/bin/env -S python3 -u`` too), or None."""
    if not head.startswith(b"#!"):
        return None
    words = head[2:256].split(b"\n", 1)[0].split()
    if not words:
        return None
    interpreter = words[0].rsplit(b"/", 1)[-1]
    if interpreter == b"env":  # skip env's options and VAR=value assignments
        args = [w for w in words[1:] if not w.startswith(b"-") and b"=" not in w]
        if not args:
            return None
        interpreter = args[0].rsplit(b"/", 1)[-1]
    return SHEBANG_LANGUAGES.get(_VERSION_SUFFIX.sub("", interpreter.decode("ascii", "replace")))


def detect_language(path: str, head: bytes | None = None) -> str | None:
    """The language of a file from its path, else from the shebang in ``head`` (its first bytes)."""
    lang = language_from_path(path)
    if lang is None and head is not None and needs_shebang(path):
        lang = language_from_shebang(head)
    return lang


def check_languages(names: Iterable[str] | None, where: str = "languages") -> frozenset[str] | None:
    """Validate a configured language list; None means all. Unknown names raise ValueError naming them."""
    if names is None:
        return None
    wanted = frozenset(n.lower() for n in names)
    unknown = sorted(wanted - KNOWN_LANGUAGES)
    if unknown:
        raise ValueError(f"{where}: unknown language(s) {unknown}; known: {sorted(KNOWN_LANGUAGES)}")
    return wanted
