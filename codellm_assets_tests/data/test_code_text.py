"""Code and prose (comments, docstrings) split per language family, and the shingles near-dedup compares:
true and false examples side by side."""

import pytest

from codellm_assets.core.data.code_text import (
    NORMALISATION_VERSION,
    code_and_prose,
    code_only,
    code_only_for_path,
    code_shingles,
)
from codellm_assets.core.data.minhash import jaccard
from codellm_assets.settings import DedupSettings


@pytest.mark.parametrize("language, text, gone, kept", [
    ("python", "x = 1  # the answer\n", "answer", "x = 1"),
    ("python", "# header line\nimport os\n", "header", "import os"),
    ("python", 's = "a # not a comment"\n', None, "# not a comment"),
    ("python", "u = 'http://host/#frag'  # real one\n", "real one", "#frag"),
    ("python", '"""Module docstrings are prose."""\nimport os\n', "prose", "import os"),
    ("python", 'def f():\n    """Docstring,\n    two lines."""\n    return 1\n', "two lines", "return 1"),
    # a triple-quoted string inside code (a message, a help text, a template) is prose: v3
    ("python", "t = '''a\n# inside a triple string\n'''\n", "inside a triple", "t ="),
    ("python", 'T = """\ndef template():\n    pass\n"""\n', "template", "T ="),
    ("python", 'p.add_argument("--x", help="""Long help\nover lines.""")\n', "Long help", 'p.add_argument("--x"'),
    # prose that starts with "class" or "def" is not code a stray quote would run over: v3
    ("python", 'def f():\n    """Return the\n    class and its bases."""\n    return 1\n', "its bases", "return 1"),
    # a backslash may end a docstring's line: v3
    ("python", 'def f():\n    """\\\n    Escaped newline.\n    """\n    return 1\n', "Escaped", "return 1"),
    ("python", 'call(\n    "an argument",\n)\n', None, '"an argument"'),       # not alone on its line
    ("python", 'x = 1\r\n"""CRLF docstring."""\r\ny = 2\r\n', "CRLF", "y = 2"),
    # a docstring that lost its closing quotes: the code after it stays code, the next docstring prose
    ("python", 'class A:\n    """Broken.\n    def f(self):\n        """Doc."""\n        return 1\n', "Doc.",
     "def f(self):"),
    ("javascript", "let a = 1; // trailing\n/* block\ncomment */ let b = 2;\n", "trailing", "let b = 2"),
    ("javascript", "const u = 'http://x.io/a';\n", None, "http://x.io/a"),
    ("javascript", "const t = `// template ${x}`;\n", None, "// template"),
    ("go", "/* licence */\npackage main // pkg\n", "licence", "package main"),
    ("shell", "echo \"#1\" # say it\n", "say it", 'echo "#1"'),
    ("shell", "n=$#  # args\n", "args", "n=$#"),
    ("sql", "SELECT 1; -- why\n/* multi\nline */ SELECT '--x';\n", "why", "SELECT '--x'"),
    ("markdown", "# A title\n", None, "# A title"),            # no comments known: unchanged
    (None, "# whatever\n", None, "# whatever"),
])
def test_code_only(language, text, gone, kept):
    out = code_only(text, language)
    if gone:
        assert gone not in out
    assert kept in out


def test_prose_is_returned_beside_the_code():
    code, prose = code_and_prose('"""Doc."""\nx = 1  # why\n', "python")
    assert "Doc" not in code and "why" not in code and prose == ['"""Doc."""', "# why"]
    assert code_and_prose("plain", None) == ("plain", [])


def test_language_from_the_path():
    assert "note" not in code_only_for_path("x = 1  # note\n", "pkg/mod.py")
    assert code_only_for_path("x = 1  # note\n", "") == "x = 1  # note\n"


def _module(names, doc_word, body=""):
    """A small module: one function per name, each with a docstring of 12 words of its own."""
    return body + "".join(
        f'def {n}(value, scale={i}):\n    """{" ".join(f"{doc_word}{j}" for j in range(12 * i, 12 * i + 12))}"""\n'
        f"    total = value * scale + {i * 7}\n    return total - {i}\n\n" for i, n in enumerate(names))


NAMES = [f"step_{i}" for i in range(30)]
WORDS_A, WORDS_B = "normalise", "guard"
SCAFFOLD = ('import json\nimport logging\n\nlogger = logging.getLogger(__name__)\n\n\n'
            'def load_config(path):\n    """Read the configuration."""\n    return json.loads(path.read_text())\n\n')


def _service(word: str, code: str) -> str:
    """The scaffolding, then a module docstring of 80 words of its own and a line of code."""
    return SCAFFOLD + '"""' + " ".join(f"{word}{i}" for i in range(80)) + '"""\n' + code


def _j(a: str, b: str) -> float:
    d = DedupSettings()
    return jaccard(code_shingles(a, "m.py", d.shingle_size, d.prose_weight),
                   code_shingles(b, "m.py", d.shingle_size, d.prose_weight))


@pytest.mark.parametrize("what, a, b, near", [
    ("docstrings reworded", _module(NAMES, WORDS_A), _module(NAMES, WORDS_B), True),
    ("reformatted: quotes, wrapping, indent", "x = f('a', 'b', 'c')\n" * 3 + _module(NAMES, WORDS_A),
     'x = f(\n  "a",\n  "b",\n  "c",\n)\n' * 3 + _module(NAMES, WORDS_A).replace("    ", "  "), True),
    ("new header comment", _module(NAMES, WORDS_A),
     "# Vendored copy for acme; patch upstream.\n# vendored at 3f2a9c1\n" + _module(NAMES, WORDS_A), True),
    # distinct: the same scaffolding, a small body of their own, docs of their own
    ("scaffold + other small bodies", _service("billing", "VERSION = '1.0'\n"),
     _service("search", "VERSION = '2.3'\n"), False),     # near on their code alone: prose tells them apart
    ("other code, same docs", _module(NAMES, WORDS_A),
     _module([f"other_{i}" for i in range(30)], WORDS_A).replace("total", "acc").replace("value", "v"), False),
])
def test_near_or_not(what, a, b, near):
    assert (_j(a, b) >= DedupSettings().threshold) is near, (what, _j(a, b))


def test_prose_weight_bounds_what_prose_adds():
    d = DedupSettings()
    text = '"""' + " ".join(f"w{i}" for i in range(400)) + '"""\nx = 1\n'
    none, some, all_ = (len(code_shingles(text, "m.py", d.shingle_size, w)) for w in (0.0, d.prose_weight, 1.0))
    assert none == 1 and all_ == 400 and 0.05 * all_ < some < 0.3 * all_


def test_normalisation_version_is_part_of_the_dedup_settings():
    assert DedupSettings().normalisation_version == NORMALISATION_VERSION
    assert "normalisation_version" in DedupSettings().model_dump()
