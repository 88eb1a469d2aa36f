"""Secrets and PII scrubber: replaces them with typed placeholders (``<SECRET:aws_access_key>``, ``<EMAIL>``).

Three detectors collect regions of the ORIGINAL text in one pass each, then all regions are replaced at
once (overlaps merged, so a secret is never half-replaced and placeholders are never re-scanned):

1. provider formats (``secret_rules``): AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI, Anthropic, JWT,
   PEM private key blocks across lines, passwords in URLs, Azure, Vault, npm, Twilio, SendGrid, auth
   headers, Docker ``auths``, PyPI, ... ;
2. keyword-anchored assignments (``scrub_keywords``) with an entropy threshold;
3. PII (``pii``, ``hosts``): e-mail addresses, private IPv4/IPv6 addresses, phone numbers, internal host names.

``find_leftovers`` (``scrub_leftovers``) is the independent re-scan used by the blocking asset check.
Pure Python, no Dagster: the pipeline calls ``scrub_text`` per file, the CLI calls ``scrub_tree``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from codellm_assets.core.data.git_scan import decode_blob
from codellm_assets.core.data.scrub.contexts import find_context_passwords
from codellm_assets.core.data.scrub.encoded import find_encoded_json, find_k8s_secret_data
from codellm_assets.core.data.scrub.hashes import find_password_hashes
from codellm_assets.core.data.scrub.hosts import find_internal_hosts
from codellm_assets.core.data.scrub.keywords import find_keyword_spans
from codellm_assets.core.data.scrub.leftovers import Finding, find_leftovers, mask_secret, summarize_findings
from codellm_assets.core.data.scrub.pii import find_emails, find_ipv4, find_ipv6, find_phones
from codellm_assets.core.data.scrub.rules import Span, find_provider_spans, find_url_credentials
from codellm_assets.settings import ScrubSettings

__all__ = ["Finding", "ScrubInputError", "ScrubReport", "ScrubResult", "find_leftovers", "mask_secret",
           "placeholder", "scrub_text", "scrub_tree", "summarize_findings"]

PII_PRIORITY = 2  # spans from scrub_pii; secrets are 0 (provider formats) and 1 (keyword assignments)
PII_PLACEHOLDERS = {"email": "<EMAIL>", "ip": "<IP>", "phone": "<PHONE>", "host": "<HOST>"}
_DATA_URI = re.compile(r"data:[\w/+.\-]{1,60};base64,[A-Za-z0-9+/=]{16,}")
SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


def placeholder(kind: str) -> str:
    """The text that replaces a redaction of ``kind``: ``<EMAIL>``, ``<IP>``, ``<PHONE>`` or ``<SECRET:kind>``."""
    return PII_PLACEHOLDERS.get(kind) or f"<SECRET:{kind}>"


@dataclass
class ScrubResult:
    """Scrubbed text and the number of redactions by placeholder type (``{"aws_access_key": 1, "email": 2}``)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)


def _collect_spans(text: str, settings: ScrubSettings) -> list[Span]:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few non-ASCII characters change length when lower-cased
        lowered = None
    spans: list[Span] = [*find_provider_spans(text), *find_url_credentials(text),
                         *find_keyword_spans(text, lowered, settings.entropy_threshold),
                         *find_context_passwords(text, lowered), *find_password_hashes(text)]
    if "eyJ" in text:
        spans.extend(find_encoded_json(text))
    spans.extend(find_k8s_secret_data(text))
    if settings.redact_emails and "@" in text:
        spans.extend(find_emails(text))
    if settings.redact_ips:
        spans.extend(find_ipv4(text))
        if "::" in text or text.count(":") >= 7:
            spans.extend(find_ipv6(text))
    if settings.redact_phones:
        spans.extend(find_phones(text))
    if settings.redact_hosts:
        spans.extend(find_internal_hosts(text, settings.private_tlds, settings.internal_domains))
    if spans and "base64," in text:
        # a token-shaped run inside an embedded image is a coincidence, not a secret
        blobs = [m.span() for m in _DATA_URI.finditer(text)]
        spans = [s for s in spans if not any(b0 <= s.start and s.end <= b1 for b0, b1 in blobs)]
    if settings.disabled_rules:
        spans = [s for s in spans if s.kind not in settings.disabled_rules]
    return spans


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Overlapping secrets merge into their union (a secret is never half-replaced), named after the
    highest-priority part; PII overlapping a secret yields to it (``user:token@host`` is not an e-mail)."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, s.priority, -s.end)):
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            if (span.priority == PII_PRIORITY) != (last.priority == PII_PRIORITY):
                if last.priority == PII_PRIORITY:
                    merged[-1] = span
                continue
            best = last if last.priority <= span.priority else span
            merged[-1] = Span(last.start, max(last.end, span.end), best.kind, best.priority)
        else:
            merged.append(span)
    return merged


def scrub_text(text: str, settings: ScrubSettings | None = None) -> ScrubResult:
    """Replace secrets and PII in ``text`` with typed placeholders; idempotent on its own output."""
    settings = settings or ScrubSettings()
    spans = _merge(_collect_spans(text, settings))
    if not spans:
        return ScrubResult(text, {})
    parts: list[str] = []
    counts: dict[str, int] = {}
    pos = 0
    for span in spans:
        parts.append(text[pos:span.start])
        parts.append(placeholder(span.kind))
        counts[span.kind] = counts.get(span.kind, 0) + 1
        pos = span.end
    parts.append(text[pos:])
    return ScrubResult("".join(parts), counts)


# --- files ---------------------------------------------------------------------------------------------------
class ScrubInputError(ValueError):
    """SRC/DST that cannot be used; the message names the path and what to do."""


@dataclass
class ScrubReport:
    """What ``scrub_tree`` did: redactions by type, files written, files skipped by reason."""

    counts: dict[str, int] = field(default_factory=dict)
    files_written: int = 0
    files_skipped: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    bytes_read: int = 0
    seconds: float = 0.0

    def skip(self, rel: str, reason: str) -> None:
        self.files_skipped[reason] = self.files_skipped.get(reason, 0) + 1
        self.skipped.append((rel, reason))


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _check_paths(src: Path, dst: Path) -> tuple[Path, Path]:
    if not src.exists():
        raise ScrubInputError(f"source {src} does not exist; pass an existing file or directory")
    src_r, dst_r = src.resolve(), dst.resolve()
    if src.is_dir() and _is_within(dst_r, src_r):
        raise ScrubInputError(f"destination {dst} is inside the source {src}; choose a directory outside it")
    if _is_within(src_r, dst_r):
        raise ScrubInputError(f"source {src} is inside the destination {dst}; choose a separate destination")
    if dst.exists() and not dst.is_dir():
        raise ScrubInputError(f"destination {dst} exists and is not a directory; pass a directory path")
    return src_r, dst_r


def list_source_files(src: Path) -> list[tuple[Path, str]]:
    """(absolute path, path relative to ``src``) of every file under ``src`` (or ``src`` itself), sorted;
    version-control directories are not descended into."""
    if src.is_file():
        return [(src, src.name)]
    files: list[tuple[Path, str]] = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            files.append((path, path.relative_to(src).as_posix()))
    return files


def _read_text(path: Path) -> tuple[str | None, str | None, int]:
    """(text, skip reason, bytes): the same text/binary/encoding rules as the ingest stage (``decode_blob``);
    unreadable files and symlinks are skipped with a reason too, never raised."""
    if path.is_symlink():
        return None, "symlink", 0
    try:
        data = path.read_bytes()
    except OSError:
        return None, "unreadable", 0
    text, reason = decode_blob(data)
    return text, reason, len(data)


def scrub_tree(src: Path, dst: Path, settings: ScrubSettings | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> ScrubReport:
    """Scrub a file or a directory tree ``src`` into ``dst`` (a directory), keeping relative paths.

    A file ``src`` is written to ``dst/<its name>``. Binary, non-UTF-8, unreadable files and symlinks are
    skipped and counted by reason. ``progress(done, total, relative_path)`` is called after each file.
    Raises ``ScrubInputError`` when ``src`` is missing or ``src``/``dst`` overlap.
    """
    settings = settings or ScrubSettings()
    src_r, dst_r = _check_paths(Path(src), Path(dst))
    started = time.perf_counter()
    report = ScrubReport()
    files = list_source_files(src_r)
    for done, (path, rel) in enumerate(files, start=1):
        text, reason, size = _read_text(path)
        report.bytes_read += size
        if text is None:
            report.skip(rel, reason or "unreadable")
        else:
            result = scrub_text(text, settings)
            target = dst_r / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # bytes, not write_text: keeps \r\n line endings exactly as they were
                target.write_bytes(result.text.encode("utf-8"))
            except OSError:
                report.skip(rel, "unwritable")
            else:
                report.files_written += 1
                for kind, n in result.counts.items():
                    report.counts[kind] = report.counts.get(kind, 0) + n
        if progress is not None:
            progress(done, len(files), rel)
    report.seconds = time.perf_counter() - started
    return report
