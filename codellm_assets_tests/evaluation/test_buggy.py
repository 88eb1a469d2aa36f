"""The buggy-code detector: a table of snippets -> verdicts, batch rates, execution, other languages."""

from __future__ import annotations

import pytest

from codellm_assets.core.evaluation.buggy import (
    CodeAssessment,
    assess_code,
    batch_rates,
    ruff_binary,
    syntax_languages,
)


@pytest.mark.parametrize("code,prompt,buggy,syntax_error,truncated", [
    # whole modules
    ("def add(a, b):\n    return a + b\n", None, False, False, False),
    ("def add(a, b)\n    return a + b\n", None, True, True, False),
    ("x = 1 +* 2\ny = 3\n", None, True, True, False),
    ("def f():\n    return undefined_name\n", None, True, False, False),
    ("import os\n", None, False, False, False),                      # unused import: style only
    ("def f(x=[]):\n    return x\n", None, False, False, False),     # bugbear B006: a smell, not a bug
    # function-body fragments (typical completions)
    ("    return a + b\n", None, False, False, False),
    ("    return x +* 1\n", None, True, True, False),
    ("    y = 1\n    return y\n", None, False, False, False),
    # with the prompt the completion continues
    ("    return n * 2\n", "def double(n):\n", False, False, False),
    ("    return m * 2\n", "def double(n):\n", True, False, False),   # m is undefined: a real bug
    ("    return n * 2\n  oops\n", "def double(n):\n", True, True, False),
    # truncated by the token limit: not a syntax error
    ("def f(a):\n    return a\n\nresult = f(1,\n", None, False, False, True),
    ("def f(a):\n    return a\nif result:", None, False, False, True),
    ("    total = 0\n    for x in xs:\n        total = total +", "def s(xs):\n", False, False, True),
    ('    """Docstring cut', "def s(xs):\n", False, False, True),
])
def test_python_verdicts(code, prompt, buggy, syntax_error, truncated):
    verdict = assess_code(code, "python", prompt=prompt)
    assert isinstance(verdict, CodeAssessment)
    assert (verdict.buggy, verdict.syntax_error, verdict.truncated) == (buggy, syntax_error, truncated), verdict
    assert 0.0 <= verdict.risk <= 1.0 and verdict.buggy == (verdict.risk >= 0.5)
    if syntax_error:
        assert verdict.risk == 1.0 and verdict.reasons[0].startswith("syntax error")


def test_lint_findings_name_the_rule_and_completion_line():
    verdict = assess_code("    y = 1\n    return undefined_thing\n", prompt="def f():\n")
    assert any(f.startswith("F821 line 2") for f in verdict.lint_findings), verdict.lint_findings
    assert any("F841" in f for f in verdict.lint_findings)
    assert verdict.buggy


def test_without_ruff_only_syntax_counts():
    assert ruff_binary() is not None  # ruff is a project dependency
    verdict = assess_code("def f():\n    return undefined_name\n", run_ruff=False)
    assert verdict.lint_findings == [] and not verdict.buggy


def test_syntax_error_message_counts_lines_from_the_completion():
    verdict = assess_code("    a = 1\n    return a +* 2\n", prompt="def f():\n")
    assert verdict.reasons == ["syntax error: line 2: invalid syntax"]
    in_prompt = assess_code("    return 1\n", prompt="def f(:\n")
    assert not in_prompt.syntax_error and "prompt does not parse" in in_prompt.reasons[0]
    both = assess_code("    return 1 +* 2\n", prompt="def f(:\n")
    note = "prompt does not parse (in the prompt, line 1: invalid syntax); the completion was checked alone"
    assert both.syntax_error and both.reasons == [note, "syntax error: line 1: invalid syntax"]


@pytest.mark.parametrize("code,buggy,reason", [
    ("def f():\n    return 1 / 0\nf()\n", True, "ZeroDivisionError"),
    ("while True:\n    pass\n", True, "timed out"),
    ("print(sum(range(10)))\n", False, None),
])
def test_execution_in_the_sandbox(code, buggy, reason):
    verdict = assess_code(code, execute=True, timeout_s=1.0)
    assert verdict.buggy == buggy, verdict
    if reason:
        assert any(reason in r for r in verdict.reasons), verdict.reasons


@pytest.mark.parametrize("language,code,syntax_error,truncated", [
    ("javascript", "function f(a) { return a + 1; }", False, False),
    ("javascript", "function f(a { return a + 1; }", True, False),
    ("javascript", "function f(a) {\n  if (a) {\n    return 1;", False, True),
    ("typescript", "const x: number = 1;", False, False),
    ("typescript", "const x: = ;", True, False),
    ("go", "package main\nfunc main() { x := 1; _ = x }", False, False),
    ("go", "package main\nfunc main( {", True, False),
    ("rust", "fn main() { let x = 1; }", False, False),
    ("java", "class A { int f() { return 1 } }", True, False),
    ("c", "int main(void) { return 0; }", False, False),
    ("cpp", "int main() { return 0 }", True, False),
])
def test_other_languages_with_tree_sitter(language, code, syntax_error, truncated):
    if language not in syntax_languages():
        pytest.skip(f"no tree-sitter grammar installed for {language}")
    verdict = assess_code(code, language)
    assert (verdict.syntax_error, verdict.truncated, verdict.syntax_checked) == (syntax_error, truncated, True)


def test_unknown_language_is_not_judged():
    verdict = assess_code("IDENTIFICATION DIVISION.", "cobol")
    assert not verdict.syntax_checked and not verdict.buggy and "cobol" in verdict.reasons[0]


@pytest.mark.parametrize("verdicts,expected", [
    ([], {"buggy_code_rate": 0.0, "syntax_error_rate": 0.0, "n": 0}),
    ([(False, False), (True, True), (True, False), (False, False)],
     {"buggy_code_rate": 0.5, "syntax_error_rate": 0.25, "n": 4}),
])
def test_batch_rates(verdicts, expected):
    items = [CodeAssessment(risk=1.0 if b else 0.0, buggy=b, syntax_error=s) for b, s in verdicts]
    assert batch_rates(items) == expected


def test_batch_rates_over_real_assessments():
    codes = ["def f():\n    return 1\n", "def f(:\n", "def g():\n    return nope_name\n", "x = (1,\n"]
    rates = batch_rates(assess_code(c) for c in codes)
    assert rates == {"buggy_code_rate": 0.5, "syntax_error_rate": 0.25, "n": 4}
