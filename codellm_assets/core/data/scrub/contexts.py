"""Passwords found by the syntax around them rather than by a ``name = value`` assignment.

SQL (``IDENTIFIED BY '…'``, ``WITH PASSWORD '…'``, ``LOGIN PASSWORD``, ``PASSWORD('…')``), command lines
(``mysql -p'…'``, ``sshpass -p …``, ``docker login -p …``, ``redis-cli -a …``, ``ldapsearch -w …``,
``openssl -passin pass:…``), setter/builder calls (``setPassword("…")``, ``.password("…")``,
``getConnection(url, "user", "…")``, ``auth=("user", "…")``, ``HTTPBasicAuth("u", "…")``), Basic-Auth user
tables (``users: { admin: '…' }``), prose in runbooks ("the password is …", ``password: `…` ``), and
Django-style ``SECRET_KEY`` literals whose punctuation the generic keyword rule rejects.

Patterns run on the lower-cased text (same offsets) and start with a literal, so each is a fast scan; the
value is then taken from the original text and judged with the keyword rules' placeholder and shape tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from codellm_assets.core.data.scrub.keywords import _wordy
from codellm_assets.core.data.scrub.lookalikes import is_placeholder
from codellm_assets.core.data.scrub.rules import Span, shannon_entropy

_Q = r"""(?P<q>['"`])(?P<v>[^'"`\s][^'"`\n]{1,198}[^'"`\s])(?P=q)"""
_BARE = r"""(?P<b>[^\s'"`;|&<>]{4,200})"""
_PAIR = r"""[ \t]*[=(][ \t]*[(\[]?[ \t]*(?P<uq>['"])[^'"\n]{1,64}(?P=uq)[ \t]*,[ \t]*""" + _Q
# (literal that must occur, pattern on lower-cased text starting with that literal, placeholder kind);
# group "v" (quoted) or "b" (bare) is the password. Literal-led patterns keep each scan near memory speed.
_CONTEXT_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple((p.split("[", 1)[0].split("(", 1)[0].split(
    "\\", 1)[0], re.compile(p), kind) for p, kind in (
    # SQL: CREATE USER .. IDENTIFIED BY '..', IDENTIFIED WITH plugin BY '..', Oracle IDENTIFIED BY bare
    (r"identified[ \t]+(?:with[ \t]+\w+[ \t]+)?by[ \t]+(?:password[ \t]+)?(?:" + _Q + r"|(?P<b>[a-z0-9_#$!]{4,64}))",
     "password"),
    # WITH PASSWORD '..', LOGIN PASSWORD '..', ENCRYPTED PASSWORD '..', WITH PASSWORD = '..' (SQL quotes with ')
    (r"password[ \t]*(?P<eq>=[ \t]*)?(?<=[ \t])(?P<q>')(?P<v>[^'\s][^'\n]{1,198}[^'\s])'", "password"),
    # command lines
    (r"sshpass[ \t]+-p[ \t]*(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"mysql(?:dump|admin|import|sh)?\b[^\n|;]{0,200}?[ \t]-p(?:" + _Q
     + r"|(?P<b>[^\s'\"`;|&<>-][^\s'\"`;|&<>]{2,200}))",
     "password"),
    (r"docker[ \t]+login\b[^\n|;]{0,200}?[ \t](?:-p|--password)[ \t=]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"redis-cli\b[^\n|;]{0,200}?[ \t]-a[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"ldap(?:search|add|modify|delete|passwd|whoami)\b[^\n|;]{0,200}?[ \t]-w[ \t]+(?:" + _Q + "|" + _BARE + ")",
     "password"),
    (r"-pass(?:in|out)[ \t]+pass:(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"smbclient\b[^\n]{0,200}?-u[ \t]+[^\s%]+%(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"user[ \t]+\S+[ \t]+(?:insecure-)?password[ \t]+" + _BARE, "password"),  # haproxy userlist
    (r"stats[ \t]+auth[ \t]+[^\s:]+:" + _BARE, "password"),  # haproxy stats auth user:password
    (r"htpasswd[ \t]+-[a-z]*b[a-z]*[ \t]+\S+[ \t]+\S+[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"mongo(?:sh|dump|restore|import|export)?\b[^\n|;]{0,200}?[ \t]-p[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"sqlcmd\b[^\n|;]{0,200}?[ \t]-p[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"rabbitmqctl[ \t]+(?:add_user|change_password)[ \t]+\S+[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),
    (r"storepass[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),  # keytool/jarsigner -storepass, -srcstorepass
    (r"keypass[ \t]+(?:" + _Q + "|" + _BARE + ")", "password"),  # -keypass, -destkeypass
    (r"convertto-securestring[ \t]+(?:-string[ \t]+)?" + _Q, "password"),
    # echo 'pw' | sudo -S ..., printf '%s' 'pw' | docker login --password-stdin, echo "user:pw" | chpasswd
    (r"echo[ \t]+(?:-n[ \t]+)?(?:" + _Q + "|" + _BARE + r")[ \t]*\|[ \t]*(?=[^\n]*(?:password-stdin|sudo[ \t]+-s|"
     r"passwd|chpasswd|--stdin))", "password"),
    # setters and builders: setPassword("..") / .password("..") / withPassword("..") / PASSWORD_KEY, "..")
    (r"password[ \t]*\([ \t]*" + _Q.replace("`", "") + r"(?:[ \t]*\.tochararray\(\))?[ \t]*\)", "password"),
    (r"getconnection\([^,\n()]{1,200},[ \t]*" + r"""(?P<uq>['"])[^'"\n]{1,64}(?P=uq),[ \t]*""" + _Q, "password"),
    # auth=("user", ".."), HTTPBasicAuth("u", ".."), UsernamePasswordCredentials("u", ".."),
    # PasswordAuthentication("u", "..".toCharArray())
    (r"auth" + _PAIR, "password"),
    (r"credentials" + _PAIR, "password"),
    (r"authentication" + _PAIR, "password"),
))
_FLAG_LITERALS = frozenset({"sshpass", "mysql", "docker", "redis-cli", "ldap", "-pass", "smbclient", "htpasswd",
                            "mongo", "sqlcmd", "rabbitmqctl", "storepass", "keypass", "echo", "stats"})
_USERS_TABLE = re.compile(r"users[\"']?[ \t]*:[ \t]*\{")
_TABLE_ENTRY = re.compile(r"""[ \t\n]*[\"']?[\w.\-]{1,40}[\"']?[ \t]*:[ \t]*"""
                          r"""(?P<q>['"`])(?P<v>[^'"`\n]{3,200})(?P=q)[ \t]*,?""")
# prose: "the admin password is X", "password for the vault: `X`", "uses password `X`", "- pw: X"
_PROSE_TAIL = (r"(?P<mid>[^\n`'\"=:]{0,40}?)(?:[ \t]+(?:is|was)[ \t]+(?:`(?P<v>[^`\n]{3,200})`|(?P<b>[^\s`'\"]{4,200}))"
               r"|(?:[ \t]*[:=][ \t]*|[ \t]+)`(?P<v2>[^`\n]{3,200})`)")
_PROSE = (re.compile(r"pass(?:word|phrase|wd)" + _PROSE_TAIL), re.compile(r"pwd?\b" + _PROSE_TAIL))
_SECRET_KEY = re.compile(r"secret_key[\"']?[ \t]*(?:=|:)[ \t]*(?:(?P<q>['\"])(?P<v>[^'\"\n]{30,200})(?P=q)"
                         r"|(?P<b>[^\s'\"]{30,200})[ \t]*$)", re.MULTILINE)
_TRAILING = ".,;:)]}!?"
_WORDS = re.compile(r"[a-z]+(?:[-_'][a-z]+)*")


def _randomish(value: str) -> bool:
    """A password, not prose: a digit or symbol among letters, or mixed case, and not a plain word."""
    if _WORDS.fullmatch(value) or len(value) < 4:
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    symbol = any(not c.isalnum() for c in value)
    return (has_alpha and (has_digit or symbol or mixed)) or (has_digit and symbol)


def _ok(value: str) -> bool:
    return bool(value) and not is_placeholder(value) and not value.startswith(("$", "%", "-")) and "://" not in value


def _value(m: re.Match[str]) -> tuple[int, int] | None:
    for group in ("v", "b"):
        if group in m.re.groupindex and m.group(group) is not None:
            start, end = m.span(group)
            return start, end
    return None


def find_context_passwords(text: str, lowered: str | None) -> Iterator[Span]:
    """Passwords given to SQL statements, command-line tools, setters and user tables, and named in prose."""
    low = lowered if lowered is not None else text.lower()
    if len(low) != len(text):
        return
    for literal, pattern, kind in _CONTEXT_RULES:
        if literal not in low:  # str's search is faster than the engine's: most files have none of these
            continue
        for m in pattern.finditer(low):
            where = _value(m)
            if where is None:
                continue
            start, end = where
            if m.group("b") is not None if "b" in pattern.groupindex else False:
                while end > start and text[end - 1] in _TRAILING:
                    end -= 1
            value = text[start:end]
            if text[start - 2:start] == "-P":
                continue  # mysql -P3306 is the port (the patterns ran on lower-cased text)
            if literal == "identified" and not any(w in low[low.rfind("\n", 0, m.start()) + 1:m.start()]
                                                   for w in ("user", "role", "login", "alter", "create", "grant")):
                continue  # "a library identified by 'name'": prose, not a CREATE/ALTER USER statement
            if "eq" in pattern.groupindex and m.group("eq") and not low[max(0, m.start() - 12):m.start()].rstrip(
                    ).endswith("with"):
                continue  # password = '..' in code is the keyword rule's; SQL Server writes WITH PASSWORD = '..'
            # a value glued to a tool's password flag is a password whatever it looks like; elsewhere a bare
            # value must look random (SQL `IDENTIFIED BY name` in prose is not one)
            strong = literal in _FLAG_LITERALS
            if _ok(value) and (m.groupdict().get("v") is not None or strong or _randomish(value)):
                yield Span(start, end, kind, 1)
    if "users" in low and "basic" in low:
        yield from _user_table(text, low)
    if "pass" in low and ("|--" in low or "| --" in low or "|:-" in low or "| :-" in low):  # a markdown table
        yield from _table_column(text, low)
    if "/" in low:
        yield from _user_slash_password(text, low)
    if "chpasswd" in low:
        yield from _chpasswd_list(text, low)
    if "pass" in low or "pw" in low:
        yield from _prose(text, low)
    if "secret_key" in low:
        for m in _SECRET_KEY.finditer(low):
            if low.endswith("aws_", 0, m.start()):
                continue  # AWS_SECRET_KEY: the AWS rule names it
            start, end = m.span("v" if m.group("v") is not None else "b")
            value = text[start:end]
            if m.group("b") is not None and ("." in value or "," in value):
                continue  # Django's key alphabet has neither: hashlib.sha256(x).hexdigest(), is code
            if not is_placeholder(value.replace("(", "").replace(")", "")) and shannon_entropy(value) >= 4.0:
                yield Span(start, end, "django_secret_key", 0)


def _user_table(text: str, low: str) -> Iterator[Span]:
    """``basicAuth({ users: { admin: 'pw', ops: 'pw' } })``: every value of the users table."""
    for m in _USERS_TABLE.finditer(low):
        if "basic" not in low[max(0, m.start() - 300):m.start()]:
            continue
        pos = m.end()
        while (e := _TABLE_ENTRY.match(text, pos)) is not None:
            if _ok(e.group("v")):
                yield Span(e.start("v"), e.end("v"), "password", 1)
            pos = e.end()


def _prose(text: str, low: str) -> Iterator[Span]:
    """Runbook prose: a password named right before a backtick-quoted or random-looking value."""
    for m in (m for pattern in _PROSE for m in pattern.finditer(low)):
        if m.re is _PROSE[1] and m.start() > 0 and low[m.start() - 1].isalnum():
            continue  # "pw" must start a word
        if m.group("mid") and any(c in m.group("mid") for c in "()[]{}<>.,;"):
            continue  # "password (see vault)", "passwords. Use": not the value of this password
        group = next((g for g in ("v", "v2", "b") if m.group(g) is not None), None)
        if group is None:
            continue
        start, end = m.span(group)
        quoted = group != "b"
        if not quoted:
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
        value = text[start:end]
        if " " in value.strip() or not _ok(value) or (not quoted and "(" in value):
            continue
        if not (_randomish(value) or (not _wordy(value) and value.isalpha() and value.islower())):
            continue  # "password is required"; but "password is mabttqwi" (no word: 4 consonants in a row)
        yield Span(start, end, "password", 1)


_TABLE_HEADER = re.compile(r"^[ \t]*\|(?P<cells>[^\n]*pass[^\n]*)\|[ \t]*$", re.MULTILINE)
_TABLE_ROW = re.compile(r"[ \t]*\|([^\n]*)\|[ \t]*(?:\n|$)")


def _table_column(text: str, low: str) -> Iterator[Span]:
    """Markdown tables with a password column (``| user | password |``): the cells of that column."""
    for header in _TABLE_HEADER.finditer(low):
        cells = header.group("cells").split("|")
        column = next((i for i, c in enumerate(cells) if re.search(r"\bpass(?:word|wd|phrase)?\b|\bpwd?\b", c)), None)
        if column is None:
            continue
        pos = header.end() + 1
        while (row := _TABLE_ROW.match(text, pos)) is not None:
            pos = row.end()
            parts = row.group(1).split("|")
            if column >= len(parts) or set(row.group(1)) <= set("-: |"):
                continue  # the |---|---| separator
            cell_start = row.start(1) + sum(len(p) + 1 for p in parts[:column])
            value = parts[column].strip().strip("`")
            if _ok(value) and " " not in value:
                start = text.index(value, cell_start)
                yield Span(start, start + len(value), "password", 1)


# "login admin / Xk9!pq2w", "user: root / hunter2x", "creds deploy/Zq8...": a user, a slash, then a password
_USER_PAIR = (re.compile(r"user(?:name)?\b[ \t:=]+`?(?P<u>[\w.@\-]{1,40})`?[ \t]*/[ \t]*`?(?P<b>[^\s`'\"/]{4,64})`?"),
              re.compile(r"login\b[ \t:=]+`?(?P<u>[\w.@\-]{1,40})`?[ \t]*/[ \t]*`?(?P<b>[^\s`'\"/]{4,64})`?"),
              re.compile(r"creds?\b[ \t:=]+`?(?P<u>[\w.@\-]{1,40})`?[ \t]*/[ \t]*`?(?P<b>[^\s`'\"/]{4,64})`?"))


def _user_slash_password(text: str, low: str) -> Iterator[Span]:
    """A user name and a password written with a slash between them, in prose, comments and docstrings."""
    for pattern in _USER_PAIR:
        for m in pattern.finditer(low):
            start, end = m.span("b")
            while end > start and text[end - 1] in _TRAILING:
                end -= 1
            value = text[start:end]
            if _ok(value) and (_randomish(value) or (value.isalpha() and value.islower() and not _wordy(value))) and \
                    not value.startswith(("http", "www.")):
                yield Span(start, end, "password", 1)


_CHPASSWD = re.compile(r"chpasswd:[^\n]*\n(?:[ \t][^\n]*\n)*?[ \t]+list:[ \t]*[|>][-+]?[ \t]*\n")
_CHPASSWD_LINE = re.compile(r"([ \t]+)[\w.\-]{1,32}:(?P<b>[^\s:]{3,200})[ \t]*(?:\n|$)")


def _chpasswd_list(text: str, low: str) -> Iterator[Span]:
    """cloud-init ``chpasswd: list: |`` blocks: one ``user:password`` per line."""
    for m in _CHPASSWD.finditer(low):
        pos, indent = m.end(), None
        while (line := _CHPASSWD_LINE.match(text, pos)) is not None:
            if indent is not None and len(line.group(1)) != indent:
                break
            indent = len(line.group(1))
            if _ok(line.group("b")):
                yield Span(line.start("b"), line.end("b"), "password", 1)
            pos = line.end()
