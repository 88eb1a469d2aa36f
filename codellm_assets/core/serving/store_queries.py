"""The aggregate queries behind :meth:`Store.window_stats` (portable SQL: SQLite and Postgres)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from codellm_assets.core.serving.store_schema import feedback_t, requests_t


def p95_latency(conn: sa.Connection, conds: list[Any]) -> float:
    have = conds + [requests_t.c.latency_s.is_not(None)]
    n = conn.execute(sa.select(sa.func.count()).select_from(requests_t).where(*have)).scalar_one()
    if not n:
        return 0.0
    rank = max(math.ceil(0.95 * n) - 1, 0)          # nearest-rank percentile, portable SQL
    q = sa.select(requests_t.c.latency_s).where(*have).order_by(requests_t.c.latency_s).offset(rank).limit(1)
    return float(conn.execute(q).scalar_one())


def p95_latency_per_token(conn: sa.Connection, conds: list[Any]) -> float | None:
    """Nearest-rank p95 of latency / generated tokens over requests that generated at least one."""
    have = conds + [requests_t.c.latency_s.is_not(None), requests_t.c.completion_tokens > 0]
    n = conn.execute(sa.select(sa.func.count()).select_from(requests_t).where(*have)).scalar_one()
    if not n:
        return None
    per_token = requests_t.c.latency_s / sa.cast(requests_t.c.completion_tokens, sa.Float)
    rank = max(math.ceil(0.95 * n) - 1, 0)
    return float(conn.execute(sa.select(per_token).where(*have).order_by(per_token).offset(rank).limit(1))
                 .scalar_one())


def last_outcomes(conn: sa.Connection, slot: str | None, version: str | None,
                   since: datetime | None) -> dict[str, int]:
    """accept/modify/reject counts, one per completion: its latest such event (by id) wins, so a client
    repeating "accept" (or changing its mind) counts once."""
    outcome = feedback_t.c.event.in_(("accept", "modify", "reject"))
    conds = [outcome]
    if version:
        conds.append(feedback_t.c.version == version)
    if since:
        conds.append(feedback_t.c.time >= since)
    last = sa.select(sa.func.max(feedback_t.c.id).label("id")).where(*conds)
    if slot:
        last = last.join(requests_t, requests_t.c.id == feedback_t.c.completion_id).where(requests_t.c.slot == slot)
    last = last.group_by(feedback_t.c.completion_id).subquery()
    q = (sa.select(feedback_t.c.event, sa.func.count()).join(last, last.c.id == feedback_t.c.id)
         .group_by(feedback_t.c.event))
    return {event: int(count) for event, count in conn.execute(q).all()}


def feedback_counts(conn: sa.Connection, slot: str | None, version: str | None,
                     since: datetime | None) -> dict[str, int]:
    q = sa.select(feedback_t.c.event, sa.func.count()).group_by(feedback_t.c.event)
    if slot:
        q = q.join(requests_t, requests_t.c.id == feedback_t.c.completion_id).where(requests_t.c.slot == slot)
    if version:
        q = q.where(feedback_t.c.version == version)
    if since:
        q = q.where(feedback_t.c.time >= since)
    return {event: int(count) for event, count in conn.execute(q).all()}
