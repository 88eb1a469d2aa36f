"""Token healing at the cursor (core/data/fim.py): the prompt is cut back to its last visible character, the
completion's first characters must write the cut whitespace, and they are taken off again - one table per
function, true and false cases side by side."""

from __future__ import annotations

import pytest

from codellm_assets.core.data.fim import HealingStream, heal_prefix, stops_outside, unheal


@pytest.mark.parametrize(("prefix", "healed", "removed"), [
    ("def f(x):\n    ", "def f(x):", "\n    "),          # the cursor after the indentation of a new line
    ("    if ", "    if", " "),                           # after a keyword and its space
    ("x = 1\n", "x = 1", "\n"),                           # at the start of a line
    ("x = 1\n\n", "x = 1\n", "\n"),                       # one newline only: a blank line stays
    ("\ty = 2\n\t", "\ty = 2", "\n\t"),
    ("return value", "return value", ""),                 # mid-identifier: nothing to heal
    ("    ", "    ", ""),                                 # only whitespace: kept whole (no visible character)
    ("", "", ""),
])
def test_heal_prefix(prefix: str, healed: str, removed: str) -> None:
    assert heal_prefix(prefix) == (healed, removed)
    assert healed + removed == prefix                                  # nothing is lost


@pytest.mark.parametrize(("completion", "removed", "expected"), [
    ("\n    trail = {}", "\n    ", "trail = {}"),              # wrote the cut whitespace first: taken off
    ("\n        deeper()", "\n    ", "    deeper()"),          # deeper indentation stays
    ("\n  other()", "\n    ", "other()"),                      # another indentation on the new line
    (" weight <= 0", " ", "weight <= 0"),
    ("\n  ", "\n    ", ""),                                   # still inside the cut text
    ("", "\n    ", ""),
    ("x = 1", "", "x = 1"),                                   # nothing was cut: unchanged
    ("  spaced", "\n", "spaced"),                              # went on the same line: its code
])
def test_unheal(completion: str, removed: str, expected: str) -> None:
    assert unheal(completion, removed) == expected


@pytest.mark.parametrize(("stops", "removed", "backend", "after"), [
    (["\n"], "\n    ", [], ["\n"]),                # would end every answer at its first token
    (["\n\n", "def "], "\n    ", ["\n\n", "def "], []),   # cannot match where the cut text is written
    (["\n"], " ", ["\n"], []),                     # a cut space: "\n" cannot match inside it
    ([" x"], "  ", [], [" x"]),                    # straddles the end of the cut text
    (["\n"], "", ["\n"], []),
])
def test_stops_outside(stops: list[str], removed: str, backend: list[str], after: list[str]) -> None:
    assert stops_outside(stops, removed) == (backend, after)


@pytest.mark.parametrize("pieces", [["\n    trail", " = {}"], ["\n", "  ", "  trail = {}"], ["\n    trail = {}"]])
def test_a_stream_is_healed_as_the_whole_answer_is(pieces: list[str]) -> None:
    stream = HealingStream("\n    ")
    out = [stream.feed(p) for p in pieces]
    assert "".join(out) == unheal("".join(pieces), "\n    ") == "trail = {}"
    assert out[-1]                                  # held back only while it could still be the cut text
