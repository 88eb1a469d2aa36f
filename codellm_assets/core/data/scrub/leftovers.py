"""An independent re-scan of scrubbed text, for the blocking asset check after ``scrub_text``.

Independent means a different method from the scrubber, sharing none of its rules or its look-alike list:

- provider formats: detect-secrets' own regex plugins and validators (``leftover_providers``);
- keyword-anchored secrets: detect-secrets' KeywordDetector forms plus our own keyword list, judged by
  entropy and character classes (``leftover_keywords``, ``leftover_values``);
- PII: e-mails at any TLD, private IPs, internal host names (``leftover_pii``).

The scrubber's placeholders (``<SECRET:...>``, ``<EMAIL>``, ...) never count. Findings never carry the
secret: the excerpt masks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from codellm_assets.core.data.scrub.leftover_keywords import TRIGGER, find_keyword_secrets
from codellm_assets.core.data.scrub.leftover_pii import PRIVATE_TLDS, find_pii
from codellm_assets.core.data.scrub.leftover_providers import (
    PLUGINS,
    LiteralLines,
    all_literals,
    candidate_lines,
    is_false_positive,
    matches,
)
from codellm_assets.core.data.scrub.leftover_values import PLACEHOLDER
from codellm_assets.settings import ScrubSettings

_LITERALS = all_literals(TRIGGER)
# length-preserving lower case (str.lower() changes the length of a few non-ASCII characters)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Finding:
    """A secret left in text: its type, 1-based line and column, and the line with the secret masked."""

    type: str
    line: int
    column: int
    excerpt: str


@dataclass(frozen=True)
class LeftoverPolicy:
    """What counts as a leftover besides secrets: PII kinds the company chose to redact, its own domains."""

    emails: bool = True
    ips: bool = True
    hosts: bool = False
    internal_domains: tuple[str, ...] = ()

    private_tlds: tuple[str, ...] = PRIVATE_TLDS

    @classmethod
    def from_scrub_settings(cls, scrub: ScrubSettings | None) -> LeftoverPolicy:
        """Secrets always count (``disabled_rules`` is exactly what this re-scan must still catch); PII only
        where the scrubber is told to redact it (``redact_emails`` / ``redact_ips`` switched off is a choice).
        Host names count once the scrubber redacts them (``scrub.redact_hosts``)."""
        scrub = scrub or ScrubSettings()
        return cls(emails=scrub.redact_emails, ips=scrub.redact_ips, hosts=bool(getattr(scrub, "redact_hosts", False)),
                   internal_domains=tuple(getattr(scrub, "internal_domains", None) or ()),
                   private_tlds=tuple(getattr(scrub, "private_tlds", None) or PRIVATE_TLDS))


def mask_secret(secret: str) -> str:
    """``AKIA****************``: enough to recognise the kind, never enough to use it."""
    shown = 4 if len(secret) >= 16 else 1 if len(secret) >= 6 else 0
    return secret[:shown] + "*" * min(len(secret) - shown, 24)


class _Lines:
    """Line numbers and texts by offset, each line located once."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._numbers: dict[int, int] = {}

    def start_of(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1

    def line(self, start: int) -> str:
        end = self.text.find("\n", start)
        return self.text[start:end if end >= 0 else len(self.text)]

    def number(self, start: int) -> int:
        n = self._numbers.get(start)
        if n is None:
            n = self._numbers[start] = self.text.count("\n", 0, start) + 1
        return n


def _raw_findings(text: str, lowered: str, policy: LeftoverPolicy) -> list[tuple[int, int, int, str]]:
    """(line start, start, end, type) with start/end relative to the line."""
    hits: list[tuple[int, int, int, str]] = []
    lines = _Lines(text)
    literals = LiteralLines(text, lowered, *_LITERALS)   # every literal trigger, in one pass per case
    cache: dict[tuple[int, int], list[int]] = {}     # plugins sharing a trigger share its pass over the text
    for plugin, on_text, on_lower in PLUGINS:
        key = (id(on_text), id(on_lower))
        if key not in cache:
            cache[key] = candidate_lines(text, lowered, on_text, on_lower, literals)
        for line_start in cache[key]:
            line = lines.line(line_start)
            for start, end, secret in matches(plugin, line):
                if not is_false_positive(plugin.secret_type, secret, line, text, line_start):
                    hits.append((line_start, start, end, plugin.secret_type))
    hits.extend((ls, s, e, kind) for ls, s, e, kind, _ in find_keyword_secrets(text, lowered, literals))
    for start, end, kind, _ in find_pii(text, lowered, emails=policy.emails, ips=policy.ips, hosts=policy.hosts,
                                        internal_domains=(*policy.private_tlds, *policy.internal_domains)):
        ls = lines.start_of(start)
        hits.append((ls, start - ls, end - ls, kind))
    return hits


def find_leftovers(text: str, policy: LeftoverPolicy | None = None) -> list[Finding]:
    """Secrets and PII still present in ``text`` (empty for correctly scrubbed text)."""
    policy = policy or LeftoverPolicy.from_scrub_settings(None)
    # the scrubber's placeholders become blanks of the same length: offsets hold, and neither
    # `://user:<SECRET:db_password>@` nor `AccountKey=<SECRET:...>` reads as a value any more
    scan = PLACEHOLDER.sub(lambda m: " " * len(m.group(0)), text) if "<" in text else text
    lowered = scan.lower()
    if len(lowered) != len(scan):
        lowered = scan.translate(_ASCII_LOWER)
    hits = _raw_findings(scan, lowered, policy)
    lines = _Lines(text)
    by_line: dict[int, list[tuple[int, int]]] = {}
    for line_start, start, end, _ in hits:
        by_line.setdefault(line_start, []).append((start, end))
    findings: dict[tuple[int, int, str], Finding] = {}
    for line_start, start, _end, kind in hits:
        line_no = lines.number(line_start)
        key = (line_no, start, kind)
        if key not in findings:
            findings[key] = Finding(kind, line_no, start + 1, _excerpt(lines.line(line_start), by_line[line_start]))
    return sorted(findings.values(), key=lambda f: (f.line, f.column, f.type))


def _excerpt(line: str, spans: list[tuple[int, int]]) -> str:
    """The line with EVERY finding on it masked (whole matched regions, not just values)."""
    out, pos = [], 0
    for start, end in sorted(spans):
        if end <= pos:
            continue
        start = max(start, pos)
        out += [line[pos:start], mask_secret(line[start:end])]
        pos = end
    out.append(line[pos:])
    excerpt = "".join(out).strip()
    return excerpt if len(excerpt) <= 160 else excerpt[:157] + "..."


def summarize_findings(findings: Iterable[Finding]) -> dict[str, int]:
    """Counts by type, for asset-check metadata."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.type] = counts.get(f.type, 0) + 1
    return counts
