"""Buggy-code detector: is a generated completion likely broken?

Signals, cheapest first:

1. **Syntax.** Python is parsed with ``ast``; other languages with tree-sitter when the grammar package
   is installed (``tree-sitter-javascript``, ``-typescript``, ``-go``, ``-java``, ``-rust``, ``-c``, ``-cpp``).
   A language without a checker is not syntax-checked (a reason says so) and is never called buggy for it.
2. **Lint.** The installed ``ruff`` binary on the snippet via stdin with rules that flag real bugs:
   pyflakes (F: undefined names, unused variables, return outside function...), E9 (syntax/IO), bugbear (B),
   pylint errors (PLE). Each finding has a weight; style-only findings weigh little.
3. **Execution** (opt-in, ``execute=True``): the code runs in :mod:`codellm_assets.core.evaluation.sandbox.runner`;
   an exception or a timeout is a strong signal.

Fragments. Completions are rarely whole modules, so the Python parse rule is, in order:

* with a ``prompt``, parse ``prompt + code`` (the completion continues the prompt); else parse ``code``;
  when the only error lies inside the prompt (an IDE prefix may start mid-file), the completion is
  judged on its own, with a reason saying so;
* if that fails and the code is indented or uses ``return``/``yield``/``await``, parse it as the body of
  ``def``/``async def`` (a function-body fragment is normal for a completion);
* if it still fails, it is **truncated** (a completion cut off by the token limit), not a syntax error,
  when either the text is valid-but-incomplete by the REPL's rule (``codeop``: an open bracket, an
  open block header such as ``if x:`` with nothing after, an open triple-quoted string), or the error is
  on the last line, that line has no newline (it was cut), and dropping at most ``MAX_TRUNCATED_LINES``
  trailing lines leaves valid code (a cut mid-expression, ``y = i +``). Truncation adds a small risk
  and a reason; the complete part is linted. The price: a genuine typo on a last line that has no
  newline is also read as truncation.

A fragment parsed without a prompt may use names defined around it, so an undefined name there weighs
only ``FRAGMENT_CONTEXT_WEIGHT``; pass ``prompt`` for the full verdict.

Risk combines the signal weights as independent evidence: ``risk = 1 - prod(1 - w)``; ``buggy`` is
``risk >= 0.5``. A syntax error is risk 1.0.

Batch metrics used by serving and monitoring: :func:`batch_rates` gives ``buggy_code_rate`` (share of
assessments with ``buggy``) and ``syntax_error_rate`` (share with ``syntax_error``).
"""

from __future__ import annotations

import ast
import codeop
import functools
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from codellm_assets.core.data.code_symbols import load_parser

BUGGY_THRESHOLD = 0.5
MAX_TRUNCATED_LINES = 3
TRUNCATION_RISK = 0.1
RUFF_RULES = "F,E9,B,PLE"
RUFF_TIMEOUT_S = 10.0

# Weight of a lint finding, by exact code first, then by prefix. Undefined names and misuse of
# language constructs are bugs; unused imports are style.
LINT_WEIGHTS: dict[str, float] = {
    "F821": 0.6, "F822": 0.5, "F823": 0.6, "F706": 0.7, "F704": 0.7, "F701": 0.7, "F702": 0.7,
    "F631": 0.5, "F632": 0.4, "F811": 0.3, "F841": 0.15, "F401": 0.05, "F403": 0.05, "F405": 0.1,
    "F541": 0.02, "E9": 1.0, "PLE": 0.6, "B006": 0.3, "B008": 0.2, "B007": 0.05, "B018": 0.1,
    "B": 0.25, "F": 0.3,
}
# Without a prompt a fragment's free names may be defined in the code around it; after a truncation an
# unused name may be used in the part that was cut off.
CONTEXT_DEPENDENT = {"F821", "F823"}
FRAGMENT_CONTEXT_WEIGHT = 0.2
CUT_OFF_DEPENDENT = {"F841", "F401", "F811"}
EXEC_FAILURE_RISK = 0.7
EXEC_TIMEOUT_RISK = 0.6

# language name (lower case) -> (grammar module, function returning the language pointer)
TREE_SITTER_GRAMMARS: dict[str, tuple[str, str]] = {
    "javascript": ("tree_sitter_javascript", "language"), "js": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "ts": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"), "java": ("tree_sitter_java", "language"),
    "rust": ("tree_sitter_rust", "language"), "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"), "c++": ("tree_sitter_cpp", "language"),
}
_CLOSERS = {"{": "}", "(": ")", "[": "]"}


@dataclass
class CodeAssessment:
    """The verdict on one snippet. ``risk`` in [0, 1]; ``buggy`` is ``risk >= 0.5``."""

    risk: float
    buggy: bool
    syntax_error: bool
    reasons: list[str] = field(default_factory=list)
    lint_findings: list[str] = field(default_factory=list)
    truncated: bool = False
    syntax_checked: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Parsed:
    """What the Python parse rule settled on: the text to lint and where the completion starts in it."""

    ok: bool
    text: str = ""
    first_line: int = 1          # 1-based line in ``text`` where the completion starts
    truncated: bool = False
    fragment: bool = False       # parsed as a function body with no surrounding code known
    error: str = ""


def assess_code(code: str, language: str = "python", *, run_ruff: bool = True, execute: bool = False,
                timeout_s: float = 2.0, prompt: str | None = None) -> CodeAssessment:
    """Assess one completion. ``prompt``, when given, is the code the completion continues."""
    lang = (language or "python").strip().lower()
    if lang in ("python", "py", "python3"):
        return _assess_python(code, prompt=prompt, run_ruff=run_ruff, execute=execute, timeout_s=timeout_s)
    return _assess_other(code, lang, prompt=prompt)


def batch_rates(assessments: Iterable[CodeAssessment]) -> dict[str, float]:
    """``buggy_code_rate`` and ``syntax_error_rate`` over a batch (0.0 for an empty batch), plus ``n``."""
    items = list(assessments)
    n = len(items)
    if n == 0:
        return {"buggy_code_rate": 0.0, "syntax_error_rate": 0.0, "n": 0}
    return {"buggy_code_rate": sum(a.buggy for a in items) / n,
            "syntax_error_rate": sum(a.syntax_error for a in items) / n, "n": n}


def _verdict(weights: list[float], reasons: list[str], lint: list[str], *, syntax_error: bool = False,
             truncated: bool = False, checked: bool = True) -> CodeAssessment:
    keep = 1.0
    for w in weights:
        keep *= 1.0 - min(max(w, 0.0), 1.0)
    risk = 1.0 if syntax_error else round(1.0 - keep, 4)
    return CodeAssessment(risk=risk, buggy=risk >= BUGGY_THRESHOLD, syntax_error=syntax_error,
                          reasons=reasons, lint_findings=lint, truncated=truncated, syntax_checked=checked)


# ---- Python ---------------------------------------------------------------------------------------

def _parses(text: str) -> str | None:
    """None when ``text`` parses; else the error as 'line N: message'."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. are not our verdict
            ast.parse(text)
        return None
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"unparseable: {e}"


def _error_line(err: str) -> int:
    try:
        return int(err.split(":", 1)[0].removeprefix("line "))
    except ValueError:
        return 0


def _as_body(code: str) -> list[tuple[str, int]]:
    """Candidate wrappings of a function-body fragment, each with the line the code starts on."""
    out = []
    for header in ("def _fragment():\n", "async def _fragment():\n"):
        first = next((ln for ln in code.splitlines() if ln.strip()), "")
        body = code if first[:1] in (" ", "\t") else "".join(
            "    " + ln if ln.strip() else ln for ln in code.splitlines(keepends=True))
        out.append((header + body, 2))
    return out


def _incomplete(text: str) -> bool:
    """True when ``text`` is valid so far but needs more input (the REPL's rule, via codeop)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return codeop.compile_command(text, symbol="exec") is None
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return False


def _truncated(text: str, start: int, err: str) -> _Parsed | None:
    """A truncated parse of ``text`` (see module doc), or None when the error is a real one."""
    lines = text.splitlines(keepends=True)
    last = max((i + 1 for i, ln in enumerate(lines) if ln.strip()), default=0)
    incomplete = _incomplete(text)
    if not incomplete and (_error_line(err) != last or text.endswith("\n")):
        return None  # a cut mid-statement leaves a last line without its newline
    for drop in range(1, MAX_TRUNCATED_LINES + 1):
        keep = last - drop
        if keep < start:
            break
        if _parses("".join(lines[:keep])) is None:
            return _Parsed(True, "".join(lines[:keep]), start, truncated=True)
    # Valid so far but nothing complete to lint (e.g. one long open call): truncated, lint skipped.
    return _Parsed(True, "", start, truncated=True) if incomplete else None


def _parse_python(code: str, prompt: str | None) -> _Parsed:
    base, first = (prompt + code, prompt.count("\n") + 1) if prompt else (code, 1)
    candidates = [(base, first, False)]
    if not prompt:
        candidates += [(text, start, True) for text, start in _as_body(code)]
    errors = []
    for text, start, fragment in candidates:  # an exact parse of any form wins over a truncated one
        err = _parses(text)
        if err is None:
            return _Parsed(True, text, start, fragment=fragment)
        errors.append(err)
    for (text, start, fragment), err in zip(candidates, errors):
        cut = _truncated(text, start, err)
        if cut is not None:
            cut.fragment = fragment
            return cut
    # Report the error of the form that got furthest (for a body fragment: the wrapped one), with its
    # line counted from the start of the completion.
    pairs = list(zip(errors, (c[1] for c in candidates)))[::-1]  # ties go to the wrapped form
    err, start = max(pairs, key=lambda e: _error_line(e[0]) - e[1])
    line, message = _error_line(err), err.split(":", 1)[-1]
    if line and line >= start:
        err = f"line {line - start + 1}:{message}"
    elif line:
        err = f"in the prompt, line {line}:{message}"
    return _Parsed(False, error=err)


@functools.lru_cache(maxsize=1)
def ruff_binary() -> str | None:
    """Path of the ruff executable: the one installed with this Python, else on PATH (cached)."""
    try:
        from ruff.__main__ import find_ruff_bin

        return os.fspath(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        pass
    beside = os.path.join(os.path.dirname(sys.executable), "ruff")
    return beside if os.access(beside, os.X_OK) else shutil.which("ruff")


def ruff_findings(text: str, *, first_line: int = 1) -> list[tuple[str, int, str]]:
    """(code, line, message) for ruff findings at or after ``first_line``, line relative to it (1-based).

    Raises RuntimeError when ruff is missing or fails."""
    binary = ruff_binary()
    if not binary:
        raise RuntimeError("ruff is not installed; `pip install ruff` or pass run_ruff=False")
    proc = subprocess.run(
        [binary, "check", "--isolated", "--no-cache", "--select", RUFF_RULES, "--output-format", "json",
         "--stdin-filename", "snippet.py", "-"],
        input=text, capture_output=True, text=True, timeout=RUFF_TIMEOUT_S, check=False)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"ruff failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    out = []
    for item in json.loads(proc.stdout or "[]"):
        row = (item.get("location") or {}).get("row") or 0
        if row >= first_line:
            out.append((item.get("code") or "E999", row - first_line + 1, item.get("message", "")))
    return out


def _lint_weight(code: str) -> float:
    if code in LINT_WEIGHTS:
        return LINT_WEIGHTS[code]
    for prefix in sorted((k for k in LINT_WEIGHTS if code.startswith(k)), key=len, reverse=True):
        return LINT_WEIGHTS[prefix]
    return 0.2


def _assess_python(code: str, *, prompt: str | None, run_ruff: bool, execute: bool,
                   timeout_s: float) -> CodeAssessment:
    parsed = _parse_python(code, prompt)
    prompt_note = []
    if not parsed.ok and parsed.error.startswith("in the prompt"):
        # An IDE prefix often starts mid-file: judge the completion on its own rather than the prompt.
        prompt_note = [f"prompt does not parse ({parsed.error}); the completion was checked alone"]
        parsed = _parse_python(code, None)
    if not parsed.ok:
        return _verdict([1.0], [*prompt_note, f"syntax error: {parsed.error}"], [], syntax_error=True)
    weights: list[float] = []
    reasons: list[str] = list(prompt_note)
    lint: list[str] = []
    if parsed.truncated:
        weights.append(TRUNCATION_RISK)
        reasons.append("incomplete trailing block (truncated completion); the complete part was checked")
    if run_ruff and parsed.text.strip():
        try:
            for rule, line, message in ruff_findings(parsed.text, first_line=parsed.first_line):
                lint.append(f"{rule} line {line}: {message}")
                weight = _lint_weight(rule)
                if parsed.fragment and rule in CONTEXT_DEPENDENT:
                    weight = FRAGMENT_CONTEXT_WEIGHT  # the name may live in code we were not shown
                if parsed.truncated and rule in CUT_OFF_DEPENDENT:
                    weight = 0.0  # the use may be in the part that was cut off
                weights.append(weight)
                if weight >= 0.3:
                    reasons.append(f"{rule}: {message}")
        except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            reasons.append(f"lint skipped: {e}")
    if execute:
        _execute(parsed.text, timeout_s, weights, reasons)
    return _verdict(weights, reasons, lint, truncated=parsed.truncated)


def _execute(text: str, timeout_s: float, weights: list[float], reasons: list[str]) -> None:
    from codellm_assets.core.evaluation.sandbox.runner import (
        run_sandboxed,  # lazy: most callers never execute
    )

    result = run_sandboxed(text, timeout_s=timeout_s)
    if result.status == "timed out":
        weights.append(EXEC_TIMEOUT_RISK)
        reasons.append(f"execution timed out after {timeout_s:g}s")
    elif not result.passed:
        last = (result.stderr_tail.strip().splitlines() or [result.status])[-1]
        weights.append(EXEC_FAILURE_RISK)
        reasons.append(f"execution failed: {last[:200]}")


# ---- other languages (tree-sitter) ----------------------------------------------------------------

def _tree_sitter_parser(lang: str) -> Any | None:
    spec = TREE_SITTER_GRAMMARS.get(lang)
    return load_parser(*spec) if spec else None


def syntax_languages() -> list[str]:
    """Languages this installation can syntax-check."""
    return ["python"] + sorted(k for k in TREE_SITTER_GRAMMARS if _tree_sitter_parser(k) is not None)


def _balance_closers(text: str) -> str:
    """The brackets a truncated C-like snippet still needs, innermost first (strings not considered)."""
    stack = []
    for ch in text:
        if ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    return "".join(reversed(stack))


def _assess_other(code: str, lang: str, *, prompt: str | None) -> CodeAssessment:
    parser = _tree_sitter_parser(lang)
    if parser is None:
        return _verdict([], [f"no syntax checker for language '{lang}'"], [], checked=False)
    text = (prompt or "") + code
    if not parser.parse(text.encode("utf-8", "replace")).root_node.has_error:
        return _verdict([], [], [])
    closers = _balance_closers(text)
    if closers and not parser.parse((text + "\n" + closers).encode("utf-8", "replace")).root_node.has_error:
        reason = f"incomplete trailing block (truncated completion): unclosed '{closers}'"
        return _verdict([TRUNCATION_RISK], [reason], [], truncated=True)
    return _verdict([1.0], [f"syntax error ({lang}, tree-sitter)"], [], syntax_error=True)
