"""The building blocks of the provider rules: ``Span`` (a region to replace), ``Rule`` (one token format)
and the value checks rules share (entropy, letter/digit mix, documentation-example filter, JWT/Basic decode)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


class Span(NamedTuple):
    """A region of text to replace: ``[start, end)`` and the placeholder kind (``aws_access_key``, ``email``)."""

    start: int
    end: int
    kind: str
    priority: int = 0  # lower wins when spans of different detectors overlap


def shannon_entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character (0 for an empty string)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _has_mix(value: str) -> bool:
    """Letters and digits both present: random tokens almost always are, words and identifiers rarely."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _plain_token(value: str) -> bool:
    """No regex or code punctuation: a token, not the pattern that describes one."""
    return not any(c in value for c in "()[]{}|\\<>")


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _mixed_case_random(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value) and shannon_entropy(value) >= 3.5


def _random_enough(value: str) -> bool:
    return _has_mix(value) and shannon_entropy(value) >= 3.0


def _not_example(value: str) -> bool:
    """AKIA...EXAMPLE, ghp_xxxxxxxx..., T00000000: documentation placeholders in a real token format."""
    low = value.lower()
    return "example" not in low and "xxxxxxxx" not in low and "00000000" not in low


def _b64_json_object(part: str) -> bool:
    """True when ``part`` is base64url of a JSON object (a JWT header)."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return False


def _jwt_check(token: str) -> bool:
    return _b64_json_object(token.split(".", 1)[0].rstrip("="))


def _b64_userpass(value: str) -> bool:
    """Docker ``auth`` / HTTP Basic values are base64 of ``user:password``."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        return False
    _user, sep, password = raw.partition(":")
    return bool(sep and password and raw.isprintable())


def _bearer_check(value: str) -> bool:
    return _has_mix(value) or shannon_entropy(value) >= 3.5


def _aws_secret_check(value: str) -> bool:
    return _has_mix(value) and shannon_entropy(value) >= 3.5


@dataclass(frozen=True)
class Rule:
    """One token format. ``group`` is the part of the match that is replaced (0: the whole match).

    A rule with ``triggers`` is tried only where one of those literals occurs (the pattern starts with it;
    lower-case literals of an IGNORECASE rule match in any case); all triggers are found in one pass
    (``iter_triggers``). A rule without triggers scans the text itself with its literal-led pattern.
    """

    kind: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...] = ()
    group: int = 0
    left: re.Pattern[str] | None = None      # extends the secret leftwards; must match right before the hit
    before: str | None = None                # characters allowed right before the match
    check: Callable[[str], bool] | None = None
    bounded: bool = True                     # the secret may not be glued to a letter/digit on its left


def _r(kind: str, pattern: str, *triggers: str, **kw) -> Rule:
    flags = re.IGNORECASE if kw.pop("ignorecase", False) else 0
    left = kw.pop("left", None)
    return Rule(kind, re.compile(pattern, flags), triggers, left=re.compile(left + r"\Z") if left else None, **kw)


