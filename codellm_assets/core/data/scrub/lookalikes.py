"""Look-alikes of secrets: placeholders, templates, masks and names that stand where a secret would.

One vocabulary for the scrubber's keyword and URL rules and for the independent leftover scan: what one
keeps, the other must not flag, or the blocking check would fail on correctly kept text.
"""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
DUMMY_VALUES = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "secrets", "token", "key", "apikey", "api_key", "api-key",
    "changeme", "change_me", "change-me", "changeit", "test", "testing", "dummy", "fake", "example", "sample",
    "none", "null", "nil", "undefined", "true", "false", "todo", "tbd", "fixme", "redacted", "removed",
    "hidden", "placeholder", "foo", "bar", "baz", "foobar", "qux", "default", "empty", "blank", "user",
    "username", "mypassword", "mysecret", "mytoken", "secretpassword", "yourpassword", "notasecret", "value",
    "passphrase", "string", "str", "text", "bytes", "optional", "required", "masked", "prefix",
})
# possessive quantifiers (++, *+) throughout: a failed fullmatch must not retry every split of a long run
_MASK = re.compile(r"[xX*#.\-_?•0]++|(?:[xX]{2,}+[-_ ]?)++")
_TEMPLATE_MARKERS = ("{", "}", "<", ">", "%(", "$(", "...", "\u2026")
_PRINTF = re.compile(r"(?<![A-Za-z0-9])%[sd](?![A-Za-z0-9])")  # "%s", "user:%s" but not "Y%s0z" in a password
_TEMPLATE_WHOLE = re.compile(r"\$[A-Za-z_]\w*|%[A-Za-z_]\w*%|\{[^{}]*\}|__\w+__|@\w+@|\[\w+\]|:[a-z_]\w*")
_DUMMY_PARTS = re.compile(
    r"^your|[-_ .]your[-_ ]|_here\b|here$|example|placeholder|dummy|changeme|change[-_]me|changeit|redacted|"
    r"replace[-_]?me|"
    r"insert[-_]|^fake|^mock|not[-_]?a[-_]?(?:real|secret)|^(?:my|some)[-_]?(?:secret|pass|token|key|api)|"
    r"^(?:env|vault|ssm|secret|op|sm):|secretsmanager|^test[-_]?(?:password|secret|token|key)$")


_NAMED_SECRET = re.compile(r"(?:[a-z]++[-_.])*[a-z]*(?:password|passwd|passphrase|secret|secrets|token|key|pass|pwd|"
                           r"credentials?)"
                           r"(?:[-_.][a-z]+)*")


def squash(value: str) -> str:
    """Lower case, letters and digits only: ``DB_PASSWORD`` -> ``dbpassword``."""
    return _NOT_ALNUM.sub("", value.lower())


def identifier_segments(ident: str) -> list[str]:
    """``dbPassword`` / ``DB_PASSWORD`` / ``--db-password`` -> ``["db", "password"]``."""
    return [s.lower() for s in _SEGMENT.findall(ident)]


def is_placeholder(value: str, key: str = "") -> bool:
    """True for values that stand in for a secret rather than being one: ``<your-key>``, ``${VAR}``, ``xxx``,
    ``changeme``, ``{{ token }}``, ``%(password)s``, ``***``, or the key's own name (``password=password``)."""
    v = value.strip().strip("\"'")
    if not v or _MASK.fullmatch(v) or _TEMPLATE_WHOLE.fullmatch(v):
        return True
    if any(marker in v for marker in _TEMPLATE_MARKERS) or _PRINTF.search(v):
        return True
    low = v.lower()
    if low.rstrip("?!:") in DUMMY_VALUES or _DUMMY_PARTS.search(low):
        return True
    if len(set(low)) <= 2:  # "aaaaaaaa", "abababab"
        return True
    if _NAMED_SECRET.fullmatch(low):
        return True  # "postgresql-password", "dagster-db-secret": the NAME of a secret, not its value
    if key:
        squashed, key_squashed = squash(v), squash(key)
        segments = identifier_segments(key)
        last = segments[-1] if segments else ""
        if squashed and (squashed == key_squashed or squashed == last or key_squashed.endswith(squashed)):
            return True
    return False
