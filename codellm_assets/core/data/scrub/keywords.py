"""Keyword-anchored generic secrets: ``password = "..."``, ``api_key: ...``, ``TOKEN=...``, ``--password x``.

How it stays fast and precise:
- the keyword search runs on the lower-cased text, one literal-led pattern per keyword whose lookahead
  drops hits not followed by an assignment; only then is the identifier around a hit examined, in Python;
- the identifier is split into segments (snake, kebab, camel case) and sorted into a tier: PASSWORD
  (``password``, ``pwd``, ``passphrase``), SECRET (``secret``, ``token``, ``api_key``, ``credentials``,
  ``private_key``...) or KEY (any other ``*_key``); names ending in ``_url``, ``_file``, ``_name``, ``_type``...
  are not secrets; ``tokenizer``, ``keyboard``, ``bypass`` never match because a whole segment must;
- the value must be a literal, not a reference (``os.environ[...]``, ``self.password``, ``password=password``),
  not a placeholder (``<your-key>``, ``${VAR}``, ``{{ var }}``, ``changeme``, ``xxx``, ``***``), and random enough
  for its tier (Shannon entropy against ``ScrubSettings.entropy_threshold`` for SECRET and KEY; any non-dummy
  literal for PASSWORD, since real passwords are short and low-entropy).
"""

from __future__ import annotations

import base64
import functools
import heapq
import math
import re
from collections.abc import Iterator

from codellm_assets.core.data.scrub.lookalikes import identifier_segments, is_placeholder, squash
from codellm_assets.core.data.scrub.rules import Span, shannon_entropy

PASSWORD, SECRET, KEY = "password", "secret", "key"

# Run on lower-cased text: a keyword, the rest of its identifier, then (lookahead) something that can start an
# assignment or an XML element; the lookahead drops most hits (dict.keys(), tokens.append) inside the C engine.
# One pattern per keyword: each starts with a literal, which CPython finds ~10x faster than an alternation.
_KEYWORDS = ("pass", "pw", "secret", "token", "key", "credential")
_AFTER_KEYWORD = r"[a-z0-9_.\-]*+(?=[\"'`]?\]?[ \t]*[:=,>]|[ \t]+[^\s(=:])"
_KEYWORD_PATTERNS = tuple(re.compile(k + _AFTER_KEYWORD) for k in _KEYWORDS)
_KEYWORD_CI = re.compile(f"(?:{'|'.join(_KEYWORDS)}){_AFTER_KEYWORD}", re.IGNORECASE)  # lower() changed the length
_IDENT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")

_PASSWORD_SEGMENTS = {"passwd", "password", "passwords", "passphrase", "passcode", "pword"}
_STRONG_KEY_PREFIXES = {
    "api", "access", "secret", "private", "auth", "signing", "sign", "master", "encryption", "encrypt", "crypt",
    "crypto", "cipher", "aes", "hmac", "session", "client", "account", "shared", "license", "app", "consumer",
    "service", "subscription", "storage", "admin", "write", "deploy", "webhook", "jwt", "sas", "integration",
    "personal", "bot", "rest", "ingest", "secure", "server", "partner", "merchant", "root", "cookie",
}
_SECRET_COMPOUNDS = ("secretkey", "secretaccess", "secrettoken", "secretvalue")
_COMPACT_STRONG = ("apikey", "accesskey", "secretkey", "privatekey", "authkey", "signingkey", "masterkey",
                   "encryptionkey", "sessionkey", "clientkey", "accountkey", "sharedkey", "licensekey", "appkey")
_NOT_SECRET_SUFFIXES = {
    "url", "uri", "urls", "endpoint", "path", "paths", "file", "files", "filename", "dir", "directory", "name",
    "names", "type", "types", "kind", "id", "ids", "len", "length", "size", "count", "num", "header", "headers",
    "field", "fields", "param", "params", "env", "var", "variable", "prefix", "suffix", "regex", "re", "rx",
    "pattern", "patterns", "format", "fmt", "template", "expiry", "expires", "expiration", "exp", "ttl",
    "timeout", "lifetime", "age", "class", "cls", "method", "mode", "version", "prompt", "msg", "message",
    "label", "text", "help", "hint", "title", "error", "errors", "desc", "description", "policy", "validator",
    "validators", "hasher", "hashers", "reset", "min", "max", "required", "enabled", "disabled", "enable",
    "flag", "column", "col", "attr", "attribute", "index", "idx", "position", "pos", "location", "source",
    "src", "provider", "manager", "backend", "handler", "callback", "fn", "func", "function", "factory",
    "parser", "schema", "model", "form", "widget", "input", "placeholder", "rule", "rules", "limit", "bits",
    "algorithm", "algo", "alg", "scheme", "mask", "char", "chars", "list", "map", "dict", "table", "query",
    "stream", "sep", "separator", "start", "end", "delimiter", "category", "entropy", "strength", "question",
    "lookup", "logger", "log", "check", "verify", "valid", "validation", "encoder", "decoder", "counter",
    "offset", "bytes", "encoding", "display", "indices", "ranges", "str", "level", "doc", "docs",
    "example", "examples", "info", "spec", "config", "settings", "option", "options", "arg",
    "args", "kwargs", "fds", "fd", "through", "thru", "store", "vault", "scope", "scopes",
    "challenge", "request", "response", "status", "state", "result", "results",
    "seconds", "secs", "sec", "minutes", "mins", "hours", "days", "ms", "millis", "interval", "delay",
    "stdin", "stdout", "command", "cmd", "hash", "hashed", "digest", "salt", "rounds",
}
# names of error codes and of things about a secret, not the secret: INVALID_PASSWORD = '28P01'
_NEVER_SECRET_SEGMENTS = {"public", "pub", "secretary", "secretaries", "socket", "nonce", "invalid", "incorrect",
                          "wrong", "missing", "expired", "mgr"}

@functools.lru_cache(maxsize=8192)
def classify_identifier(ident: str) -> str | None:
    """The secret tier of a variable/key name, or None when the name does not hold a secret."""
    segments = identifier_segments(ident)
    if not segments or segments[-1] in _NOT_SECRET_SUFFIXES or _NEVER_SECRET_SEGMENTS.intersection(segments):
        return None
    if any(s in _PASSWORD_SEGMENTS or "password" in s or "passwd" in s or "passphrase" in s for s in segments):
        return PASSWORD
    if segments[-1] in ("pass", "pw", "pwd"):  # db_pass, "pass": ...; but ext_pw_out_channel is no password
        return PASSWORD
    for i, seg in enumerate(segments):
        if seg in ("secret", "secrets") or seg.endswith("secret") or seg.startswith(_SECRET_COMPOUNDS):
            return SECRET
        if seg.endswith("token") or seg.startswith("credential"):
            return SECRET
        if seg.endswith(_COMPACT_STRONG) or (seg == "key" and i > 0 and segments[i - 1] in _STRONG_KEY_PREFIXES):
            return SECRET
    return KEY if segments[-1] == "key" else None  # STRIPE_KEY, but not key_node.tag


# --- value shape -------------------------------------------------------------------------------------------
_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+")
# a module path or attribute chain: lower_case, CamelCase or CONSTANT segments (not jq8hLcZNV.SJ8_)
_NAME_SEGMENT = re.compile(r"\$?[a-z_][a-z0-9_]*+(?:[A-Z][a-z0-9]++)*+|(?:[A-Z][a-z]++)++\d?|[A-Z_][A-Z0-9_]*+")

_IDENT = re.compile(r"[A-Za-z_]\w*")
_ENV_NAME = re.compile(r"_?[A-Z][A-Z0-9]*+(?:_[A-Z0-9]++)++")
_LOWER_WORDS = re.compile(r"[a-z]++(?:[-_.][a-z]++)*+")  # bearer, my-secret-key
# "dagster-k8s/resource_requirements", "com.example.Service": words and short numbers between separators
_WORD_PATH = re.compile(r"(?>[a-z]++\d{1,4}+[a-z]*+|[A-Za-z][a-z]*+|[A-Z]{2,5}+|\d{1,4}+)"
                        r"(?:[/\-_.:@](?>[a-z]++\d{1,4}+[a-z]*+|[A-Za-z][a-z]*+|[A-Z]{2,5}+|\d{1,4}+))++")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_CONSONANT_RUN = re.compile(r"[b-df-hj-np-tv-xzB-DF-HJ-NP-TV-XZ]{4}")
_WORD_RUN = re.compile(r"[A-Z]?[a-z]{2,}|[A-Z]{2,}(?![a-z])")
_CAMEL_TYPE = re.compile(r"(?:[A-Z][a-z0-9]++)++")
_TYPE_NAMES = {"str", "string", "bytes", "int", "float", "bool", "any", "object", "none", "optional", "dict",
               "list", "secretstr", "secretbytes", "number", "boolean", "text", "char", "varchar"}


def _is_name_path(value: str) -> bool:
    """``self.password``, ``settings.DB_PASSWORD``, ``cfg.apiKey``: an attribute chain of real names."""
    return bool(_DOTTED.fullmatch(value)) and all(_NAME_SEGMENT.fullmatch(p) for p in value.split("."))


def _entropy_ok(value: str, threshold: float) -> bool:
    """Shannon entropy against the threshold, adjusted for what the value can reach at all: a string of n
    characters holds at most log2(n) bits/char (16 chars -> 3.2, 24+ chars -> the full 3.5 by default), and
    hex at most 4, so hex gets 0.5 less (3.0 by default: detect-secrets' hex limit)."""
    if _HEX.fullmatch(value):
        threshold -= 0.5
    return shannon_entropy(value) >= min(threshold, 0.8 * math.log2(len(value)))


def _is_json_cursor(value: str) -> bool:
    if not value.startswith("eyJ") or "." in value:  # JWTs (dotted) are secrets, see secret_rules
        return False
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode("utf-8").endswith("}")
    except (ValueError, UnicodeDecodeError):
        return False


def _secret_shape(value: str, tier: str, threshold: float) -> bool:
    """Is a SECRET/KEY-tier literal random-looking (not a word, path, module path, env var name or hash)?"""
    if len(value) < (8 if tier == SECRET else 16) or not any(c.isalpha() for c in value):
        return False
    if "://" in value or value.startswith(("/", "./", "../", "~/")) or "\\" in value:
        return False
    if _is_name_path(value) or _ENV_NAME.fullmatch(value) or _LOWER_WORDS.fullmatch(value):
        return False
    if _WORD_PATH.fullmatch(value) or _is_regex(value) or "..." in value or _wordy(value):
        return False
    if tier == KEY and "/" in value:
        return False  # object keys and paths: 'datasets/year=2019/part-0.parquet'
    if _is_json_cursor(value):
        return False  # "next_page_token": base64 of {"index": 11}
    if _UUID.fullmatch(value) or _HEX.fullmatch(value):
        # api_key = "<uuid or hex>" is a key; GPG_KEY / cache_key hex digests are not
        return tier == SECRET and _entropy_ok(value, threshold)
    has_digit = any(c.isdigit() for c in value)
    if tier == KEY:
        return has_digit and shannon_entropy(value) >= threshold
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    if has_digit and len(value) >= 16 and sum(c.isalnum() for c in value) >= len(value) - 2:
        # short keyword-anchored API keys (20-24 lower-case letters and digits) reach ~3.3 bits/char only
        threshold = min(threshold, 3.0)
    return (has_digit or mixed) and _entropy_ok(value, threshold)


def _is_regex(value: str) -> bool:
    return (any(marker in value for marker in ("(?", "[^", "\\", ")|", "|(")) or ("[" in value and "]" in value)
            or (value.startswith("^") and value.endswith("$")))


def _wordy(value: str) -> bool:
    """Mostly made of pronounceable words (``V1SecretEnvSource``, ``dagsterK8sConfig``): a name. Random
    alphanumerics reach 80% coverage in under 0.1% of 16-character draws and practically never beyond."""
    words = [w for w in _WORD_RUN.findall(value) if sum(c in "aeiouAEIOU" for c in w) >= 0.25 * len(w)
             and not _CONSONANT_RUN.search(w)]  # "kfpvh": 4+ consonants in a row is rarely a word
    return sum(map(len, words)) >= 0.8 * len(value)


def _looks_random(value: str) -> bool:
    """Digits with letters, mixed case or punctuation: not a plain word."""
    return (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)) or not value.isalnum() or (
        any(c.isupper() for c in value) and any(c.islower() for c in value))


def _password_shape(value: str) -> bool:
    """Any literal of 4+ characters (6+ digits: ``ext_pw: int = 1024`` is a number) that is not an env var
    name, a URL, a regex or a path (``PWD='/tmp'``): real passwords are short and low-entropy."""
    if len(value) < (6 if value.isdigit() else 4) or _ENV_NAME.fullmatch(value) or "://" in value:
        return False
    return not (_is_regex(value) or value.startswith(("/", "./", "~/")))


def _unquoted_is_literal(value: str, tier: str, rest_of_line: str | None, threshold: float,
                         spaced_assignment: bool = False, config_line: bool = False) -> bool:
    """An unquoted value is a literal in YAML/.env/INI/Dockerfile, a reference in code; tell them apart.
    ``rest_of_line`` is None where the line goes on by design (``--password x --user y``);
    ``spaced_assignment``: ``key = value``, code style, where any dotted name is an attribute reference."""
    if "(" in value or "[" in value or _ENV_NAME.fullmatch(value):
        return False  # a call, an index, DEFAULT_PASSWORD
    dotted = _DOTTED.fullmatch(value) if spaced_assignment else _is_name_path(value)
    if rest_of_line is not None and dotted:
        return False  # self.password / rfc3447.RSAPrivateKey (a command line has no attribute references)
    if rest_of_line is not None and not _LINE_END_OK.match(rest_of_line):
        return False  # f(password=pw, x) / "Password: see below": code or prose, not a config line
    if not _IDENT.fullmatch(value):
        return True  # P@ss-w0rd!, 1234abcd, sk-...: not an expression
    if (tier == PASSWORD and config_line and rest_of_line is not None and _BARE_LINE_END.match(rest_of_line)
            and value.lower() not in _TYPE_NAMES and not _CAMEL_TYPE.fullmatch(value) and not value.startswith("_")):
        return True  # YAML / compose / .env `password: lpnjflwp` alone on its line: a literal, even a word
    lower_random = len(value) >= 8 and value.isalnum() and value.islower() and not value.isalpha() and tier == PASSWORD
    if (rest_of_line is not None and not _IDENT_LINE_END_OK.match(rest_of_line)) or (
            _wordy(value) and not lower_random):
        return False  # a bare name before "," or ")" is an argument; PKCS7PrivateKeyTypes is a class
    if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        return True  # hunter2, abc123def; a variable named like that is rare
    # A bare word is a variable in code (key = name); in a config line (KEY=value, key: value) a mixed-case
    # one that is not made of words is a literal (passwd=JvwSDrtqoh, API_TOKEN=kXqPzRmW...).
    if spaced_assignment or value.startswith("_") or value.lower() in _TYPE_NAMES or _CAMEL_TYPE.fullmatch(value):
        return False  # a variable, a private name or a type (token: _StrPathToken, password: SecretStr)
    if tier == PASSWORD:  # a random lower-case password (ixtfpvke) is no word: 4 consonants in a row, few vowels
        return _looks_random(value) or not _wordy(value)
    return _secret_shape(value, SECRET, threshold)


# after an unquoted literal: end of line, a comment, or the next separator of a config/query/connection string
_LINE_END_OK = re.compile(r"[ \t]*(?:$|\r|#|//|;|&|,[ \t]*$|\}|\]|[\"'`](?!\w))", re.MULTILINE)
_IDENT_LINE_END_OK = re.compile(r"[ \t]*(?:$|\r|#|//|;|&|[\"'`](?!\w))", re.MULTILINE)
_BARE_LINE_END = re.compile(r"[ \t]*(?:$|\r|#)", re.MULTILINE)
_KEY_PRECEDERS = frozenset(" \t\n\r\"'`{(,[;$&?!|*")


_ASSIGN = re.compile(r"""
    (?P<kq>["'`]?)\]?[ \t]*
    (?P<op>:[ \t]*[A-Za-z_][\w\[\], .|]{0,40}?[ \t]+=(?!=)|:=|=>|==|=|:(?!:)|,(?=[ \t]*[rbuf]{0,2}["'`])|[ \t]+(?=\S))
    [ \t]*
    (?:[rRbBuUfF]{0,2}(?:"(?P<dq>[^"\n]{0,500})"|'(?P<sq>[^'\n]{0,500})'|`(?P<bq>[^`\n]{0,500})`)
      |(?P<uv>[^\s'"`]{1,500}))
""", re.VERBOSE)
_CALL = re.compile(r"[\w.]+\(.*\)")  # get_token(): code quoted in prose
_ENV_ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=[a-z_]*")  # `--secrets KEY=value` in usage text
_UNQUOTED_STOP = re.compile(r"[,;&)}\]]")
_CONFIG_LINE_PREFIX = re.compile(r"(?:-[ \t]+|export[ \t]+|ENV[ \t]+|ARG[ \t]+|setenv[ \t]+|set[ \t]+)?\Z")
# where "KEY value" (no = or :) is an assignment: Dockerfile ENV/ARG, csh setenv, .netrc "login u password p"
_SPACE_OP_LINE = re.compile(r"(?:ENV|ARG|setenv|set)[ \t]+\Z|.*\blogin[ \t]+\S+[ \t]+\Z")


def _line_prefix(text: str, pos: int) -> str:
    """What precedes ``pos`` on its line (at most 200 characters back: a 2 MB line must not make it O(n^2))."""
    return text[text.rfind("\n", max(0, pos - 200), pos) + 1:pos].lstrip()


def find_keyword_spans(text: str, lowered: str | None, entropy_threshold: float) -> Iterator[Span]:
    """Values assigned to secret-looking names, in Python/JS/YAML/JSON/.env/INI/Dockerfile/shell styles."""
    if lowered is not None:
        hits = heapq.merge(*(p.finditer(lowered) for p in _KEYWORD_PATTERNS), key=lambda h: h.start())
    else:
        hits = _KEYWORD_CI.finditer(text)
    done = 0
    for hit in hits:
        if hit.start() < done:
            continue
        end = done = hit.end()
        m = _ASSIGN.match(text, end)
        xml = _XML_VALUE.match(text, end) if m is None and text[end] == ">" else None
        if m is None and xml is None:
            continue
        start = hit.start()
        while start > 0 and hit.start() - start < 80 and text[start - 1] in _IDENT_CHARS:
            start -= 1
        while start < hit.start() and text[start] == ".":
            start += 1
        ident = text[start:end]
        tier = classify_identifier(ident)
        if tier is None:
            continue
        if xml is not None:
            span = _xml_span(text, xml, start, ident, tier, entropy_threshold)
        else:
            span = _value_span(text, m, start, ident, tier, entropy_threshold)
        if span is not None:
            done = max(done, span.end)
            yield span
    yield from _cli_user_spans(text)
    yield from _app_setting_spans(text, entropy_threshold)


def _unquoted_end(text: str, start: int, end: int, config_line: bool) -> int:
    """Where an unquoted value stops: a config line (``KEY=value``) keeps the whole token, e.g. a password
    with ``;`` or ``#`` in it; inside a line (``?password=x&y=1``, ``Pwd=x;``, ``{token: x}``) it stops at
    the next separator."""
    if config_line:
        while end - start > 1 and text[end - 1] in ",;)]}":
            end -= 1
        return end
    cut = _UNQUOTED_STOP.search(text, start, end)
    return cut.start() if cut else end


def _is_assignment(text: str, m: re.Match[str], key_start: int, ident: str, prefix: str) -> bool:
    """Is ``key <op> value`` really a key/value pair here, given the operator and what precedes the key?"""
    op = m.group("op").strip()
    if key_start > 0 and text[key_start - 1] not in _KEY_PRECEDERS and text[max(0, key_start - 5):key_start].lower(
            ) != "$env:" and not text.endswith("->", 0, key_start):  # PowerShell $env:KEY =, PHP $mail->Password =
        return False  # arn:aws:secretsmanager:..., a/secret: not a key
    if not op:  # whitespace "assignment" only for `--password x`, `ENV TOKEN x`, .netrc `password x`
        return (ident.startswith("-") or bool(_SPACE_OP_LINE.match(prefix))
                or (not prefix and "machine " in text[max(0, key_start - 200):key_start]))
    if op == ",":  # ("API_KEY", "literal"), but not f(token, "literal")
        return key_start > 0 and text[key_start - 1] in "\"'`"
    if op == "==" and m.group("uv") is not None:  # a comparison of variables, but .env `PASSWORD==x` is "=x"
        return bool(_CONFIG_LINE_PREFIX.match(prefix)) and (ident.isupper() or "." in ident)
    return True


def _unquoted_span(text: str, m: re.Match[str], ident: str, tier: str, prefix: str,
                   threshold: float) -> tuple[int, int] | None:
    """Where an unquoted value is, when it is a literal and not a reference."""
    op = m.group("op").strip()
    start, end = m.span("uv")
    end = _unquoted_end(text, start, end, bool(_CONFIG_LINE_PREFIX.match(prefix)))
    # `--password x --user y`, `ENV TOKEN x`, and shell `PGPASSWORD=x psql ...` go on after the value
    shell_env = op == "=" and ident.isupper() and text[m.start("op") - 1] != " " and not prefix
    rest = None if op == "" or ident.startswith("-") or shell_env else text[end:end + 40]
    spaced = op in ("=", ":=") and text[m.start("op") - 1] in " \t"
    if spaced and not prefix and "." in ident and not ident.startswith(("self.", "this.", "cls.", "@")):
        spaced = False  # a .properties line `db.pass = value`: a dotted key at the start of a line is config
    config_line = bool(_CONFIG_LINE_PREFIX.match(prefix)) and (op == ":" or (op == "=" and not spaced))
    if end == start or not _unquoted_is_literal(text[start:end], tier, rest, threshold, spaced, config_line):
        return None
    return (start - 1 if op == "==" else start), end  # .env `PASSWORD==x`: the value starts with "="


def _value_span(text: str, m: re.Match[str], key_start: int, ident: str, tier: str,
                threshold: float) -> Span | None:
    prefix = _line_prefix(text, key_start)
    if not _is_assignment(text, m, key_start, ident, prefix):
        return None
    group = next(g for g in ("dq", "sq", "bq", "uv") if m.group(g) is not None)
    where = _unquoted_span(text, m, ident, tier, prefix, threshold) if group == "uv" else m.span(group)
    if where is None:
        return None
    value = text[where[0]:where[1]]
    if any(c.isspace() for c in value) or "\\" in value or _CALL.fullmatch(value):
        return None
    op = m.group("op").strip()
    flag = value.startswith("-") and (len(value) <= 3 or _wordy(value.lstrip("-")))
    if op in ("", ",") and (flag or _ENV_ASSIGNMENT.fullmatch(value)
                            or (value.replace("-", "").replace("_", "").isalpha()
                                and (tier != PASSWORD or _wordy(value) or "_" in value))):
        return None  # `--password requires ...`, ("user", "password", "port"): words, flags, other options
    if tier == PASSWORD and squash(ident) in ("pass", "pw", "pwd") and not _looks_random(value):
        return None  # a bare "pass"/"pw" key is ambiguous ({'pass': 'bandpass'}): only password-like values
    return _literal_span(where[0], value, ident, tier, threshold)


def _literal_span(start: int, value: str, ident: str, tier: str, threshold: float) -> Span | None:
    """The span of a literal assigned to ``ident``, when it is no placeholder and has its tier's shape."""
    if is_placeholder(value, ident):
        return None
    if not (_password_shape(value) if tier == PASSWORD else _secret_shape(value, tier, threshold)):
        return None
    return Span(start, start + len(value), "password" if tier == PASSWORD else "generic_secret", 1)


_XML_VALUE = re.compile(r">([^<\s]{4,300})</")
_CLI_USER = re.compile(r"(?:-u|--user)[ =][\"']?[^\s:\"'@]+:([^\s\"'@]+)")


def _xml_span(text: str, m: re.Match[str], key_start: int, ident: str, tier: str, threshold: float) -> Span | None:
    """``<password>value</password>``: the element's text, when the tag closes with the same name."""
    if key_start == 0 or text[key_start - 1] != "<" or not text.startswith(ident + ">", m.end()):
        return None
    return _literal_span(m.start(1), m.group(1), ident, tier, threshold)


_APP_SETTING = re.compile(r"<add\s+key=\"([^\"]{1,80})\"\s+value=\"([^\"\s]{4,300})\"")


def _app_setting_spans(text: str, threshold: float) -> Iterator[Span]:
    """.NET ``<add key="ApiKey" value="..." />``: the name and the value are separate attributes."""
    if "<add " not in text:
        return
    for m in _APP_SETTING.finditer(text):
        tier = classify_identifier(m.group(1))
        if tier is not None and (span := _literal_span(m.start(2), m.group(2), m.group(1), tier, threshold)):
            yield span


def _cli_user_spans(text: str) -> Iterator[Span]:
    """``curl -u user:password`` / ``--user user:password`` command lines."""
    if "-u " in text or "--user" in text:
        for m in _CLI_USER.finditer(text):
            if m.start() > 0 and not text[m.start() - 1].isspace():
                continue
            if not is_placeholder(m.group(1)) and _password_shape(m.group(1)):
                yield Span(m.start(1), m.end(1), "password", 1)
