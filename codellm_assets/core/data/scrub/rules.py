"""Provider-specific secret rules for the scrubber: one row per token format.

Coverage follows detect-secrets' plugin list and gitleaks' rule list, but the expressions are our own.
Speed matters (the scrubber runs over the whole corpus), so no rule scans the text on its own: each rule
names the literal(s) its pattern starts with (``AKIA``, ``ghp_``, ``xoxb-``...), one numpy pass finds every
occurrence of every literal (``iter_triggers``), and a rule is tried only there. The few rules anchored on a
frequent character (Telegram ``:``, Discord ``.``) or a 2-letter literal (Twilio ``AC``/``SK``) scan with a
literal-led pattern, which CPython skips through at ~1 GB/s. Where a format starts with a character class
(Telegram ``123456789:...``, Stripe ``sk_``/``rk_``), the pattern starts at a literal in its middle and a
``left`` pattern extends the match leftwards. Word boundaries are checked in Python: a leading look-behind
would disable CPython's literal fast path.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import numpy as np

from codellm_assets.core.data.scrub.lookalikes import is_placeholder
from codellm_assets.core.data.scrub.providers import MORE_PROVIDER_RULES
from codellm_assets.core.data.scrub.rulebase import (  # noqa: F401  (Span, shannon_entropy: re-exported)
    _ALNUM,
    Rule,
    Span,
    _aws_secret_check,
    _b64_userpass,
    _bearer_check,
    _has_digit,
    _has_mix,
    _jwt_check,
    _mixed_case_random,
    _not_example,
    _plain_token,
    _r,
    _random_enough,
    shannon_entropy,
)

# Order matters only for ties: the first rule that claims a region names it.
PROVIDER_RULES: tuple[Rule, ...] = (
    # --- cloud providers --------------------------------------------------------------------------
    _r("aws_access_key", r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])",
       "AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
    _r("aws_secret_key", r"aws[\w.\-]{0,40}?(?:key|token|secret)\w*[\"'\]]?\s*(?::=|=>|=|:|,)\s*[\"']?"
       r"([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", "aws", group=1, ignorecase=True, check=_aws_secret_check,
       bounded=False),
    _r("aws_session_token", r"aws_?session_?token[\"'\]]?\s*(?::=|=>|=|:)\s*[\"']?([A-Za-z0-9/+=]{100,})",
       "aws", group=1, ignorecase=True, bounded=False),
    _r("google_api_key", r"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])", "AIza"),
    _r("google_oauth_secret", r"GOCSPX-[0-9A-Za-z_\-]{28}", "GOCSPX-"),
    _r("google_oauth_token", r"ya29\.[0-9A-Za-z_\-]{20,}", "ya29.", check=_random_enough),
    _r("firebase_server_key", r":APA91b[A-Za-z0-9_\-]{100,}", ":APA91b", left=r"AAAA[A-Za-z0-9_\-]{7}"),
    _r("azure_storage_key", r"(?:AccountKey|SharedAccessKey)\s*=\s*([A-Za-z0-9+/]{20,}={0,2})",
       "AccountKey", "SharedAccessKey", group=1, bounded=False),
    _r("azure_sas_signature", r"sig=([A-Za-z0-9%+/]{20,}(?:=|%3[dD]){0,2})", "sig=", group=1, before="?&;",
       bounded=False),
    _r("azure_client_secret", r"Q~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])", "Q~", left=r"[A-Za-z0-9_~.\-]{3}\d"),
    _r("alibaba_access_key", r"LTAI[A-Za-z0-9]{12,20}(?![A-Za-z0-9])", "LTAI", check=_has_mix),
    _r("digitalocean_token", r"do[opr]_v1_[a-f0-9]{64}", "dop_v1_", "doo_v1_", "dor_v1_"),
    _r("heroku_api_key", r"HRKU-[A-Za-z0-9_\-]{58,}", "HRKU-"),
    _r("heroku_api_key", r"heroku[^\n]{0,60}?\b([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
       "heroku", group=1, ignorecase=True, bounded=False),
    # --- code hosting and package registries ------------------------------------------------------
    _r("github_token", r"gh[pousr]_[A-Za-z0-9_]{36,251}", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    _r("github_token", r"github_pat_[A-Za-z0-9_]{22,251}", "github_pat_"),
    _r("gitlab_token", r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas|agent|cf)-[A-Za-z0-9_\-]{20,}", "glpat-", "gldt-",
       "glft-", "glsoat-", "glrt-", "glcbt-", "glimt-", "glptt-", "gloas-", "glagent-", "glcf-"),
    _r("gitlab_token", r"GR1348941[A-Za-z0-9_\-]{20,}", "GR1348941"),
    _r("npm_token", r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])", "npm_"),
    # .npmrc: //registry.npmjs.org/:_authToken=..., and unscoped _auth= / _authToken= lines
    _r("npm_token", r"[:\n]_(?:authToken|auth|password)\s*=\s*[\"']?([^\s\"'$]{8,})",
       ":_auth", ":_password", "\n_auth", "\n_password", group=1, bounded=False, check=_plain_token),
    _r("pypi_token", r"pypi-AgE[A-Za-z0-9_\-]{50,}", "pypi-AgE"),
    _r("rubygems_token", r"rubygems_[a-f0-9]{48}", "rubygems_"),
    _r("docker_auth", r"\"auth\"\s*:\s*\"([A-Za-z0-9+/]{8,}={0,2})\"", "\"auth\"", group=1, check=_b64_userpass,
       bounded=False),
    _r("artifactory_token", r"AKCp[A-Za-z0-9]{60,}", "AKCp"),
    _r("huggingface_token", r"hf_[A-Za-z0-9]{34,}(?![A-Za-z0-9])", "hf_", check=_mixed_case_random),
    # --- chat, mail, payments ---------------------------------------------------------------------
    _r("slack_token", r"xox[a-z](?:\.xox[a-z])?-[A-Za-z0-9\-]{5,}", "xox", ignorecase=True, check=_has_mix),
    _r("slack_token", r"xapp-\d-[A-Za-z0-9\-]{10,}", "xapp-"),
    _r("slack_webhook", r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+\-]{5,}",
       "hooks.slack.com/", bounded=False),
    _r("discord_webhook", r"discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{20,}",
       "discord.com/api/webhooks/", "discordapp.com/api/webhooks/", bounded=False),
    _r("discord_bot_token", r"\.[\w\-]{6}\.[\w\-]{27,}", left=r"[MNO][\w\-]{23,25}"),
    _r("telegram_bot_token", r":[A-Za-z0-9_\-]{35}(?![A-Za-z0-9_\-])", left=r"\d{8,10}"),
    _r("stripe_key", r"k_(?:live|test|prod)_[A-Za-z0-9]{10,99}", "k_live_", "k_test_", "k_prod_", left=r"[sr]"),
    _r("stripe_webhook_secret", r"whsec_[A-Za-z0-9]{24,}", "whsec_"),
    _r("square_token", r"sq0(?:atp|csp|idp)-[0-9A-Za-z_\-]{22,43}", "sq0atp-", "sq0csp-", "sq0idp-"),
    _r("square_token", r"EAAA[A-Za-z0-9_\-]{60,}", "EAAA", check=_random_enough),
    _r("facebook_token", r"EAA[B-Z][A-Za-z0-9]{60,}", "EAA", check=_random_enough),
    _r("paypal_braintree_token", r"access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32}", "access_token$production$"),
    _r("sendgrid_key", r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}", "SG."),
    _r("mailgun_key", r"key-[0-9a-f]{32}(?![0-9a-zA-Z])", "key-", check=_has_mix),
    _r("mailchimp_key", r"-us\d{1,2}(?![A-Za-z0-9])", "-us", left=r"[0-9a-z]{32}"),
    _r("twilio_key", r"AC[a-z0-9]{32}(?![A-Za-z0-9])", check=_has_digit),
    _r("twilio_key", r"SK[a-z0-9]{32}(?![A-Za-z0-9])", check=_has_digit),
    _r("shopify_token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", "shpat_", "shpca_", "shppa_", "shpss_"),
    # --- AI providers -----------------------------------------------------------------------------
    _r("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{20,}", "sk-ant-"),
    _r("openai_key", r"sk-(?!ant-)[A-Za-z0-9_\-]{20,}", "sk-", check=_random_enough),
    _r("groq_key", r"gsk_[A-Za-z0-9]{48,}", "gsk_"),
    _r("xai_key", r"xai-[A-Za-z0-9]{60,}", "xai-"),
    _r("perplexity_key", r"pplx-[A-Za-z0-9]{40,}", "pplx-"),
    _r("replicate_token", r"r8_[A-Za-z0-9]{37}(?![A-Za-z0-9])", "r8_"),
    # --- infrastructure and SaaS ------------------------------------------------------------------
    _r("vault_token", r"hv[sbr]\.[A-Za-z0-9_\-]{24,}", "hvs.", "hvb.", "hvr."),
    _r("databricks_token", r"dapi[a-f0-9]{32}(?:-\d)?(?![a-z0-9])", "dapi"),
    _r("atlassian_token", r"ATATT3[A-Za-z0-9_\-=]{60,}", "ATATT3"),
    _r("linear_key", r"lin_api_[A-Za-z0-9]{40}", "lin_api_"),
    _r("newrelic_key", r"NR(?:AK|II|JS)-[A-Z0-9]{19,27}(?![A-Z0-9])", "NRAK-", "NRII-", "NRJS-"),
    _r("postman_key", r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}", "PMAK-"),
    _r("grafana_token", r"gl(?:c|sa)_[A-Za-z0-9+/_]{32,}={0,2}", "glc_", "glsa_"),
    _r("sentry_token", r"sntry[su]_[A-Za-z0-9+/=_]{40,}", "sntrys_", "sntryu_"),
    _r("doppler_token", r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,}", "dp.pt.", "dp.st.", "dp.sa.",
       "dp.ct.", "dp.scim.", "dp.audit."),
    _r("pulumi_token", r"pul-[a-f0-9]{40}", "pul-"),
    _r("terraform_token", r"\.atlasv1\.[A-Za-z0-9_=\-]{60,}", ".atlasv1.", left=r"[A-Za-z0-9]{14}"),
    _r("dynatrace_token", r"dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64}", "dt0c01."),
    _r("planetscale_token", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.\-]{32,64}", "pscale_"),
    _r("flyio_token", r"fo1_[A-Za-z0-9_\-]{43}", "fo1_"),
    _r("onepassword_token", r"ops_eyJ[A-Za-z0-9+/=]{100,}", "ops_eyJ"),
    _r("age_secret_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", "AGE-SECRET-KEY-1"),
    _r("jwt", r"eyJ[A-Za-z0-9_\-]{5,}={0,2}\.[A-Za-z0-9_\-]{2,}={0,2}(?:\.[A-Za-z0-9_\-+/]*={0,2})?", "eyJ",
       check=_jwt_check),
    # --- credentials in headers -------------------------------------------------------------------
    _r("auth_header", r"bearer\s+([A-Za-z0-9._~+/\-]{16,}=*)", "bearer", group=1, ignorecase=True,
       check=_bearer_check, bounded=False),
    _r("auth_header", r"basic\s+([A-Za-z0-9+/]{8,}={0,2})(?![A-Za-z0-9+/=])", "basic", group=1, ignorecase=True,
       check=_b64_userpass, bounded=False),
    _r("auth_header", r"Token\s+([A-Za-z0-9_\-]{20,})(?![A-Za-z0-9_\-])", "Token", group=1, check=_random_enough,
       bounded=False),
    *(p.rule for p in MORE_PROVIDER_RULES),  # the long tail of providers, each with its examples (providers.py)
)


_TRIGGERED = [r for r in PROVIDER_RULES if r.triggers]
_SCANNING = [r for r in PROVIDER_RULES if not r.triggers]
# the literal a scanning rule's pattern starts with ("" when it starts with a class): checked with `in` first
_SCANNING_GATES = [(r, re.match(r"[A-Za-z0-9_\-]*", r.pattern.pattern).group(0) if not r.pattern.flags & re.IGNORECASE
                    else "") for r in _SCANNING]
_ALL_TRIGGERS = sorted({t for r in _TRIGGERED for t in r.triggers}, key=len, reverse=True)
# A rule also applies where its trigger is a prefix of a longer trigger found at the same place.
# Compared without case: where "azdo" (folded) and "AZDO" (exact) start at the same place, only one is
# reported, so both literals' rules run there; each pattern checks the case itself.
_RULES_BY_TRIGGER = {lit: [r for r in _TRIGGERED if any(lit.lower().startswith(t.lower()) for t in r.triggers)]
                     for lit in _ALL_TRIGGERS}


def _trigram(a: np.ndarray | int, b: np.ndarray | int, c: np.ndarray | int) -> np.ndarray | int:
    return (a << 14) | (b << 7) | c  # exact for 7-bit ASCII: 2**21 codes


# Triggers by their first three characters; a 2 MB table marks the trigrams that start some trigger.
# Triggers of case-insensitive rules are lower case and entered under every casing of their first three letters.
_FOLDED = {t for r in _TRIGGERED if r.pattern.flags & re.IGNORECASE for t in r.triggers}
_BY_TRIGRAM: dict[int, list[tuple[str, bool]]] = {}
for _lit in _ALL_TRIGGERS:
    if len(_lit) >= 3 and _lit.isascii():
        _casings = {_lit[:3]}
        if _lit in _FOLDED:
            _casings = {"".join(c) for c in itertools.product(*((ch.lower(), ch.upper()) for ch in _lit[:3]))}
        for _head in _casings:
            _BY_TRIGRAM.setdefault(_trigram(*map(ord, _head)), []).append((_lit, _lit in _FOLDED))
_SHORT_TRIGGERS = re.compile("|".join(re.escape(t) for t in _ALL_TRIGGERS if len(t) < 3) or r"(?!)")
_TRIGRAM_TABLE = np.zeros(1 << 21, dtype=bool)
_TRIGRAM_TABLE[list(_BY_TRIGRAM)] = True


def _casings(head: str, folded: bool) -> set[str]:
    return {"".join(c) for c in itertools.product(*((ch.lower(), ch.upper()) for ch in head))} if folded else {head}


def _codes(heads: set[str]) -> np.ndarray:
    return np.array(sorted(sum(ord(ch) << (7 * (len(h) - 1 - i)) for i, ch in enumerate(h)) for h in heads),
                    dtype=np.int64)


# Second filter on the trigram hits, vectorised: a trigger of 4 (5+) characters needs its first 4 (5) there
# too, so "config" no longer stops at the "con" of "confluent" in Python (~90k such hits per 5 MB of code).
_SHORT_TRIGRAMS = np.zeros(1 << 21, dtype=bool)
_SHORT_TRIGRAMS[[_trigram(*map(ord, h)) for t in _ALL_TRIGGERS if len(t) == 3 and t.isascii()
                 for h in _casings(t, t in _FOLDED)]] = True
_HEADS4 = _codes({h for t in _ALL_TRIGGERS if len(t) == 4 and t.isascii() for h in _casings(t, t in _FOLDED)})
def _member(values: np.ndarray, sorted_heads: np.ndarray) -> np.ndarray:
    idx = np.minimum(np.searchsorted(sorted_heads, values), len(sorted_heads) - 1)
    return sorted_heads[idx] == values


_HEADS5 = _codes({h for t in _ALL_TRIGGERS if len(t) >= 5 and t.isascii() for h in _casings(t[:5], t in _FOLDED)})


def iter_triggers(text: str) -> Iterator[tuple[int, str]]:
    """(position, longest trigger literal) for every trigger occurrence in ``text``.

    One regex alternation over ~100 literals runs at ~25 MB/s in CPython (every position is tried against
    every first letter); ~100 ``str.find`` calls are no faster. Instead the text's trigrams are looked up
    in a table with numpy (~150 MB/s) and only the few hits are checked in Python.
    """
    if len(text) >= 3:
        codes = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.uint32)
        trigrams = _trigram(codes[:-2], codes[1:-1], codes[2:])
        hits = np.flatnonzero(_TRIGRAM_TABLE[trigrams])
        if len(hits):
            last = len(codes) - 1  # a trigger needs a token after it: clamping at the end loses nothing
            tri = trigrams[hits]
            code4 = (tri.astype(np.int64) << 7) | codes[np.minimum(hits + 3, last)]
            code5 = (code4 << 7) | codes[np.minimum(hits + 4, last)]
            hits = hits[_SHORT_TRIGRAMS[tri] | _member(code4, _HEADS4) | _member(code5, _HEADS5)]
        for pos, code in zip(hits.tolist(), trigrams[hits].tolist()):
            for lit, folded in _BY_TRIGRAM[code]:
                if text.startswith(lit, pos) if not folded else text[pos:pos + len(lit)].lower() == lit:
                    yield pos, lit
                    break
    for m in _SHORT_TRIGGERS.finditer(text):
        yield m.start(), m.group(0)


# --- PEM private keys, replaced as whole blocks across lines (also inside JSON strings with \n escapes) -----
_PEM_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)? ?-{4,5}")
_PEM_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# Without an END line (a truncated key): the header lines and base64 lines that follow the BEGIN line.
_PEM_BODY = re.compile(r"(?>(?:\\[nr]|[\s\"'+,])*+(?:[A-Za-z0-9+/=]{16,}+|(?:Proc-Type|DEK-Info|Comment|Version):"
                       r"[^\n\\]*))+")
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{20,}")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d:[^\n]*\n(?:[^\n]*\n){0,60}?Private-MAC: ?[0-9a-fA-F]+")
PEM_MAX_BLOCK = 20_000


def find_private_keys(text: str) -> Iterator[Span]:
    """PEM / OpenSSH / PGP / PuTTY private key blocks whose body holds real key material."""
    if "PRIVATE KEY" not in text and "PuTTY" not in text:
        return
    pos, end_m, searched = 0, None, False
    while (m := _PEM_BEGIN.search(text, pos)) is not None:
        if not searched or (end_m is not None and end_m.start() < m.end()):
            # searched again only once the cached END is behind us: many BEGINs stay linear
            end_m, searched = _PEM_END.search(text, m.end()), True
        near = end_m is not None and end_m.start() - m.end() <= PEM_MAX_BLOCK
        if near and text.find("BEGIN ", m.end(), end_m.start()) < 0:  # the END of THIS block, not a later one
            body, end = text[m.end():end_m.start()], end_m.end()
        else:
            body_m = _PEM_BODY.match(text, m.end())
            body, end = (body_m.group(0), body_m.end()) if body_m else ("", m.end())
        # Keep marker constants and documentation stubs ("-----BEGIN PRIVATE KEY-----\n...\n"): no key material.
        if sum(len(run) for run in _B64_RUN.findall(body)) >= 40:
            yield Span(m.start(), end, "private_key")
        pos = max(end, m.end())
    if "PuTTY-User-Key-File" in text:
        for m in _PUTTY.finditer(text):
            yield Span(m.start(), m.end(), "private_key")


# --- passwords in URLs: postgres://user:PASSWORD@host, https://user:PASSWORD@host ----------------------------
_URL_USERINFO = re.compile(r"://([^\s/:@'\"<>{}\[\]()]*):([^\s/@'\"<>{}\[\]]+)@")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}\Z")
_DB_SCHEMES = ("postgres", "mysql", "mariadb", "mongodb", "redis", "rediss", "amqp", "mssql", "sqlserver",
               "oracle", "jdbc", "clickhouse", "cockroach", "couchdb", "neo4j", "bolt", "cassandra", "snowflake",
               "db2", "sqlalchemy", "memcache", "elasticsearch", "influxdb", "kafka", "nats", "ldap")


def find_url_credentials(text: str) -> Iterator[Span]:
    """The password part of URL user-info; ``db_password`` for database schemes, else ``url_password``."""
    for m in _URL_USERINFO.finditer(text):
        password = m.group(2)
        if is_placeholder(password, m.group(1)):  # user:password@, postgres:postgres@, :${DB_PASS}@
            continue
        sm = _SCHEME.search(text, max(0, m.start() - 31), m.start())
        scheme = sm.group(0).lower() if sm else ""
        kind = "db_password" if any(db in scheme for db in _DB_SCHEMES) else "url_password"
        yield Span(m.start(2), m.end(2), kind)


_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-+/~]*+")  # no "." or "=": a token may follow (JWT parts, KEY=token)


def _accept(rule: Rule, text: str, m: re.Match[str]) -> Span | None:
    start, end = m.span(rule.group)
    if rule.before is not None and (m.start() == 0 or text[m.start() - 1] not in rule.before):
        return None
    if rule.left is not None:
        lm = rule.left.search(text, max(0, start - 128), start)
        if lm is None:
            return None
        start = lm.start()
    if rule.bounded and start > 0 and text[start - 1] in _ALNUM:
        return None
    secret = text[start:end]
    if not _not_example(secret) or (rule.check is not None and not rule.check(secret)):
        return None  # ghp_xxxxxxxx..., AKIA...EXAMPLE: documentation placeholders
    return Span(start, end, rule.kind)


def find_provider_spans(text: str) -> Iterator[Span]:
    """Every provider-format secret in ``text``."""
    yield from find_private_keys(text)
    skip_until: dict[str, int] = {}
    for pos, lit in iter_triggers(text):
        # After a failed attempt, later occurrences of the same literal inside the same token are not tried
        # ("eyJeyJeyJ..."); after a match, only those inside the match. Degenerate input stays linear.
        if pos < skip_until.get(lit, -1):
            continue
        matched_to = -1
        for rule in _RULES_BY_TRIGGER[lit]:
            m = rule.pattern.match(text, pos)
            if m is not None and (span := _accept(rule, text, m)) is not None:
                matched_to = max(matched_to, span.end)
                yield span
        skip_until[lit] = matched_to if matched_to >= 0 else _TOKEN_RUN.match(text, pos + len(lit)).end()
    for rule, literal in _SCANNING_GATES:
        if literal and literal not in text:
            continue  # str's search is faster than the engine's, and most texts have none of these
        for m in rule.pattern.finditer(text):
            if (span := _accept(rule, text, m)) is not None:
                yield span
