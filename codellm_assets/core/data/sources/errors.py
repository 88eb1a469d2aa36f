"""Typed errors of the source connectors: each names the source (= the Dagster partition), the URL and the fix."""

from __future__ import annotations


class SourceError(RuntimeError):
    """A source that could not be read; ``source`` is its name in settings (and its partition key)."""

    def __init__(self, source: str, message: str, *, url: str | None = None):
        self.source, self.url = source, url
        super().__init__(f"source '{source}' (partition '{source}'): {message}" + (f" [{url}]" if url else ""))


class SourceAuthError(SourceError):
    """401 / 403 (not a rate limit), or no token in the environment: the fix is the variable named in it."""


class SourceFormatError(SourceError):
    """A reply that is not the JSON shape the API documents (a proxy's HTML page, a truncated body)."""


class SourceHTTPError(SourceError):
    """Any other refusal, or retries exhausted (rate limit, 5xx, timeouts)."""
