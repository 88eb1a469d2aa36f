"""Comments dropped, strings kept, per language family (true and false examples side by side)."""

import pytest

from codellm_assets.core.data.code_text import code_only, code_only_for_path


@pytest.mark.parametrize("language, text, gone, kept", [
    ("python", "x = 1  # the answer\n", "answer", "x = 1"),
    ("python", "# header line\nimport os\n", "header", "import os"),
    ("python", 's = "a # not a comment"\n', None, "# not a comment"),
    ("python", "u = 'http://host/#frag'  # real one\n", "real one", "#frag"),
    ("python", '"""Docstrings are code here."""\n', None, "Docstrings are code here."),
    ("python", "t = '''a\n# inside a triple string\n'''\n", None, "# inside a triple string"),
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


def test_language_from_the_path():
    assert "note" not in code_only_for_path("x = 1  # note\n", "pkg/mod.py")
    assert code_only_for_path("x = 1  # note\n", "") == "x = 1  # note\n"
