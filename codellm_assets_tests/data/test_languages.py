"""Language detection from paths and shebang lines."""

from __future__ import annotations

import pytest

from codellm_assets.core.data.languages import (
    check_languages,
    detect_language,
    language_from_shebang,
    needs_shebang,
)


@pytest.mark.parametrize("path,expected", [
    ("a/b.py", "python"), ("x.PY", "python"), ("web/app.tsx", "typescript"), ("lib.rs", "rust"),
    ("Main.java", "java"), ("m.go", "go"), ("x.hpp", "cpp"), ("x.h", "c"), ("p.cs", "csharp"),
    ("s.kt", "kotlin"), ("q.sql", "sql"), ("ci.yml", "yaml"), ("run.sh", "shell"),
    ("Makefile", "makefile"), ("docker/Dockerfile", "dockerfile"), ("Dockerfile.dev", "dockerfile"),
    ("api.Dockerfile", "dockerfile"), ("CMakeLists.txt", "cmake"),
    ("notes.txt", None), ("logo.png", None), ("README", None), (".gitignore", None), ("archive.tar.gz", None),
])
def test_language_from_path(path, expected):
    assert detect_language(path) == expected


@pytest.mark.parametrize("head,expected", [
    (b"#!/usr/bin/env python3\nprint(1)", "python"),
    (b"#!/usr/bin/python3.11 -u\n", "python"),
    (b"#! /bin/bash\n", "shell"),
    (b"#!/usr/bin/env -S node --harmony\n", "javascript"),
    (b"#!/usr/bin/env FOO=1 ruby\n", "ruby"),
    (b"#!/usr/bin/env\n", None),
    (b"#!/usr/bin/unknown-thing\n", None),
    (b"print(1)\n", None),
    (b"", None),
])
def test_language_from_shebang(head, expected):
    assert language_from_shebang(head) == expected


def test_shebang_only_for_extensionless_unknown_names():
    assert needs_shebang("bin/deploy") and not needs_shebang("Makefile") and not needs_shebang("x.txt")
    assert detect_language("bin/deploy", b"#!/bin/sh\n") == "shell"
    assert detect_language("x.txt", b"#!/bin/sh\n") is None


def test_check_languages():
    assert check_languages(None) is None
    assert check_languages(["Python", "go"]) == {"python", "go"}
    with pytest.raises(ValueError, match=r"repos\[x\]: unknown language\(s\) \['klingon'\]"):
        check_languages(["python", "klingon"], where="repos[x]")
