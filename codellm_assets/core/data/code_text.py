"""Code-aware text for near-dedup: what two copies of one file keep in common once their comments, docstrings
and formatting are rewritten.

Word shingles of the raw text call a vendored copy with a new comment header, or a release whose comments and
docstrings were reworded, a different file: prose is a large part of many files. :func:`code_and_prose`
splits a file into its code and its prose (comments; Python docstrings and other triple-quoted strings) with one
regular expression per language family that recognises string literals first, so a ``#`` or ``//`` inside a
string is kept. Quotes, whitespace and line wrapping need nothing more: shingles are built from word tokens,
which none of those change.

:func:`code_shingles` is what near-dedup compares: every shingle of the code, and of the prose only the
shingles whose stable hash falls in the lowest ``prose_weight`` fraction (the same shingles in every copy, so
shared prose still counts, at that weight). Dropping prose entirely (weight 0) made distinct files that share
a block of scaffolding code and differ mostly in their comments and docstrings "copies" (labelled set,
``benchmarks/dedup.py``); keeping it whole (weight 1, docstrings kept) missed every copy whose docstrings were
reworded. 0.15 with 2-word shingles was tuned on the tuning slice of the hard set only.

A docstring whose closing quotes were lost (a broken edit: code at its own indentation, or a top-level
``def``/``class``, comes before the next triple quote) is not taken as a string running to the next
docstring: its opening quotes are dropped and the scan goes on as code, so one bad line does not swap code and
prose for the rest of the file.

A file whose language is unknown (or a language without comments we know) is all code, unchanged.
Change :data:`NORMALISATION_VERSION` with any change here that changes shingles: it is part of the dedup
settings' identity (``DedupSettings.normalisation_version``), so cached signatures are recomputed.
"""

from __future__ import annotations

import re
import zlib

from codellm_assets.core.data.languages import language_from_path

NORMALISATION_VERSION = 3   # 1: comments dropped; 2: + docstrings, prose kept at a hashed sample;
                            # 3: a stray quote needs a real def/class after it (not prose like "class and"),
                            # triple-quoted strings inside code are prose, and one may hold a backslash at a line end

_PY_TRIPLE = r"""\"\"\"(?:\\[\s\S]|[^\\])*?\"\"\"|'''(?:\\[\s\S]|[^\\])*?'''"""  # a \ may end a line
_PY_LINE = r""""(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'"""
_PY_PREFIX = r"[rRbBuUfF]{0,2}"
# Opening quotes at a line start whose "string" would run over a def/class at its own indentation or column 0.
_PY_STRAY = (r"""(?P<stray>^(?P<ind>[ \t]*)[rRuU]?(?P<q>\"\"\"|''')"""
             r"""(?=(?:(?!(?P=q))[\s\S])*?\n(?:(?P=ind)|)(?:async[ \t]+)?"""
             r"""(?:def[ \t]+\w+[ \t]*\(|class[ \t]+\w+[ \t]*[(:])))""")
# A string statement: a string alone on its line(s) (docstrings; also bare strings in a multi-line call, rare).
_PY_DOC = rf"""(?P<doc>^[ \t]*[rRuU]?(?:{_PY_TRIPLE}|{_PY_LINE})[ \t]*(?=\r?\n|\Z))"""
# A triple-quoted string inside code (a message, a help text) is prose too; a one-line string is code.
_PYTHON = re.compile(rf"(?=[ \t\"'rRbBuUfF#])(?:{_PY_STRAY}|{_PY_DOC}|(?P<text>{_PY_PREFIX}(?:{_PY_TRIPLE}))"
                     rf"|(?P<str>{_PY_PREFIX}(?:{_PY_LINE}))|(?P<prose>#[^\n]*))", re.M)
_C_STRING = r"""(?:"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)"""
_C_FAMILY = re.compile(rf"(?P<str>{_C_STRING})|(?P<prose>//[^\n]*|/\*[\s\S]*?\*/)")
_HASH = re.compile(r"""(?P<str>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')|(?P<prose>(?<![\w$])#[^\n]*)""")
_SQL = re.compile(r"(?P<str>'(?:''|[^'])*')|(?P<prose>--[^\n]*|/\*[\s\S]*?\*/)")

_BY_LANGUAGE = {
    "python": _PYTHON, "starlark": _PYTHON,
    **dict.fromkeys(["javascript", "typescript", "java", "go", "rust", "c", "cpp", "csharp", "kotlin", "scala",
                     "swift", "objective-c", "dart", "groovy", "php", "protobuf", "css", "scss", "less"],
                    _C_FAMILY),
    **dict.fromkeys(["shell", "ruby", "perl", "r", "yaml", "toml", "makefile", "cmake", "dockerfile", "hcl",
                     "elixir", "julia", "powershell"], _HASH),
    "sql": _SQL,
}
_WORD = re.compile(r"\w+")
_HASH_SPACE = 2**32


def code_and_prose(text: str, language: str | None) -> tuple[str, list[str]]:
    """(``text`` with its comments and docstrings replaced by a space, those comments and docstrings)."""
    pattern = _BY_LANGUAGE.get(language or "")
    if pattern is None:
        return text, []
    prose: list[str] = []

    def split(m: re.Match) -> str:
        kind = m.lastgroup          # the outermost group closes last: stray, doc, text, str or prose
        if kind == "stray":
            return m.group(0)[: -len(m.group("q"))] + " "
        if kind == "str":
            return m.group(0)
        prose.append(m.group(0))
        return " "

    return pattern.sub(split, text), prose


def code_only(text: str, language: str | None) -> str:
    """``text`` without comments (and Python docstrings) for ``language``; unchanged when it is unknown."""
    return code_and_prose(text, language)[0]


def code_only_for_path(text: str, path: str) -> str:
    """:func:`code_only` with the language told by the file name."""
    return code_only(text, language_from_path(path) if path else None)


def _shingles(words: list[str], k: int) -> set[str]:
    if len(words) < k:
        return set()
    return set(map(" ".join, zip(*(words[i:] for i in range(k)))))


def code_shingles(text: str, path: str, k: int, prose_weight: float) -> set[str]:
    """The ``k``-word shingles near-dedup compares (see the module docstring): all of the code's, and the
    prose's whose CRC-32 is below ``prose_weight`` of the hash space. Shingles never span code and prose, nor
    two comments. Fewer than ``k`` words of code and sampled prose: no shingles (exact dedup only)."""
    code, prose = code_and_prose(text, language_from_path(path) if path else None)
    out = _shingles(_WORD.findall(code), k)
    limit = int(prose_weight * _HASH_SPACE)
    if limit and prose:
        candidates = set().union(*(_shingles(_WORD.findall(part), k) for part in prose)) - out
        out.update(s for s in candidates if zlib.crc32(s.encode("utf-8", "surrogatepass")) < limit)
    return out
