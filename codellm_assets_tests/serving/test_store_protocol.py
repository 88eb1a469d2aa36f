"""The request log's ``protocol`` column: written per request, and added to a store created before it
existed (create_all never alters a table)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from codellm_assets.core.serving.store import RequestRecord, Store


def test_an_older_store_gets_the_protocol_column_and_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as c:       # the requests table as it was before the column (a subset suffices)
        c.execute(sa.text("CREATE TABLE requests (id VARCHAR(80) PRIMARY KEY, time DATETIME NOT NULL, "
                          "user VARCHAR(200), team VARCHAR(200), slot VARCHAR(20), version VARCHAR(200), "
                          "latency_s FLOAT, prompt_tokens INTEGER, completion_tokens INTEGER, status VARCHAR(20), "
                          "error TEXT, prompt_hash VARCHAR(64), prompt TEXT, completion TEXT, risk_score FLOAT, "
                          "buggy BOOLEAN, syntax_error BOOLEAN)"))
        c.execute(sa.text("INSERT INTO requests (id, time, slot, version, status) "
                          "VALUES ('cmpl-old', '2026-01-01 00:00:00', 'production', 'v1', 'ok')"))
    engine.dispose()
    with Store(url) as store:
        store.record_request(RequestRecord(id="cmpl-new", slot="production", version="v1", protocol="tabby"))
        store.flush()
        assert store.request("cmpl-new")["protocol"] == "tabby"
        assert store.request("cmpl-old")["protocol"] is None
        assert store.window_stats().requests == 2
    with Store(url) as again:       # the second open finds the column and leaves it be
        assert again.request("cmpl-new")["protocol"] == "tabby"
