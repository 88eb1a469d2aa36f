"""How the leftover re-scan judges a candidate value: a placeholder, a dummy, or random enough to be a secret.

Written for the re-scan alone (the scrubber's look-alike vocabulary is deliberately not reused: a blind
spot shared by both would let a secret through both). Values are judged by shape: entropy and character
classes, and a small list of words that stand where a secret would.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter

# what the scrubber writes (<SECRET:aws_access_key>, <EMAIL>, <IP>, ...), and <...> templates in general
PLACEHOLDER = re.compile(r"<(?:SECRET:[a-z0-9_]+|[A-Z][A-Z_]{1,15})>")
_TEMPLATE = re.compile(r"\{\{.*\}\}|\$\{[^}]*\}|\$\(|%\([^)]*\)[sd]|<[^<>]{1,40}>|\{[^{}]{0,40}\}|^\$\w+$|^%\w+%$"
                       r"|^@\w+@$|^__\w+__$|^\[\w+\]$")
_WORDS = re.compile(
    r"example|sample|dummy|placeholder|changeme|change[_-]?me|changeit|redacted|replace[_-]?me|your[_-]|^your|"
    r"fake|mock|notasecret|not[_-]a[_-]|secret[_-]?here|insert[_-]|todo|fixme|xxx|\*\*\*|\.\.\.|…|^test[_-]?"
    r"(?:pass|secret|token|key)|^(?:my|some)[_-]?(?:pass|secret|token|key)", re.IGNORECASE)
_COMMON = frozenset({"password", "passwd", "secret", "token", "none", "null", "nil", "true", "false", "test",
                     "admin", "root", "guest", "user", "username", "default", "empty", "string", "str", "bytes",
                     "value", "optional", "required", "hidden", "masked", "undefined", "bearer", "basic", "pass",
                     "pwd", "tiger"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.\-][A-Za-z_][A-Za-z0-9_]*)*")
_B64 = re.compile(r"[A-Za-z0-9+/\-_]+={0,2}")
_WORD_PARTS = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[0-9]+")
_TYPE_EXPR = re.compile(r"[A-Za-z_][\w.]*[\[(][\w., \[\]()]*[\])]")
_URL = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s]*$", re.IGNORECASE)
_NAME_PATH = re.compile(r"[/:]?(?:[A-Za-z_][\w.\-]*[/:])+[A-Za-z_][\w.\-]*/?")


def is_placeholder_token(value: str) -> bool:
    """The scrubber's output or a template (``<SECRET:password>``, ``<your-key>``)."""
    return bool(PLACEHOLDER.search(value)) or (value.startswith("<") and value.endswith(">"))


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0


def char_classes(value: str) -> int:
    return (any(c.islower() for c in value) + any(c.isupper() for c in value) + any(c.isdigit() for c in value)
            + any(not c.isalnum() for c in value))


def is_dummy(value: str, key: str = "") -> bool:
    """A stand-in, not a secret: empty, a template, a mask, a dummy word, or the key's own name."""
    v = value.strip().strip("\"'`")
    if len(v) < 4 or "{" in v or is_placeholder_token(v) or _TEMPLATE.search(v) or _WORDS.search(v):
        return True
    low = v.lower()
    if low in _COMMON or len(set(low)) <= 2:
        return True
    squashed = re.sub(r"[^a-z0-9]", "", low)
    key_squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    return bool(key_squashed) and (squashed == key_squashed or key_squashed.endswith(squashed))


def _is_wordy(value: str) -> bool:
    """Made of dictionary-like parts (``maxRetryCount``, ``SESSION_TIMEOUT``, ``db-primary``): an identifier,
    a name, not random characters."""
    parts = _WORD_PARTS.findall(value)
    covered = sum(len(p) for p in parts)
    return covered >= 0.9 * sum(c.isalnum() for c in value) and all(
        p.isdigit() or len(p) <= 12 for p in parts) and sum(p.isdigit() for p in parts) <= 1


def decodes_to_text(value: str) -> str | None:
    """The text a base64 value decodes to, when it is printable text (a pagination cursor, a config blob)."""
    if len(value) < 12 or len(value) % 4 == 1 or not _B64.fullmatch(value):
        return None
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value
                               else None, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    return decoded if decoded and printable == len(decoded) else None


def looks_random(value: str, *, min_len: int = 8) -> bool:
    """Random enough for a credential: long enough, high entropy, several character classes, not an
    identifier or a sentence, not a dummy."""
    v = value.strip().strip("\"'`")
    if len(v) < min_len or is_dummy(v) or " " in v.strip():
        return False
    classes = char_classes(v)
    if classes < 2 or entropy(v) < (2.5 if len(v) < 12 else 3.0):
        return False
    if _IDENTIFIER.fullmatch(v) and _is_wordy(v):
        return False
    if _TYPE_EXPR.fullmatch(v):
        return False          # 'list[V1LocalObjectReference]', 'dict(str, str)': a type, in generated models
    if _URL.match(v) or (_NAME_PATH.fullmatch(v) and all(_is_wordy(p) for p in re.split(r"[/:.]", v) if p)):
        return False          # a URL (credentials in one are Basic Auth's), a path or a secret's NAME
    return classes >= 3 or any(c.isdigit() for c in v) or len(v) >= 20
