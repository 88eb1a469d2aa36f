"""What the store keeps about people's code: scrubbed text only, and only for ``monitoring.retention_days``.

Prompts, completions, the IDE's prefix/suffix, error texts and feedback code are scrubbed (the same
``scrub_text`` as the corpus) in the store's writer thread, off the request path, before any row is
written. ``delete_older_than`` is the retention job's work: requests, feedback and shadow results older
than the cutoff are deleted.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from codellm_assets.core.data.scrub.scrubber import scrub_text
from codellm_assets.core.serving.store_schema import feedback_t, requests_t, shadow_t
from codellm_assets.settings import ScrubSettings

log = logging.getLogger(__name__)
# free text that may carry what a developer typed, per table
TEXT_COLUMNS = {"requests": ("prompt", "completion", "raw_prefix", "raw_suffix", "error"),
                "feedback": ("final_code", "reason"), "shadow_results": ("error",)}
RETAINED_TABLES = (requests_t, feedback_t, shadow_t)


def scrub_row(table: str, row: dict[str, Any], settings: ScrubSettings) -> dict[str, Any]:
    """A copy of ``row`` with its free-text columns scrubbed (rows of other tables come back unchanged)."""
    columns = [c for c in TEXT_COLUMNS.get(table, ()) if row.get(c)]
    if not columns:
        return row
    out = dict(row)
    for c in columns:
        try:
            out[c] = scrub_text(out[c], settings).text
        except Exception:  # noqa: BLE001 - fail closed: text that could not be scrubbed is not kept
            log.exception("store: could not scrub %s.%s; not stored", table, c)
            out[c] = None
    return out


def scrub_items(items: list[Any], settings: ScrubSettings) -> list[Any]:
    """The writer's queue items with inserted rows scrubbed (updates carry only numbers and flags)."""
    return [(kind, table, scrub_row(table.name, row, settings)) if kind == "insert" else (kind, table, row)
            for kind, table, row in items]


def delete_older_than(engine: sa.Engine, cutoff: datetime) -> dict[str, int]:
    """Delete request, feedback and shadow rows older than ``cutoff`` (naive UTC); rows deleted per table."""
    deleted = {}
    with engine.begin() as conn:
        for table in RETAINED_TABLES:
            res = conn.execute(sa.delete(table).where(table.c.time < cutoff))
            deleted[table.name] = int(res.rowcount or 0)
    return deleted
