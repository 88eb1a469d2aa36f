"""What the store keeps: scrubbed text only (before any row is written), an old store file upgraded in place,
and nothing older than monitoring.retention_days (the store_retention job on a real Dagster instance)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import dagster as dg

from codellm_assets.core.serving.store import RequestRecord, ShadowResult, Store, utcnow
from codellm_assets.defs import monitoring
from codellm_assets.settings import ScrubSettings, load_settings
from codellm_assets.testing.secrets_labelled import FakeSecrets
from codellm_assets_tests.integration.conftest import resources_for, write_config

F = FakeSecrets(21)
GITHUB = "ghp_" + F.chars(36)
AWS = "AKIA" + F.chars(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


def _raw_rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:            # read the file itself: what is on disk is what counts
        return conn.execute(sql).fetchall()


def test_text_is_scrubbed_before_it_is_stored(tmp_path):
    db = tmp_path / "store.db"
    with Store(f"sqlite:///{db}") as store:
        store.record_request(RequestRecord(
            id="cmpl-1", slot="production", version="base", prompt=f'<fim_prefix>TOKEN = "{GITHUB}"<fim_suffix>',
            completion=f'\nOWNER = "jane.doe@acme-corp.com"\nAWS = "{AWS}"\n', raw_prefix=f'TOKEN = "{GITHUB}"',
            raw_suffix="# ops@acme-corp.com\n", error=f"backend said {GITHUB}"))
        store.record_feedback("cmpl-1", "modify", final_code=f'AWS = "{AWS}"\n', reason=f"key {GITHUB}",
                              api_key="cl-abcdefgh")
        store.record_shadow(ShadowResult("cmpl-1", "base", "v2", error=f"failed with {GITHUB}"))
        store.flush()
    on_disk = repr(_raw_rows(db, "SELECT * FROM requests") + _raw_rows(db, "SELECT * FROM feedback")
                   + _raw_rows(db, "SELECT * FROM shadow_results"))
    for secret in (GITHUB, AWS, "jane.doe@acme-corp.com", "ops@acme-corp.com"):
        assert secret not in on_disk
    assert "<SECRET:github_token>" in on_disk and "<SECRET:aws_access_key>" in on_disk and "<EMAIL>" in on_disk
    prefix, suffix, key = _raw_rows(db, "SELECT r.raw_prefix, r.raw_suffix, f.api_key FROM requests r "
                                        "JOIN feedback f ON f.completion_id = r.id")[0]
    assert prefix == 'TOKEN = "<SECRET:github_token>"' and suffix == "# <EMAIL>\n" and key == "cl-abcdefgh"


def test_the_scrubber_settings_of_the_store_apply(tmp_path):
    db = tmp_path / "store.db"
    with Store(f"sqlite:///{db}", scrub=ScrubSettings(redact_emails=False)) as store:
        store.record_request(RequestRecord(id="cmpl-2", slot="production", version="base",
                                           prompt=f"# jane@acme-corp.com\nT = '{GITHUB}'\n"))
        store.flush()
    assert _raw_rows(db, "SELECT prompt FROM requests") == [("# jane@acme-corp.com\nT = '<SECRET:github_token>'\n",)]


def test_an_old_store_file_gets_the_new_columns(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:   # the tables as a store of the previous release wrote them
        conn.execute('CREATE TABLE requests (id VARCHAR(80) PRIMARY KEY, time DATETIME NOT NULL, "user" VARCHAR(200), '
                     "team VARCHAR(200), slot VARCHAR(20), version VARCHAR(200), latency_s FLOAT, prompt_tokens "
                     "INTEGER, completion_tokens INTEGER, status VARCHAR(20), error TEXT, prompt_hash VARCHAR(64), "
                     "prompt TEXT, completion TEXT, risk_score FLOAT, buggy BOOLEAN, syntax_error BOOLEAN)")
        conn.execute("CREATE TABLE feedback (id INTEGER PRIMARY KEY, completion_id VARCHAR(80) NOT NULL, time DATETIME "
                     "NOT NULL, event VARCHAR(20) NOT NULL, final_code TEXT, reason TEXT, elapsed_ms INTEGER, "
                     'survival_after_s INTEGER, survival_fraction FLOAT, "user" VARCHAR(200), version VARCHAR(200))')
        conn.execute("INSERT INTO requests (id, time, prompt) VALUES ('cmpl-old', '2026-01-01 00:00:00', 'x')")
    with Store(f"sqlite:///{db}") as store:
        store.record_request(RequestRecord(id="cmpl-new", slot="production", version="base", raw_prefix="def f():\n"))
        store.record_feedback("cmpl-new", "accept", api_key="cl-12345678")
        store.flush()
        assert store.write_errors == 0
        rows = {r["completion_id"]: r for r in store.feedback_examples()}
    assert rows["cmpl-new"]["raw_prefix"] == "def f():\n" and rows["cmpl-new"]["api_key"] == "cl-12345678"
    assert _raw_rows(db, "SELECT id FROM requests ORDER BY id") == [("cmpl-new",), ("cmpl-old",)]


def test_retention_job_deletes_only_rows_older_than_retention(tmp_path):
    config = write_config(tmp_path, [], monitoring={"retention_days": 30})
    settings = load_settings(config)
    now = utcnow()
    with Store(settings.store_url) as store:
        for cid, age_days in (("cmpl-old", 45), ("cmpl-edge", 29), ("cmpl-new", 0)):
            t = now - timedelta(days=age_days)
            store.record_request(RequestRecord(id=cid, slot="production", version="base", time=t))
            store.record_feedback(cid, "accept", time=t)
            store.record_shadow(ShadowResult(cid, "base", "v2", time=t))
        store.flush()
    with dg.instance_for_test() as instance:
        result = monitoring.store_retention_job.execute_in_process(instance=instance, resources=resources_for(config))
    assert result.success
    output = next(e for e in result.all_events if e.is_successful_output)
    assert output.event_specific_data.metadata["deleted"].value == {"requests": 1, "feedback": 1,
                                                                    "shadow_results": 1}
    with Store(settings.store_url) as store:
        assert store.request("cmpl-old") is None and store.request("cmpl-edge") is not None
        assert sorted(r["completion_id"] for r in store.feedback_examples()) == ["cmpl-edge", "cmpl-new"]
        assert {r["completion_id"] for r in store.shadow_results()} == {"cmpl-edge", "cmpl-new"}


def test_retention_schedule_is_daily_and_on_by_default():
    from codellm_assets.definitions import defs

    schedule = defs.get_schedule_def("store_retention_schedule")
    assert schedule.job_name == "store_retention" and schedule.cron_schedule == "17 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
