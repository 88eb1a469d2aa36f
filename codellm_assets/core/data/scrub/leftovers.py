"""An independent re-scan of scrubbed text, for the blocking asset check after ``scrub_text``.

Independent means a different mechanism: this runs detect-secrets' own provider plugins (their regexes
and validators, e.g. the JWT JSON check), line by line, not the scrubber's rule table. Only the plugins
that look for a specific token format are used; detect-secrets' keyword and high-entropy plugins flag every
``token = ...`` in ordinary code and would block the pipeline on noise, and its public-IP plugin keeps a
different set of addresses than the scrubber. A handful of formats detect-secrets 1.5 lacks (Google, Anthropic,
Vault, npm, Shopify) are added as plain signatures.

To stay fast on a whole corpus, a literal trigger per plugin finds candidate lines first; the plugin only
looks at those lines. Findings never carry the secret: the excerpt masks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from codellm_assets.core.data.scrub.lookalikes import is_placeholder


@dataclass(frozen=True)
class Finding:
    """A secret left in text: its type, 1-based line and column, and the line with the secret masked."""

    type: str
    line: int
    column: int
    excerpt: str


class _Signature:
    """A plain regex signature shaped like a detect-secrets regex plugin (``secret_type``, ``denylist``)."""

    def __init__(self, secret_type: str, pattern: str) -> None:
        self.secret_type = secret_type
        self.denylist = (re.compile(pattern),)


# (plugin, trigger run on the text, trigger run on the lower-cased text): a line is analysed only when a
# trigger hits it. Triggers start with a literal, so the scan runs at memory speed.
_Trigger = re.Pattern[str] | str | None  # a regex, or "jwt" for _jwt_hits
_PLUGINS: tuple[tuple[RegexBasedDetector | _Signature, _Trigger, _Trigger], ...] = (
    (AWSKeyDetector(), re.compile(r"AKIA|ASIA|ABIA|ACCA|A3T"), re.compile(r"aws")),
    (AzureStorageKeyDetector(), re.compile(r"AccountKey="), None),
    (BasicAuthDetector(), re.compile(r"://[^\s@]{1,200}@"), None),
    (DiscordBotTokenDetector(), re.compile(r"\.[\w\-]{6}\.[\w\-]{27}"), None),
    (GitHubTokenDetector(), re.compile(r"gh[pousr]_"), None),
    (GitLabTokenDetector(), re.compile(r"gl[a-z]{1,6}-|GR1348941"), None),
    (JwtTokenDetector(), "jwt", None),
    (MailchimpDetector(), re.compile(r"-us\d"), None),
    (NpmDetector(), re.compile(r"_authToken="), None),
    (OpenAIDetector(), re.compile(r"T3BlbkFJ"), None),
    (PrivateKeyDetector(), re.compile(r"PRIVATE KEY|PuTTY-User-Key-File"), None),
    (PypiTokenDetector(), re.compile(r"pypi-Ag"), None),
    (SendGridDetector(), re.compile(r"SG\."), None),
    (SlackDetector(), re.compile(r"hooks\.slack\.com"), re.compile(r"xox[abposr]-")),
    (SquareOAuthDetector(), re.compile(r"sq0csp-"), None),
    (StripeDetector(), re.compile(r"k_live_"), None),
    (TelegramBotTokenDetector(), re.compile(r":[0-9A-Za-z_\-]{35}"), None),
    (TwilioKeyDetector(), re.compile(r"(?:AC|SK)[a-z0-9]{32}"), None),
    (_Signature("Google API Key", r"AIza[0-9A-Za-z_\-]{35}"), re.compile(r"AIza"), None),
    (_Signature("Anthropic API Key", r"sk-ant-[A-Za-z0-9_\-]{20,}"), re.compile(r"sk-ant-"), None),
    (_Signature("Vault Token", r"hv[sb]\.[A-Za-z0-9_\-]{24,}"), re.compile(r"hv[sb]\."), None),
    (_Signature("npm Access Token", r"npm_[A-Za-z0-9]{36}"), re.compile(r"npm_"), None),
    (_Signature("GitHub Fine-grained Token", r"github_pat_[A-Za-z0-9_]{50,}"), re.compile(r"github_pat_"), None),
    (_Signature("Stripe Test Key", r"[sr]k_test_[A-Za-z0-9]{24,}"), re.compile(r"k_test_"), None),
    (_Signature("Shopify Token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"), re.compile(r"shp[acps]"), None),
)
_OUR_PLACEHOLDER = re.compile(r"<(?:SECRET:[a-z0-9_]+|EMAIL|IP|PHONE)>")
_DUMMY_MARK = re.compile(r"example|x{8,}|0{8,}|\*{4,}", re.IGNORECASE)
_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{40,}")
_VALUE_GROUP_TYPES = {"Basic Auth Credentials", "AWS Access Key", "NPM tokens"}
_GLUED_TYPES = {"AWS Access Key", "Twilio API Key", "Telegram Bot Token"}
_ALNUM = re.compile(r"[A-Za-z0-9]")


def mask_secret(secret: str) -> str:
    """``AKIA****************``: enough to recognise the kind, never enough to use it."""
    shown = 4 if len(secret) >= 16 else 1 if len(secret) >= 6 else 0
    return secret[:shown] + "*" * min(len(secret) - shown, 24)


def _has_key_material(text: str, start: int) -> bool:
    """Base64 key material (mixed case and digits, as random bytes give) within the next lines."""
    for m in _KEY_MATERIAL.finditer(text, start, start + 1500):
        run = m.group(0)
        if any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run):
            return True
    return False


def _is_false_positive(kind: str, secret: str, line: str, text: str, line_start: int) -> bool:
    if _OUR_PLACEHOLDER.search(secret) or is_templated_secret(secret) or is_prefixed_with_dollar_sign(secret):
        return True
    if len(secret) >= 8 and is_sequential_string(secret):
        return True
    if _DUMMY_MARK.search(secret):
        return True
    if kind == "Basic Auth Credentials":  # ://user:secret@ -- the password may not repeat the user name
        user = line[:line.find(":" + secret + "@")].rpartition("/")[2] if ":" + secret + "@" in line else ""
        return is_placeholder(secret, user)
    if kind == "Private Key":
        # a marker constant (`if line.startswith("-----BEGIN RSA PRIVATE KEY-----")`) is not a key
        return not _has_key_material(text, line_start)
    if kind in _GLUED_TYPES:
        at = line.find(secret)
        glued = (at > 0 and _ALNUM.match(line[at - 1])) or _ALNUM.match(line[at + len(secret):at + len(secret) + 1])
        return bool(glued) or (kind == "Twilio API Key" and not any(c.isdigit() for c in secret))
    return False


_B64URL_RUN = re.compile(r"[A-Za-z0-9_\-=]*+")


def _jwt_hits(text: str) -> Iterator[int]:
    """Positions of "eyJ" that start a dotted token. One pass, skipping each token whole: a regex retried at
    every "eyJ" of a long run ("eyJeyJeyJ...") would be quadratic."""
    pos = text.find("eyJ")
    while pos >= 0:
        end = _B64URL_RUN.match(text, pos).end()
        if text.startswith(".", end):
            yield pos
        pos = text.find("eyJ", end)


def _trigger_hits(trigger: _Trigger, haystack: str) -> Iterator[int]:
    if trigger == "jwt":
        yield from _jwt_hits(haystack)
    elif isinstance(trigger, re.Pattern):
        yield from (m.start() for m in trigger.finditer(haystack))


def _candidate_lines(text: str, lowered: str | None, on_text: _Trigger, on_lower: _Trigger) -> list[int]:
    """Start offsets of the lines a plugin's triggers hit, in order. Each line is located once, however
    many hits it holds (a minified line with thousands of URLs stays linear)."""
    starts: set[int] = set()
    for trigger, haystack in ((on_text, text), (on_lower, lowered)):
        if trigger is None or haystack is None:
            continue
        line_end = -1
        for hit in _trigger_hits(trigger, haystack):
            if hit <= line_end:
                continue
            starts.add(text.rfind("\n", 0, hit) + 1)
            line_end = text.find("\n", hit)
            if line_end < 0:
                break
    return sorted(starts)


def _matches(plugin: RegexBasedDetector | _Signature, line: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, secret) of each hit of the plugin's own regexes in ``line``. The secret is the value
    group for plugins whose regex captures one (``://user:(pw)@``, ``aws...key = "(...)"``), else the match."""
    for regex in plugin.denylist:
        for m in regex.finditer(line):
            if not m.group(0):
                continue
            if isinstance(plugin, JwtTokenDetector) and not plugin.is_formally_valid(m.group(0)):
                continue
            value = m.group(1) if regex.groups and plugin.secret_type in _VALUE_GROUP_TYPES else None
            yield m.start(), m.end(), value or m.group(0)


def find_leftovers(text: str) -> list[Finding]:
    """Secrets still present in ``text`` (empty for correctly scrubbed text; placeholders never count)."""
    lowered = text.lower()
    if len(lowered) != len(text):
        lowered = None
    findings: dict[tuple[int, int, str], Finding] = {}
    line_numbers: dict[int, int] = {}  # line start -> 1-based number, counted once per line
    for plugin, on_text, on_lower in _PLUGINS:
        kind = plugin.secret_type
        for line_start in _candidate_lines(text, lowered, on_text, on_lower):
            line_end = text.find("\n", line_start)
            line = text[line_start:line_end if line_end >= 0 else len(text)]
            for start, end, secret in _matches(plugin, line):
                if _is_false_positive(kind, secret, line, text, line_start):
                    continue
                line_no = line_numbers.get(line_start) or line_numbers.setdefault(
                    line_start, text.count("\n", 0, line_start) + 1)
                # the whole matched region is masked, not just the value: the excerpt never holds the secret
                excerpt = (line[:start] + mask_secret(line[start:end]) + line[end:]).strip()
                if len(excerpt) > 160:
                    excerpt = excerpt[:157] + "..."
                findings.setdefault((line_no, start, kind), Finding(kind, line_no, start + 1, excerpt))
    return sorted(findings.values(), key=lambda f: (f.line, f.column, f.type))


def summarize_findings(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts by type, for asset-check metadata."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.type] = counts.get(f.type, 0) + 1
    return counts
