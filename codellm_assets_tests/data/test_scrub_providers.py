"""Every provider rule of ``providers.py`` with its true example (generated from the rule's documented
layout at test time, never written literally) and its false example, in one parametrized table."""

from __future__ import annotations

import random

import pytest

from codellm_assets.core.data.scrub.providers import MORE_PROVIDER_RULES, build_example
from codellm_assets.core.data.scrub.scrubber import scrub_text

RNG = random.Random(20261201)
TABLE = [(p.rule.kind, *build_example(p.example, RNG), p.counter_example) for p in MORE_PROVIDER_RULES]


def test_provider_breadth():
    from codellm_assets.core.data.scrub.rules import PROVIDER_RULES
    assert len(PROVIDER_RULES) >= 220 and len({r.kind for r in PROVIDER_RULES}) >= 190, len(PROVIDER_RULES)


@pytest.mark.parametrize(("kind", "text", "secret", "counter"), TABLE, ids=[f"{t[0]}-{i}" for i, t in enumerate(TABLE)])
def test_provider_rule_true_and_false_example(kind, text, secret, counter):
    out = scrub_text(text)
    assert secret not in out.text, (text, out.text)
    assert f"<SECRET:{kind}>" in out.text, (text, out.text)
    assert scrub_text(counter).text == counter
