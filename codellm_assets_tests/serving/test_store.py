"""The metrics/feedback store on real SQLite files: the queued writer loses nothing under load, the
sensor queries compute what they claim, routes replace atomically, keys are hashed and revocable."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from codellm_assets.core.serving.routes import Route, validate_routes
from codellm_assets.core.serving.store import RequestRecord, ShadowResult, Store
from codellm_assets.core.serving.store_schema import metadata

PG_URL = os.environ.get("CODELLM_TEST_POSTGRES_URL")   # e.g. postgresql+psycopg2://postgres@127.0.0.1/db


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: SQLite in tmp, or the Postgres database in CODELLM_TEST_POSTGRES_URL (emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    # An external database when given, else the session's throw-away server (skips if PostgreSQL is absent).
    pg_url = PG_URL or request.getfixturevalue("postgres_server").replace("postgresql://", "postgresql+psycopg2://")
    engine = sa.create_engine(pg_url)
    metadata.drop_all(engine)
    engine.dispose()
    return pg_url


@pytest.fixture
def any_store(url: str) -> Iterator[Store]:
    s = Store(url)
    yield s
    s.close()


def _req(i: int, **kw: object) -> RequestRecord:
    base = {"id": f"cmpl-{i}", "slot": "production", "version": "base", "user": f"u{i % 3}", "team": "t",
            "latency_s": 0.1, "prompt": f"prompt {i}", "completion": f"completion {i}", "prompt_tokens": 3,
            "completion_tokens": 4}
    return RequestRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_wal_mode_and_tables(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'sub' / 'store.db'}")
    s.close()
    con = sqlite3.connect(tmp_path / "sub" / "store.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"requests", "feedback", "routes", "api_keys", "shadow_results"} <= tables


def test_writes_from_many_threads_are_all_stored_by_close(url: str) -> None:
    s = Store(url)

    def writer(t: int) -> None:
        for i in range(2500):
            n = t * 10_000 + i
            s.record_request(_req(n))
            if i % 5 == 0:
                s.record_feedback(f"cmpl-{n}", "accept", elapsed_ms=i)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s.close()                     # graceful shutdown drains the queue
    again = Store(url)
    assert again.window_stats().requests == 10_000
    assert again.feedback_count() == 2_000
    assert again.dropped == 0 and s.dropped == 0 and s.write_errors == 0
    again.close()


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}", queue_size=10)
    for i in range(5000):
        s.record_request(_req(i))
    s.flush()
    stored = s.window_stats().requests
    assert s.dropped > 0 and stored + s.dropped == 5000
    s.close()


def test_duplicate_row_is_isolated_and_the_rest_of_the_batch_kept(any_store: Store) -> None:
    store = any_store
    store.record_request(_req(1))
    store.flush()
    for i in (1, 2, 3):           # cmpl-1 again violates the primary key; 2 and 3 must survive
        store.record_request(_req(i))
    store.flush()
    assert store.window_stats().requests == 3
    assert store.write_errors == 1


def test_window_stats(any_store: Store) -> None:
    store = any_store
    old = datetime.now(UTC) - timedelta(hours=2)
    for i in range(20):           # canary: 2 errors, latencies 0.01..0.20, 1 buggy of 4 assessed
        store.record_request(_req(i, slot="canary", version="v2", latency_s=(i + 1) / 100,
                                  status="error" if i < 2 else "ok", user=f"dev{i % 4}"))
    for i in range(4):
        store.record_assessment(f"cmpl-{i}", 0.9 if i == 0 else 0.1, i == 0, i == 0)
    store.record_request(_req(100, status="cancelled"))
    store.record_request(_req(101, time=old))
    for cid, event in [("cmpl-5", "accept"), ("cmpl-6", "modify"), ("cmpl-7", "reject"), ("cmpl-8", "view"),
                       ("cmpl-100", "reject")]:
        store.record_feedback(cid, event, version="v2" if cid != "cmpl-100" else "base")
    store.flush()
    canary = store.window_stats(slot="canary")
    assert (canary.requests, canary.errors, canary.distinct_users, canary.assessed) == (20, 2, 4, 4)
    assert canary.error_rate == pytest.approx(0.1)
    assert canary.p95_latency_s == pytest.approx(0.19)          # nearest rank: 19th of 20
    assert canary.buggy_code_rate == pytest.approx(0.25) and canary.syntax_error_rate == pytest.approx(0.25)
    assert canary.acceptance_rate == pytest.approx(2 / 3)       # accept+modify over accept+modify+reject
    assert canary.feedback_events == 4
    prod = store.window_stats(slot="production", since=datetime.now(UTC) - timedelta(minutes=5))
    assert (prod.requests, prod.errors) == (1, 0)                # cancelled is not an error; old row excluded
    assert prod.buggy_code_rate is None and prod.acceptance_rate == 0.0
    assert store.window_stats(version="nope").requests == 0
    assert store.window_stats(version="nope").acceptance_rate is None


def test_feedback_examples_join_the_request(any_store: Store) -> None:
    store = any_store
    for i in range(3):
        store.record_request(_req(i))
    store.record_feedback("cmpl-0", "accept")
    store.record_feedback("cmpl-1", "modify", final_code="fixed()")
    store.record_feedback("cmpl-2", "reject")
    store.flush()
    assert store.feedback_count() == 3 and store.last_feedback_id() == 3
    rows = store.feedback_examples()
    assert [(r["prompt"], r["event"], r["final_code"], r["version"]) for r in rows] == [
        ("prompt 0", "accept", None, "base"), ("prompt 1", "modify", "fixed()", "base")]
    assert [r["feedback_id"] for r in store.feedback_examples(after_id=1)] == [2]
    assert [r["event"] for r in store.feedback_examples(events=("reject",))] == ["reject"]


def test_completion_info_before_and_after_the_write(url: str) -> None:
    s = Store(url)
    s.record_request(_req(7, version="v9", slot="canary"))
    assert s.completion_info("cmpl-7")["version"] == "v9"           # from memory, maybe not written yet
    s.close()
    other = Store(url)                                              # another process: from the database
    assert other.completion_info("cmpl-7")["slot"] == "canary"
    assert other.completion_info("cmpl-404") is None
    other.close()


def test_shadow_results(any_store: Store) -> None:
    store = any_store
    store.record_shadow(ShadowResult("cmpl-1", "base", "v3", served_latency_s=0.1, shadow_latency_s=0.3,
                                     similarity=0.5, risk_score=0.2, buggy=False))
    store.flush()
    (row,) = store.shadow_results()
    assert row["latency_diff_s"] == pytest.approx(0.2) and row["similarity"] == 0.5


ROUTES_OK = [Route("production", "base", "/m", None, 95), Route("canary", "v2", "/m", "/a", 5)]


@pytest.mark.parametrize("routes, error", [
    (ROUTES_OK, None),
    ([Route("production", "base", "/m", None, 100)], None),
    ([Route("production", "v1", "/m", None, 0), Route("canary", "v2", "/m", None, 100)], None),   # blue/green
    ([], None),
    ([Route("production", "base", "/m", None, 95)], "sum to 100"),
    ([Route("canary", "v2", "/m", None, 100)], "needs a 'production'"),
    ([Route("production", "a", "/m"), Route("production", "b", "/m")], "duplicated"),
    ([Route("blue", "a", "/m")], "not one of"),
    ([Route("production", "a", "/m", None, 101)], "0..100"),
    ([Route("production", "", "/m")], "required"),
])
def test_validate_routes(routes: list[Route], error: str | None) -> None:
    if error is None:
        validate_routes(routes)
    else:
        with pytest.raises(ValueError, match=error):
            validate_routes(routes)


def test_set_routes_replaces_atomically(any_store: Store) -> None:
    store = any_store
    store.set_routes(ROUTES_OK + [Route("shadow", "v3", "/m", "/b", 20, "http://x")])
    assert [r.slot for r in store.routes()] == ["production", "canary", "shadow"]
    with pytest.raises(ValueError):
        store.set_routes([Route("production", "v4", "/m", None, 90)])
    assert len(store.routes()) == 3                                 # a rejected table changes nothing
    store.set_routes([Route("production", "v2", "/m", "/a", 100)])  # blue/green: one transaction
    assert [(r.slot, r.version, r.weight) for r in store.routes()] == [("production", "v2", 100)]


def test_api_keys_hashed_listed_revoked(url: str) -> None:
    s = Store(url)
    key = s.create_api_key("bars")
    admin = s.create_api_key("ops", admin=True)
    assert s.verify_api_key(key) == "bars" and s.api_key_info(admin).admin
    for bad in ("", "nope", key + "x", key[:-1], "cl-" + "x" * 40):
        assert s.verify_api_key(bad) is None
    listed = s.list_api_keys()
    assert [r["prefix"] for r in listed] == [key[:11], admin[:11]]
    assert all(key not in str(r) for r in listed)
    with s.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT hash, salt FROM api_keys ORDER BY id")).all()
    assert all(key not in h and len(h) == 64 for h, _ in raw) and raw[0][1] != raw[1][1]
    assert s.revoke_api_key(key[:11]) == 1 and s.verify_api_key(key) is None
    assert s.revoke_api_key(key[:11]) == 0 and s.verify_api_key(admin) == "ops"
    with pytest.raises(ValueError):
        s.create_api_key("  ")
    s.close()


def test_routes_compare_and_set(any_store: Store) -> None:
    """A writer that decided on a stale table loses instead of undoing a deployment that landed meanwhile."""
    from codellm_assets.core.serving.routes import RoutesChanged

    v1 = [Route("production", "base", "/m/base", None, 95), Route("canary", "codellm/1", "/m/base", "/a/1", 5)]
    any_store.set_routes(v1)
    read = any_store.routes()
    v2 = [Route("production", "base", "/m/base", None, 95), Route("canary", "codellm/2", "/m/base", "/a/2", 5)]
    any_store.set_routes(v2)                                   # a new deployment lands
    promoted = [Route("production", "base", "/m/base", None, 75), Route("canary", "codellm/1", "/m/base", "/a/1", 25)]
    with pytest.raises(RoutesChanged):
        any_store.set_routes(promoted, expected=read)          # the guard's stale decision
    assert {r.version for r in any_store.routes()} == {"base", "codellm/2"}
    any_store.set_routes(promoted, expected=any_store.routes())   # decided on the current table: applies
    assert {r.slot: r.weight for r in any_store.routes()} == {"production": 75, "canary": 25}


def test_p95_latency_is_per_generated_token(any_store: Store) -> None:
    store = any_store
    for i in range(20):           # long completions (100 tokens, 4 s) and one slow short one (1 token, 3 s)
        long = i < 19
        store.record_request(_req(i, slot="canary", latency_s=4.0 if long else 3.0,
                                  completion_tokens=100 if long else 1))
    store.record_request(_req(50, slot="canary", latency_s=9.0, completion_tokens=0))  # no tokens: not per token
    store.flush()
    stats = store.window_stats(slot="canary")
    assert stats.p95_latency_per_token_s == pytest.approx(0.04)   # 19th of 20 rates: 4 s / 100
    assert stats.p95_latency_s == pytest.approx(4.0)
    assert store.window_stats(slot="production").p95_latency_per_token_s is None


def test_acceptance_counts_one_outcome_per_completion_last_event_wins(any_store: Store) -> None:
    store = any_store
    for i in range(3):
        store.record_request(_req(i, slot="canary", version="v2"))
    for _ in range(10):           # a client repeating "accept" for one completion counts once
        store.record_feedback("cmpl-0", "accept", version="v2")
    store.record_feedback("cmpl-1", "accept", version="v2")
    store.record_feedback("cmpl-1", "reject", version="v2")      # changed its mind: the last event wins
    store.record_feedback("cmpl-2", "reject", version="v2")
    store.record_feedback("cmpl-2", "view", version="v2")        # a view is no outcome
    store.flush()
    stats = store.window_stats(slot="canary", version="v2")
    assert stats.acceptance_rate == pytest.approx(1 / 3)
    assert stats.feedback_events == 14


def test_user_claims_column_is_added_to_an_existing_store(tmp_path: Path) -> None:
    """A store created before keys could vouch for users gains the column; old keys cannot."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE api_keys (id INTEGER PRIMARY KEY, team VARCHAR(200) NOT NULL, salt VARCHAR(64) "
                     "NOT NULL, hash VARCHAR(64) NOT NULL, prefix VARCHAR(20) NOT NULL, admin BOOLEAN NOT NULL, "
                     "created DATETIME NOT NULL, revoked DATETIME)")
        conn.execute("INSERT INTO api_keys VALUES (1, 'old', 's', 'h', 'cl-old', 0, '2026-01-01', NULL)")
    s = Store(f"sqlite:///{db}")
    try:
        proxy = s.create_api_key("ide-proxy", claims_users=True)
        assert s.api_key_info(proxy).claims_users
        assert [k["team"] for k in s.list_api_keys()] == ["old", "ide-proxy"]
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT claims_users FROM api_keys WHERE id = 1")).scalar_one() in (0, False)
    finally:
        s.close()
