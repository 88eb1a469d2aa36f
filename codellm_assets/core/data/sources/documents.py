"""Documents from non-code sources, their stable keys, and the incremental merge.

A connector fetches *items* (a pull request, a merge request, a page, an issue), each with a version (its
``updated_at`` or version number), and turns each changed item into zero or more documents. A document's
identity is ``source:doc`` (stable across edits; its path ``source://source/doc``); ``doc_key`` adds the
version (``source:doc:version``) for lineage. Re-fetching an item replaces ALL its previous documents (an
edited comment replaces the old text, a deleted one disappears), so an edit never duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

DOCUMENT_LANGUAGE = "markdown"   # every document is rendered as Markdown (code in fenced blocks)


@dataclass(frozen=True)
class SourceDocument:
    source: str
    item: str            # the fetched unit: "pull/12", "mr/4", "page/123", "issue/ABC-1"
    item_version: str    # what says the item changed: updated_at, or the page's version number
    doc: str             # this document within the source: "pull/12/comment/345", "page/123"
    version: str         # this document's own version (a comment's updated_at, the page version)
    kind: str            # review_example | review_comment | page | issue
    title: str
    url: str
    updated_at: str      # ISO 8601, UTC
    content: str

    @property
    def doc_id(self) -> str:
        return f"{self.source}:{self.doc}"

    @property
    def doc_key(self) -> str:
        return f"{self.doc_id}:{self.version}"

    @property
    def path(self) -> str:
        return f"source://{self.source}/{self.doc}"

    def row(self, kind_of_source: str, snapshot: str) -> dict:
        """A row shaped like a repo_snapshots file row (+ the document columns): repo = the source, branch =
        its kind, commit = the snapshot this materialization made, language markdown."""
        data = self.content.encode()
        return {**asdict(self), "repo": self.source, "branch": kind_of_source, "commit": snapshot,
                "path": self.path, "language": DOCUMENT_LANGUAGE, "bytes": len(data),
                "blob_sha": hashlib.sha1(data).hexdigest(), "doc_id": self.doc_id, "doc_key": self.doc_key}


@dataclass
class FetchResult:
    """What one run got: the changed items' documents, every changed item's version (also those that now have
    no document), the new cursor, and request counts for the UI."""

    documents: list[SourceDocument] = field(default_factory=list)
    items: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None
    listed: int = 0
    unchanged: int = 0
    truncated: bool = False

    def admit(self, item: str, version: str, *, seen_at: str | None, known: dict[str, str],
              max_items: int | None) -> bool | None:
        """Whether to fetch ``item`` at ``version``: True (recorded as changed), False (unchanged since the
        last run: counted, skipped), None (``max_items`` reached: stop, the cursor stays where it got)."""
        self.listed += 1
        if known.get(item) == version:
            self.unchanged += 1
            self.saw(seen_at)
            return False
        if max_items and len(self.items) >= max_items:
            self.truncated = True
            return None
        self.items[item] = version
        return True

    def saw(self, updated_at: str | None) -> None:
        if updated_at and (self.cursor is None or parse_time(updated_at) > parse_time(self.cursor)):
            self.cursor = iso(parse_time(updated_at))


def parse_time(value: str) -> datetime:
    """GitHub's ``…Z``, GitLab's ``….123Z``, Jira's ``….000+0000`` and plain dates, as aware UTC datetimes."""
    when = datetime.fromisoformat(value.strip())
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def since_with_overlap(cursor: str | None, overlap_minutes: int) -> datetime | None:
    return None if cursor is None else parse_time(cursor) - timedelta(minutes=overlap_minutes)


def merge_documents(previous: Iterable[dict], result: FetchResult, kind_of_source: str, snapshot: str) -> list[dict]:
    """The source's documents after this run: previous rows of items NOT re-fetched, plus the new documents."""
    refetched = set(result.items)
    kept = [r for r in previous if r["item"] not in refetched]
    rows = kept + [d.row(kind_of_source, snapshot) for d in result.documents]
    return sorted(rows, key=lambda r: r["doc"])


def known_versions(previous: Iterable[dict]) -> dict[str, str]:
    """{item: item_version} of what is stored: an item listed again with the same version is not re-fetched."""
    return {r["item"]: r["item_version"] for r in previous}
