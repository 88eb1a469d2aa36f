"""How long to wait before retrying a request: rate limits (429, 403 with rate-limit headers) and 5xx.

``Retry-After`` is honoured in both of its forms (delta-seconds and an HTTP-date); GitHub's and GitLab's reset
headers (epoch seconds) next; otherwise exponential backoff. Every wait is capped.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

RETRYABLE_5XX = frozenset({500, 502, 503, 504})


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    return value.strip() if isinstance(value, str) and value.strip() else None


def is_rate_limited(status: int, headers: Mapping[str, str]) -> bool:
    """429 always; 403 only with a rate-limit sign (GitHub answers both limits and bad scopes with 403)."""
    if status == 429:
        return True
    if status != 403:
        return False
    remaining = _header(headers, "x-ratelimit-remaining") or _header(headers, "ratelimit-remaining")
    return remaining == "0" or _header(headers, "retry-after") is not None


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: ``"5"`` or ``"Wed, 21 Oct 2026 07:28:00 GMT"``; None if absent or
    unreadable; a date in the past is 0."""
    if value is None:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _reset_seconds(headers: Mapping[str, str], now: float) -> float | None:
    reset = _header(headers, "x-ratelimit-reset") or _header(headers, "ratelimit-reset")
    if reset is None or not reset.isdigit():
        return None
    return max(0.0, float(reset) - now)


def retry_delay(status: int, headers: Mapping[str, str], attempt: int, *, base_s: float = 1.0,
                cap_s: float = 120.0, now: float | None = None) -> float | None:
    """Seconds to wait before retry number ``attempt`` (0-based), or None when the reply is not retryable."""
    now = time.time() if now is None else now
    if is_rate_limited(status, headers):
        told = retry_after_seconds(_header(headers, "retry-after"), now=now)
        if told is None:
            told = _reset_seconds(headers, now)
        wait = told if told is not None else base_s * 2 ** attempt
    elif status in RETRYABLE_5XX:
        wait = base_s * 2 ** attempt
    else:
        return None
    return min(wait, cap_s)
