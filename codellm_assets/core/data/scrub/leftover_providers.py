"""Provider-format tokens for the leftover re-scan: detect-secrets' own regex plugins (every one except the
keyword, entropy and public-IP plugins, which ``leftover_keywords`` and ``leftover_pii`` use in their own
way), their regexes and validators, plus a few formats detect-secrets 1.5 lacks as plain signatures.

To stay fast on a whole corpus, a literal trigger per plugin finds candidate lines first; the plugin only
looks at those lines. Nothing here comes from the scrubber's rule table: it is the second opinion.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

from detect_secrets.filters.heuristic import (
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from codellm_assets.core.data.scrub.leftover_values import is_dummy, is_placeholder_token, looks_random


class _Signature:
    """A plain regex signature shaped like a detect-secrets regex plugin (``secret_type``, ``denylist``)."""

    def __init__(self, secret_type: str, pattern: str) -> None:
        self.secret_type = secret_type
        self.denylist = (re.compile(pattern),)


# (plugin, trigger run on the text, trigger run on the lower-cased text): a line is analysed only when a
# trigger hits it. A trigger is literals (found with str.find, at memory speed), a regex, or "jwt".
_Trigger = tuple[str, ...] | re.Pattern[str] | str | None
KEYWORDISH = ("key", "pwd", "pass", "token", "secret")
PLUGINS: tuple[tuple[RegexBasedDetector | _Signature, _Trigger, _Trigger], ...] = (
    (AWSKeyDetector(), ("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), ("aws",)),
    (ArtifactoryDetector(), re.compile(r"AKC[a-zA-Z0-9]{10}|AP[\dA-F][a-zA-Z0-9]{8}"), None),
    (AzureStorageKeyDetector(), ("AccountKey=",), None),
    (BasicAuthDetector(), re.compile(r"://[^\s@]{1,200}@"), None),
    (CloudantDetector(), None, KEYWORDISH),
    (DiscordBotTokenDetector(), re.compile(r"\.[\w\-]{6}\.[\w\-]{27}"), None),
    (GitHubTokenDetector(), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), None),
    (GitLabTokenDetector(), re.compile(r"gl[a-z]{1,6}-|GR1348941"), None),
    (IbmCloudIamDetector(), None, KEYWORDISH),
    (IbmCosHmacDetector(), None, KEYWORDISH),
    (JwtTokenDetector(), "jwt", None),
    (MailchimpDetector(), re.compile(r"-us\d"), None),
    (NpmDetector(), ("_authToken=",), None),
    (OpenAIDetector(), ("T3BlbkFJ",), None),
    (PrivateKeyDetector(), ("PRIVATE KEY", "PuTTY-User-Key-File"), None),
    (PypiTokenDetector(), ("pypi-Ag",), None),
    (SendGridDetector(), ("SG.",), None),
    (SlackDetector(), ("hooks.slack.com",), ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-")),
    (SoftlayerDetector(), None, KEYWORDISH),
    (SquareOAuthDetector(), ("sq0csp-",), None),
    (StripeDetector(), ("k_live_",), None),
    (TelegramBotTokenDetector(), re.compile(r":[0-9A-Za-z_\-]{35}"), None),
    (TwilioKeyDetector(), re.compile(r"(?:AC|SK)[a-z0-9]{32}"), None),
    (_Signature("Google API Key", r"AIza[0-9A-Za-z_\-]{35}"), ("AIza",), None),
    (_Signature("Anthropic API Key", r"sk-ant-[A-Za-z0-9_\-]{20,}"), ("sk-ant-",), None),
    (_Signature("Vault Token", r"hv[sb]\.[A-Za-z0-9_\-]{24,}"), ("hvs.", "hvb."), None),
    (_Signature("npm Access Token", r"npm_[A-Za-z0-9]{36}"), ("npm_",), None),
    (_Signature("GitHub Fine-grained Token", r"github_pat_[A-Za-z0-9_]{50,}"), ("github_pat_",), None),
    (_Signature("Stripe Test Key", r"[sr]k_test_[A-Za-z0-9]{24,}"), ("k_test_",), None),
    (_Signature("Hugging Face Token", r"hf_[A-Za-z]{34}(?![A-Za-z0-9])"), ("hf_",), None),
    (_Signature("Mailgun API Key", r"key-[0-9a-f]{32}(?![0-9a-f])"), ("key-",), None),
    # password hashes: offline-crackable, and a company's own users' -- never training text
    (_Signature("Password Hash", r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}"), ("$2a$", "$2b$", "$2y$"), None),
    (_Signature("Password Hash", r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{8,}"
                                 r"\$[A-Za-z0-9+/]{16,}"), ("$argon2",), None),
    (_Signature("Password Hash", r"\$[56]\$(?:rounds=\d+\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}"),
     ("$5$", "$6$"), None),
    (_Signature("Password Hash", r"pbkdf2_sha(?:1|256|512)\$\d+\$[A-Za-z0-9+/=.]+\$[A-Za-z0-9+/=]{20,}"),
     ("pbkdf2_sha",), None),
    (_Signature("Password Hash", r"(?:scrypt|pbkdf2):[\w:]+\$[A-Za-z0-9+/=.]{8,}\$[A-Fa-f0-9]{32,}"),
     ("scrypt:", "pbkdf2:"), None),
    (_Signature("Password Hash", r"\{S?SHA(?:256|512)?\}[A-Za-z0-9+/]{20,}={0,2}"), ("{SSHA", "{SHA"), None),
    (_Signature("Shopify Token", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"), ("shpat_", "shpca_", "shppa_", "shpss_"),
     None),
)
_DUMMY_MARK = re.compile(r"example|x{8,}|0{8,}|\*{4,}", re.IGNORECASE)
_KEY_MATERIAL = re.compile(r"[A-Za-z0-9+/]{40,}")
_VALUE_GROUP_TYPES = {"Basic Auth Credentials", "AWS Access Key", "NPM tokens", "Cloudant Credentials",
                      "IBM Cloud IAM Key", "IBM COS HMAC Credentials", "SoftLayer Credentials"}
_GLUED_TYPES = {"AWS Access Key", "Twilio API Key", "Telegram Bot Token"}
# keyword-anchored plugins whose value must also look random (an identifier of the right length is not a key)
_RANDOM_TYPES = {"Artifactory Credentials", "Cloudant Credentials", "IBM Cloud IAM Key", "SoftLayer Credentials"}
_ALNUM = re.compile(r"[A-Za-z0-9]")


def _has_key_material(text: str, start: int) -> bool:
    """Base64 key material (mixed case and digits, as random bytes give) within the next lines."""
    for m in _KEY_MATERIAL.finditer(text, start, start + 1500):
        run = m.group(0)
        if any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run):
            return True
    return False


def is_false_positive(kind: str, secret: str, line: str, text: str, line_start: int) -> bool:
    if is_placeholder_token(secret) or is_templated_secret(secret):
        return True
    if is_prefixed_with_dollar_sign(secret) and kind != "Password Hash":   # hashes start with $2b$, $6$, ...
        return True
    if len(secret) >= 8 and is_sequential_string(secret):
        return True
    if _DUMMY_MARK.search(secret):
        return True
    if kind == "Basic Auth Credentials":  # ://user:secret@ -- the password may not repeat the user name
        user = line[:line.find(":" + secret + "@")].rpartition("/")[2] if ":" + secret + "@" in line else ""
        return is_dummy(secret, user)
    if kind == "Private Key":
        # a marker constant (`if line.startswith("-----BEGIN RSA PRIVATE KEY-----")`) is not a key
        return not _has_key_material(text, line_start)
    if kind in _RANDOM_TYPES:
        return not looks_random(secret)
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


@functools.lru_cache(maxsize=8)
def _alternation(literals: tuple[str, ...]) -> tuple[re.Pattern[str], dict[str, tuple[str, ...]]]:
    """One regex over all literals (longest first) and, per literal, the literals it contains: one pass over
    the text finds every trigger (one str.find per literal costs a full pass each)."""
    ordered = sorted(set(literals), key=len, reverse=True)
    contains = {lit: tuple(o for o in ordered if o in lit) for lit in ordered}
    return re.compile("|".join(map(re.escape, ordered))), contains


class LiteralLines:
    """Line starts per trigger literal, from one pass over the text and one over its lower-cased copy."""

    def __init__(self, text: str, lowered: str, on_text: Iterable[str], on_lower: Iterable[str]) -> None:
        self.lines: dict[tuple[bool, str], set[int]] = {}
        for lower, haystack, literals in ((False, text, on_text), (True, lowered, on_lower)):
            pattern, contains = _alternation(tuple(sorted(set(literals))))
            line_start, line_end = -1, -1
            for m in pattern.finditer(haystack):
                pos = m.start()
                if not line_start <= pos <= line_end:
                    line_start = text.rfind("\n", 0, pos) + 1
                    line_end = text.find("\n", pos)
                    line_end = len(text) if line_end < 0 else line_end
                for lit in contains[m.group(0)]:
                    self.lines.setdefault((lower, lit), set()).add(line_start)

    def starts(self, lower: bool, literals: tuple[str, ...]) -> set[int]:
        out: set[int] = set()
        for lit in literals:
            out |= self.lines.get((lower, lit), set())
        return out


def all_literals(extra_lower: Iterable[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(literals run on the text, literals run on the lower-cased text) of every plugin, plus ``extra_lower``."""
    on_text = tuple(lit for _, t, _ in PLUGINS if isinstance(t, tuple) for lit in t)
    on_lower = tuple(lit for _, _, t in PLUGINS if isinstance(t, tuple) for lit in t) + tuple(extra_lower)
    return on_text, on_lower


def _trigger_hits(trigger: _Trigger, haystack: str) -> Iterator[int]:
    if trigger == "jwt":
        yield from _jwt_hits(haystack)
    elif isinstance(trigger, re.Pattern):
        yield from (m.start() for m in trigger.finditer(haystack))


def candidate_lines(text: str, lowered: str, on_text: _Trigger, on_lower: _Trigger,
                    literals: LiteralLines) -> list[int]:
    """Start offsets of the lines a plugin's triggers hit, in order. Each line is located once, however
    many hits it holds (a minified line with thousands of URLs stays linear)."""
    starts: set[int] = set()
    for lower, trigger, haystack in ((False, on_text, text), (True, on_lower, lowered)):
        if trigger is None:
            continue
        if isinstance(trigger, tuple):
            starts |= literals.starts(lower, trigger)
            continue
        line_start, line_end = -1, -1
        for hit in _trigger_hits(trigger, haystack):
            if line_start <= hit <= line_end:
                continue
            line_start = text.rfind("\n", 0, hit) + 1
            starts.add(line_start)
            line_end = text.find("\n", hit)
            if line_end < 0:
                line_end = len(text)
    return sorted(starts)


def matches(plugin: RegexBasedDetector | _Signature, line: str) -> Iterator[tuple[int, int, str]]:
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
