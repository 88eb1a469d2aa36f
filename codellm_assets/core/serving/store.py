"""The metrics and feedback store: every served request, IDE feedback, routes, API keys, shadow results.

SQLAlchemy 2 Core over SQLite in WAL mode by default (readers never wait for the writer, several
processes may share the file: the gateway writes, `codellm keys` and the Dagster sensors read) or
Postgres by URL. Writes never block the request path: ``record_*`` put a row on a bounded queue that one
background thread drains in batches (one transaction per batch). ``flush()`` waits until everything
queued so far is written; ``close()`` drains the queue and stops the thread (the gateway calls it on
graceful shutdown). When the queue is full a row is dropped and counted (``dropped``) rather than
stalling the event loop. Times are naive UTC. Text is scrubbed before it is written, and rows older than
the retention are deleted by ``delete_older_than`` (see :mod:`~codellm_assets.core.serving.store_hygiene`).
API keys: :mod:`~codellm_assets.core.serving.store_keys`.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from codellm_assets.core.serving import store_hygiene
from codellm_assets.core.serving.routes import SLOTS, Route, RoutesChanged, validate_routes
from codellm_assets.core.serving.store_keys import KEY_PREFIX as KEY_PREFIX
from codellm_assets.core.serving.store_keys import PREFIX_LEN as PREFIX_LEN
from codellm_assets.core.serving.store_keys import ApiKey as ApiKey
from codellm_assets.core.serving.store_keys import ApiKeyStore
from codellm_assets.core.serving.store_queries import feedback_counts, last_outcomes, p95_latency, p95_latency_per_token
from codellm_assets.core.serving.store_schema import (
    ERROR_STATUSES,
    create_tables,
    feedback_t,
    make_engine,
    requests_t,
    routes_t,
    shadow_t,
    utcnow,
)
from codellm_assets.settings import ScrubSettings

log = logging.getLogger(__name__)

_STOP = object()
_BATCH_MAX = 500
_RECENT_MAX = 50_000                 # completion ids remembered in memory for feedback look-ups


def _naive_utc(t: datetime | None) -> datetime | None:
    if t is None or t.tzinfo is None:
        return t
    return t.astimezone(UTC).replace(tzinfo=None)


@dataclass
class RequestRecord:
    """One served request (or one failed canary attempt). ``status``: ok | error | timeout | cancelled."""

    id: str
    slot: str
    version: str
    status: str = "ok"
    user: str | None = None
    team: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    prompt: str | None = None
    completion: str | None = None
    time: datetime = field(default_factory=utcnow)
    risk_score: float | None = None
    buggy: bool | None = None
    syntax_error: bool | None = None
    protocol: str | None = None      # the client's wire shape: openai | tabby | llamacpp | fim
    raw_prefix: str | None = None       # the IDE's own text (completions), kept apart from the rendered prompt
    raw_suffix: str | None = None
    repo: str | None = None             # the configured repo the request named (None: none, or unknown)
    context_chunks: int | None = None   # repository-context snippets put before the prompt
    context_tokens: int | None = None   # ... and their length in tokens (characters without a tokenizer)


@dataclass
class ShadowResult:
    completion_id: str
    served_version: str
    shadow_version: str
    served_latency_s: float | None = None
    shadow_latency_s: float | None = None
    similarity: float | None = None
    risk_score: float | None = None
    buggy: bool | None = None
    error: str | None = None
    time: datetime = field(default_factory=utcnow)


@dataclass
class WindowStats:
    """Aggregates over a window. Rates whose denominator is empty are None (no data, not zero):
    buggy/syntax rates over assessed completions, acceptance over accept+modify+reject feedback."""

    requests: int
    errors: int
    error_rate: float
    p95_latency_s: float
    buggy_code_rate: float | None
    syntax_error_rate: float | None
    acceptance_rate: float | None
    feedback_events: int
    distinct_users: int
    assessed: int = 0
    p95_latency_per_token_s: float | None = None   # latency / completion tokens; None: no token counts


class Store(ApiKeyStore):
    """See the module docstring. ``Store(url)``; one instance per process. ``scrub``: the scrubber's settings
    for the text it keeps (default: the scrubber's defaults)."""

    def __init__(self, url: str, *, queue_size: int = 100_000, linger_s: float = 0.02,
                 scrub: ScrubSettings | None = None) -> None:
        self.url = url
        self.scrub = scrub or ScrubSettings()
        self.linger_s = linger_s      # gather rows this long per batch: fewer wake-ups and transactions
        self.engine = make_engine(url)
        create_tables(self.engine)
        self.dropped = 0
        self.write_errors = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._run_writer, name="store-writer", daemon=True)
        self._writer.start()

    # ---- writes (queued) ----------------------------------------------------------------------------
    def record_request(self, rec: RequestRecord) -> None:
        """Queue one request row; also remembered in memory so feedback can find it before it is written."""
        row = dict(rec.__dict__)          # flat dataclass: a shallow copy (asdict deep-copies, slowly)
        row["time"] = _naive_utc(rec.time)
        row["prompt_hash"] = hashlib.sha256((rec.prompt or "").encode()).hexdigest() if rec.prompt else None
        with self._recent_lock:
            self._recent[rec.id] = {"version": rec.version, "slot": rec.slot, "user": rec.user,
                                    "team": rec.team, "status": rec.status}
            while len(self._recent) > _RECENT_MAX:
                self._recent.popitem(last=False)
        self._put(("insert", requests_t, row))

    def record_assessment(self, completion_id: str, risk_score: float, buggy: bool, syntax_error: bool) -> None:
        """Queue the detector's verdict for a recorded request."""
        self._put(("update", completion_id, {"risk_score": float(risk_score), "buggy": bool(buggy),
                                             "syntax_error": bool(syntax_error)}))

    def record_feedback(self, completion_id: str, event: str, *, final_code: str | None = None,
                        reason: str | None = None, elapsed_ms: int | None = None,
                        survival_after_s: int | None = None, survival_fraction: float | None = None,
                        user: str | None = None, version: str | None = None,
                        time: datetime | None = None, api_key: str | None = None) -> None:
        """Queue one feedback event (view | accept | reject | modify); ``api_key``: the posting key's prefix."""
        self._put(("insert", feedback_t, {
            "completion_id": completion_id, "time": _naive_utc(time) or utcnow(), "event": event,
            "final_code": final_code, "reason": reason, "elapsed_ms": elapsed_ms,
            "survival_after_s": survival_after_s, "survival_fraction": survival_fraction,
            "user": user, "version": version, "api_key": api_key}))

    def record_shadow(self, result: ShadowResult) -> None:
        row = asdict(result)
        row["time"] = _naive_utc(result.time)
        row["latency_diff_s"] = (result.shadow_latency_s - result.served_latency_s
                                 if result.shadow_latency_s is not None and result.served_latency_s is not None
                                 else None)
        self._put(("insert", shadow_t, row))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row queued so far is written. False if ``timeout`` passed first."""
        if timeout is None:
            self._queue.join()
            return True
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drain the queue, stop the writer thread, release connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)          # blocking put: the stop marker must not be dropped
        self._writer.join()
        self.engine.dispose()

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("the store is closed")
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("store queue full: %d rows dropped so far", self.dropped)

    def _run_writer(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not _STOP and self.linger_s:
                time.sleep(self.linger_s)
            while len(batch) < _BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            items = [b for b in batch if b is not _STOP]
            try:
                if items:
                    self._write_batch(store_hygiene.scrub_items(items, self.scrub))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(items) != len(batch):
                return

    def _write_batch(self, items: list[Any]) -> None:
        for attempt in range(6):
            try:
                with self.engine.begin() as conn:
                    _apply(conn, items)
                return
            except sa.exc.OperationalError as e:     # database locked / connection lost: retry
                log.warning("store write failed (attempt %d): %s", attempt + 1, e)
                time.sleep(0.05 * 2 ** attempt)
            except sa.exc.SQLAlchemyError:
                break
        for item in items:                           # isolate the bad row, keep the rest
            try:
                with self.engine.begin() as conn:
                    _apply(conn, [item])
            except sa.exc.SQLAlchemyError as e:
                self.write_errors += 1
                log.error("store: row not written (%s): %s", item[0], e)

    # ---- routes -------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        """The routing table, production first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(routes_t)).mappings().all()
        out = [Route(slot=r["slot"], version=r["version"], base_model_path=r["base_model_path"],
                     adapter_path=r["adapter_path"], weight=r["weight"], endpoint=r["endpoint"]) for r in rows]
        return sorted(out, key=lambda r: SLOTS.index(r.slot) if r.slot in SLOTS else 99)

    def set_routes(self, routes: list[Route], *, expected: list[Route] | None = None) -> None:
        """Replace the whole routing table in one transaction (validated first; ValueError if unusable).

        Compare-and-set: with ``expected`` (the table as the caller read it) the replacement happens only if
        the table is still exactly that, else ``RoutesChanged`` — a sensor deciding on a stale table must
        not undo a deployment that landed meanwhile."""
        validate_routes(routes)
        now = utcnow()
        with self.engine.begin() as conn:
            if expected is not None:
                if conn.dialect.name == "postgresql":   # serialize read-compare-write against other writers
                    conn.execute(sa.text("LOCK TABLE routes IN SHARE ROW EXCLUSIVE MODE"))
                current = _route_set(conn.execute(sa.select(routes_t)).mappings().all())
                if current != _route_set([asdict(r) for r in expected]):
                    raise RoutesChanged("the routing table changed since it was read; re-read it and decide again")
            conn.execute(sa.delete(routes_t))
            if routes:
                conn.execute(sa.insert(routes_t), [{**asdict(r), "updated": now} for r in routes])

    # ---- reads --------------------------------------------------------------------------------------
    def completion_info(self, completion_id: str) -> dict[str, Any] | None:
        """version/slot/user/team/status of a served completion, or None if unknown."""
        with self._recent_lock:
            hit = self._recent.get(completion_id)
        if hit is not None:
            return dict(hit)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_t.c.version, requests_t.c.slot, requests_t.c.user,
                                         requests_t.c.team, requests_t.c.status)
                               .where(requests_t.c.id == completion_id)).mappings().first()
        return dict(row) if row else None

    def request(self, completion_id: str) -> dict[str, Any] | None:
        """The full stored row of one request (after ``flush()``), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_t).where(requests_t.c.id == completion_id)).mappings().first()
        return dict(row) if row else None

    def window_stats(self, slot: str | None = None, version: str | None = None,
                     since: datetime | None = None) -> WindowStats:
        """Request, error, latency, detector and feedback aggregates for a slot/version since a time."""
        since = _naive_utc(since)
        conds = [c for c in (requests_t.c.slot == slot if slot else None,
                             requests_t.c.version == version if version else None,
                             requests_t.c.time >= since if since else None) if c is not None]
        is_error = requests_t.c.status.in_(ERROR_STATUSES)
        with self.engine.connect() as conn:
            n, errors, assessed, buggy, syntax, users = conn.execute(sa.select(
                sa.func.count(), sa.func.sum(sa.case((is_error, 1), else_=0)),
                sa.func.count(requests_t.c.risk_score),
                sa.func.sum(sa.case((requests_t.c.buggy.is_(True), 1), else_=0)),
                sa.func.sum(sa.case((requests_t.c.syntax_error.is_(True), 1), else_=0)),
                sa.func.count(sa.distinct(requests_t.c.user))).where(*conds)).one()
            p95 = p95_latency(conn, conds)
            p95_per_token = p95_latency_per_token(conn, conds)
            events = feedback_counts(conn, slot, version, since)
            judged_events = last_outcomes(conn, slot, version, since)
        errors, buggy, syntax = int(errors or 0), int(buggy or 0), int(syntax or 0)
        judged = sum(judged_events.values())   # one outcome per completion: its last accept/modify/reject
        return WindowStats(
            requests=n, errors=errors, error_rate=errors / n if n else 0.0, p95_latency_s=p95,
            buggy_code_rate=buggy / assessed if assessed else None,
            syntax_error_rate=syntax / assessed if assessed else None,
            acceptance_rate=(judged_events.get("accept", 0) + judged_events.get("modify", 0)) / judged
            if judged else None,
            feedback_events=sum(events.values()), distinct_users=users, assessed=assessed,
            p95_latency_per_token_s=p95_per_token)

    def feedback_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback_t)).scalar_one())

    def last_feedback_id(self) -> int:
        """The highest feedback id (0 when there is none): a cheap data version for the feedback asset."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(feedback_t.c.id))).scalar_one() or 0)

    def feedback_examples(self, after_id: int = 0, events: Iterable[str] = ("accept", "modify"),
                          limit: int | None = None) -> list[dict[str, Any]]:
        """Feedback rows with id > ``after_id`` joined to their request: prompt, completion, raw_prefix,
        raw_suffix, final_code, event, version, feedback_id, completion_id, api_key, team, time; oldest first."""
        q = (sa.select(requests_t.c.prompt, requests_t.c.completion, requests_t.c.raw_prefix,
                       requests_t.c.raw_suffix, feedback_t.c.final_code,
                       feedback_t.c.event, sa.func.coalesce(feedback_t.c.version, requests_t.c.version)
                       .label("version"), feedback_t.c.id.label("feedback_id"), feedback_t.c.completion_id,
                       feedback_t.c.api_key, requests_t.c.team, feedback_t.c.time)
             .join(requests_t, requests_t.c.id == feedback_t.c.completion_id)
             .where(feedback_t.c.id > after_id, feedback_t.c.event.in_(list(events)))
             .order_by(feedback_t.c.id))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def delete_older_than(self, cutoff: datetime) -> dict[str, int]:
        """Retention: delete request, feedback and shadow rows older than ``cutoff``; counts per table."""
        return store_hygiene.delete_older_than(self.engine, _naive_utc(cutoff))

    def shadow_results(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            q = sa.select(shadow_t).order_by(shadow_t.c.id.desc()).limit(limit)
            return [dict(r) for r in conn.execute(q).mappings().all()]


# ---- helpers -----------------------------------------------------------------------------------------

def _route_set(rows) -> set[tuple]:
    return {(r["slot"], r["version"], r["base_model_path"], r["adapter_path"], int(r["weight"]), r["endpoint"])
            for r in rows}


def _apply(conn: sa.Connection, items: list[Any]) -> None:
    """Inserts grouped per table (in queue order), then updates: an update's row is in this batch or earlier."""
    inserts: dict[str, tuple[sa.Table, list[dict[str, Any]]]] = {}
    updates = []
    for item in items:
        if item[0] == "insert":
            inserts.setdefault(item[1].name, (item[1], []))[1].append(item[2])
        else:
            updates.append({"b_id": item[1], **item[2]})
    for table, rows in inserts.values():
        conn.execute(sa.insert(table), rows)
    for values in updates:   # few per batch; grouped by column set they could be executemany'd
        conn.execute(sa.update(requests_t).where(requests_t.c.id == values.pop("b_id")).values(**values))
