"""Keyword-anchored secrets for the leftover re-scan: a value next to a secret-sounding name (assignment,
call argument, SQL, command-line flag, Authorization header) that is random enough to be a credential.

The assignment forms are detect-secrets' own KeywordDetector regexes (quoted and config flavours) plus a
wider keyword list of ours (``token``, ``credentials``, ``access_key``, ...); the verdict on the value is
``leftover_values`` (entropy and character classes), never the scrubber's rules.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

from detect_secrets.filters.heuristic import is_indirect_reference, is_potential_uuid, is_sequential_string
from detect_secrets.plugins.keyword import (
    CONFIG_DENYLIST_REGEX_TO_GROUP,
    DENYLIST_REGEX,
    QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
)

from codellm_assets.core.data.scrub.leftover_providers import LiteralLines, candidate_lines
from codellm_assets.core.data.scrub.leftover_values import decodes_to_text, is_dummy, looks_random

SECRET_KEYWORD = "Secret Keyword"
AUTH_HEADER = "Authorization Header"
URL_CREDENTIALS = "URL Credentials"

TRIGGER = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "contrase", "bearer", "identified", "://",
            "-p'", '-p"', "sshpass", "dockerc")
# a secret-sounding name; the whole key is grown from it over [\w.-] both ways
_KW = re.compile(r"token|secret|passw(?:or)?d|pwd|pass\b|\bauth\b|dockerconfigjson|dockercfg|"
                 r"api[_\-]?key|access[_\-]?key|priv(?:ate)?[_\-]?key|"
                 r"client[_\-]?key|signing[_\-]?key|auth[_\-]?key|credentials?|contrase(?:ñ|n)a", re.IGNORECASE)
_KEY_TAIL = re.compile(r"[\w.\-]*")
_KEY_HEAD = re.compile(r"[\w.\-]*$")
_OPERATOR_VALUE = re.compile(r"[\"'\]]{0,2}\s*(?::=|=>|===?|!==?|=|:)\s*(?:[rbuf]?([\"'`]))?"
                             r"((?(1)[^\"'`\n]+|[^\s\"'`,;]+))(?(1)\1)")
_CALL = re.compile(r"(?:pass(?:word|wd)?|secret|token|api_?key|credentials?)\w*\s*\(\s*([\"'])([^\"'\n]{4,})\1",
                   re.IGNORECASE)
_SQL = re.compile(r"\b(?:identified\s+(?:with\s+\w+\s+)?by|password)\s+([\"'])([^\"'\n]{4,})\1", re.IGNORECASE)
_FLAG = re.compile(r"(?:--(?:db-)?(?:password|passwd|token|secret|api-key)(?:=|\s+)|(?<![\w-])-p\s?)"
                   r"([\"']?)([^\s\"']{4,})\1")
_XML = re.compile(r"<((?:\w+[_\-])?(?:password|passwd|secret|token|api[_\-]?key))>([^<\s]{4,})</\1>", re.IGNORECASE)
# scheme://user:password@ -- the password may hold any character but "@", "/" and spaces
_URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.\-]*://([^\s:/@\"'`]{1,64}):([^\s@/\"'`]{3,128})@", re.IGNORECASE)
_BEARER = re.compile(r"\b(?:bearer|token)\s+([A-Za-z0-9._~+/=\-]{16,})", re.IGNORECASE)
_BASIC = re.compile(r"\bbasic\s+([A-Za-z0-9+/]{12,}={0,2})", re.IGNORECASE)
_UNQUOTED_END = re.compile(r"[\s,;\\]")
_COMPARE = re.compile(r"==|!=")
_CODE_CHARS = re.compile(r"[()\[\]{}]|::|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$|^\W")
_DECODED_PAIR = re.compile(r"\"?([\w.\-]*(?:auth|pass\w*|secret|token|key))\"?\s*[:=]\s*\"?([^\"\s,}]+)",
                           re.IGNORECASE)
# detect-secrets' keyword forms; those that start with its keyword list are tried only where a keyword is
_DS_KEYWORD = re.compile(DENYLIST_REGEX, re.IGNORECASE)
_DS_AT_KEYWORD = [(r, g) for t in (QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, CONFIG_DENYLIST_REGEX_TO_GROUP)
                  for r, g in t.items() if r.pattern.startswith(DENYLIST_REGEX)]
_DS_ANYWHERE = [(r, g) for t in (QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, CONFIG_DENYLIST_REGEX_TO_GROUP)
                for r, g in t.items() if not r.pattern.startswith(DENYLIST_REGEX)]


def _secret_value(value: str, key: str, quoted: bool, line: str, depth: int = 0) -> bool:
    v = value.strip() if quoted else value.strip().rstrip(":.)")
    if is_dummy(v, key) or (len(v) >= 8 and is_sequential_string(v)):
        return False
    if not quoted and (_CODE_CHARS.search(v) or is_indirect_reference(line)):
        return False          # `password = get_password()`, `token = self.token`: code, not a value
    if is_potential_uuid(v):  # an id -- unless a key/token name holds it (Heroku API keys are UUIDs)
        return bool(key) and bool(_KW.search(key))
    decoded = decodes_to_text(v)
    if decoded is not None:   # base64 of text: a secret only if the text holds one (a docker config's auth)
        if _basic_credentials(v):
            return True
        if depth >= 2:
            return False
        if any(_secret_value(val, k, True, decoded, depth + 1) for k, val in _DECODED_PAIR.findall(decoded)):
            return True
        # a Kubernetes Secret's `password: <base64>`: under a secret's name, the decoded text is the value
        return bool(key) and bool(_KW.search(key)) and "\n" not in decoded.strip() and _secret_value(
            decoded.strip(), key, True, decoded, depth + 1)
    return looks_random(v)


def _own_assignments(line: str) -> Iterator[tuple[int, int, str]]:
    for kw in _KW.finditer(line):
        head = _KEY_HEAD.search(line, 0, kw.start()).start()
        if head > 0 and line[head - 1] == "$":
            continue                  # $password: a shell / PHP variable
        tail = _KEY_TAIL.match(line, kw.end()).end()
        m = _OPERATOR_VALUE.match(line, tail)
        if m is None:
            continue
        quote, value = m.group(1), m.group(2)
        if not quote and _COMPARE.search(line, tail, m.start(2)):
            continue                  # `if token == other.token`: a comparison of code, not an assignment
        if _secret_value(value, line[head:tail], bool(quote), line):
            yield m.start(2), m.end(2), value


def _ds_value(line: str, m: re.Match[str], group: int) -> Iterator[tuple[int, int, str]]:
    value = m.group(group)
    quoted = m.start(group) > 0 and line[m.start(group) - 1] in "\"'`"
    if value and not quoted:          # unquoted: the value ends at a space, a comma or an escape
        value = _UNQUOTED_END.split(value, 1)[0]
    if value and _secret_value(value, "", quoted, line):
        yield m.start(group), m.start(group) + len(value), value


def _assignments(line: str) -> Iterator[tuple[int, int, str]]:
    yield from _own_assignments(line)
    for kw in _DS_KEYWORD.finditer(line):     # detect-secrets' own forms ("x" == password, password: "x";)
        for regex, group in _DS_AT_KEYWORD:
            m = regex.match(line, kw.start())
            if m:
                yield from _ds_value(line, m, group)
    if "==" in line or "!=" in line:
        for regex, group in _DS_ANYWHERE:
            for m in regex.finditer(line):
                yield from _ds_value(line, m, group)
    lowered = line.lower()
    for regex, needed in ((_CALL, "("), (_XML, "</"), (_SQL, "identified" if "identified" in lowered else "password"),
                          (_FLAG, "-p" if "-p" in line else "--")):
        if needed not in lowered:
            continue
        for m in regex.finditer(line):
            if _secret_value(m.group(2), "", bool(m.group(1)), line):
                yield m.start(2), m.end(2), m.group(2)


def _basic_credentials(value: str) -> bool:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep and user and password) and not is_dummy(password, user)


def _url_credentials(line: str) -> Iterator[tuple[int, int, str]]:
    for m in _URL_CREDENTIALS.finditer(line):
        user, password = m.group(1), m.group(2)
        if not is_dummy(password, user) and not password.startswith(("$", "%", "{")):
            yield m.start(2), m.end(2), password


def _headers(line: str) -> Iterator[tuple[int, int, str]]:
    for m in _BEARER.finditer(line):
        value = m.group(1)
        if is_potential_uuid(value) or (looks_random(value) and not is_dummy(value)):
            yield m.start(1), m.end(1), value
    for m in _BASIC.finditer(line):
        if _basic_credentials(m.group(1)):
            yield m.start(1), m.end(1), m.group(1)


def find_keyword_secrets(text: str, lowered: str, literals: LiteralLines) -> Iterator[tuple[int, int, int, str, str]]:
    """(line start, start, end, type, value) of keyword-anchored secrets; offsets within the line.
    ``literals``: the shared trigger index, built with ``TRIGGER`` among its lower-case literals."""
    for line_start in candidate_lines(text, lowered, None, TRIGGER, literals):
        line_end = text.find("\n", line_start)
        line = text[line_start:line_end if line_end >= 0 else len(text)]
        if len(line) > 4000:        # minified / data lines: keyword forms there are noise, and regexes slow
            line = line[:4000]
        seen: set[int] = set()
        for start, end, value in _assignments(line):
            if start not in seen:
                seen.add(start)
                yield line_start, start, end, SECRET_KEYWORD, value
        for start, end, value in _url_credentials(line):
            if start not in seen:
                seen.add(start)
                yield line_start, start, end, URL_CREDENTIALS, value
        for start, end, value in _headers(line):
            if start not in seen:
                seen.add(start)
                yield line_start, start, end, AUTH_HEADER, value
