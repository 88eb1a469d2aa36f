"""The alert sensor on real check evaluations: one alert per failure, a recovery notice, a broken channel
logged without stopping the sensor. The receiver is a real HTTP server on loopback."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from codellm_assets.defs import checks, monitoring
from codellm_assets.defs.ingest import SNAPSHOT_SCHEMA
from codellm_assets_tests.integration.conftest import resources_for, write_config


@dg.asset(name="repo_snapshots", partitions_def=dg.DynamicPartitionsDefinition(name="repos"))
def fake_snapshots(context) -> pl.DataFrame:
    """Stands in for the real asset so the test controls what the (real) schema check sees."""
    bad = context.run.tags.get("bad") == "1"
    row = {"repo": "r", "branch": "main", "commit": "c" * 40, "path": None if bad else "a.py", "language": "python",
           "bytes": 10, "content": "x = 1\n", "blob_sha": "b" * 40}
    return pl.DataFrame([row], schema=SNAPSHOT_SCHEMA)


def test_alerts_once_per_failure_and_on_recovery(tmp_path, instance, webhook_receiver):
    url, bodies = webhook_receiver
    config = write_config(tmp_path, [], alerts={"webhook_url": url, "ui_base_url": "http://127.0.0.1:3000"})
    resources = resources_for(config)
    instance.add_dynamic_partitions("repos", ["r"])
    defs = dg.Definitions(assets=[fake_snapshots], asset_checks=[checks.repo_snapshots_schema],
                          sensors=[monitoring.check_alert_sensor], resources=resources)
    repo_def = defs.get_repository_def()

    def materialize(bad: bool):
        dg.materialize([fake_snapshots, checks.repo_snapshots_schema], instance=instance, resources=resources,
                       partition_key="r", tags={"bad": "1" if bad else "0"}, raise_on_error=False)

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor,
                                     repository_def=repo_def) as ctx:
            monitoring.check_alert_sensor(ctx)
            return ctx.cursor

    cursor = tick(None)
    assert bodies == []
    materialize(bad=True)
    cursor = tick(cursor)
    assert len(bodies) == 1
    alert = bodies[0]["codellm"]
    assert alert["kind"] == "check_failed" and alert["check"] == "repo_snapshots_schema"
    assert alert["partition"] == "r" and alert["figures"]["failed_expectations"] == 1
    assert alert["run_url"].startswith("http://127.0.0.1:3000/runs/")
    assert tick(cursor) == cursor and len(bodies) == 1   # the same evaluation never alerts twice
    materialize(bad=True)
    cursor = tick(cursor)
    assert len(bodies) == 2                       # a new failed evaluation: its own alert
    materialize(bad=False)
    cursor = tick(cursor)
    assert [b["codellm"]["kind"] for b in bodies] == ["check_failed", "check_failed", "check_recovered"]


def test_broken_channel_does_not_stop_the_sensor(tmp_path, instance, free_port):
    config = write_config(tmp_path, [], alerts={"webhook_url": f"http://127.0.0.1:{free_port}/down"})
    resources = resources_for(config)
    instance.add_dynamic_partitions("repos", ["r"])
    defs = dg.Definitions(assets=[fake_snapshots], asset_checks=[checks.repo_snapshots_schema],
                          sensors=[monitoring.check_alert_sensor], resources=resources)
    dg.materialize([fake_snapshots, checks.repo_snapshots_schema], instance=instance, resources=resources,
                   partition_key="r", tags={"bad": "1"}, raise_on_error=False)
    with dg.build_sensor_context(instance=instance, resources=resources,
                                 repository_def=defs.get_repository_def()) as ctx:
        monitoring.check_alert_sensor(ctx)          # logs the failed delivery, does not raise
        assert json.loads(ctx.cursor)["repo_snapshots:repo_snapshots_schema"]["last_id"] > 0


def _alert_tick(instance, resources, defs, cursor):
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor,
                                 repository_def=defs.get_repository_def()) as ctx:
        monitoring.check_alert_sensor(ctx)
        return ctx.cursor


def test_every_failed_partition_alerts_exactly_once_past_one_page(tmp_path, instance, webhook_receiver):
    """120 partitions fail between two ticks (more than a page of history, and than the 50 records the
    sensor used to read): 120 alerts, each partition once, and none again on the next tick."""
    url, bodies = webhook_receiver
    config = write_config(tmp_path, [], alerts={"webhook_url": url})
    resources = resources_for(config)
    defs = dg.Definitions(assets=[fake_snapshots], asset_checks=[checks.repo_snapshots_schema],
                          sensors=[monitoring.check_alert_sensor], resources=resources)
    cursor = _alert_tick(instance, resources, defs, None)
    for i in range(120):
        instance.report_runless_asset_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("repo_snapshots"), check_name="repo_snapshots_schema", passed=False,
            partition=f"repo-{i}"))
    cursor = _alert_tick(instance, resources, defs, cursor)
    partitions = [b["codellm"]["partition"] for b in bodies]
    assert sorted(partitions) == sorted(f"repo-{i}" for i in range(120))
    assert _alert_tick(instance, resources, defs, cursor) == cursor and len(bodies) == 120


def test_a_crashed_runs_planned_check_does_not_hold_back_alerts(tmp_path, instance, webhook_receiver):
    """A run that failed before its check ran leaves the check planned forever; a later failure of the
    same check must still alert on the next tick (it used to wait a day)."""
    url, bodies = webhook_receiver
    config = write_config(tmp_path, [], alerts={"webhook_url": url})
    resources = resources_for(config)
    instance.add_dynamic_partitions("repos", ["r"])

    @dg.asset(name="repo_snapshots", partitions_def=dg.DynamicPartitionsDefinition(name="repos"))
    def crashing_snapshots(context) -> pl.DataFrame:
        if context.run.tags.get("crash") == "1":
            raise RuntimeError("the run dies before the check")
        row = {"repo": "r", "branch": "main", "commit": "c" * 40, "path": None, "language": "python",
               "bytes": 10, "content": "x = 1\n", "blob_sha": "b" * 40}   # path None: the check fails
        return pl.DataFrame([row], schema=SNAPSHOT_SCHEMA)

    defs = dg.Definitions(assets=[crashing_snapshots], asset_checks=[checks.repo_snapshots_schema],
                          sensors=[monitoring.check_alert_sensor], resources=resources)
    cursor = _alert_tick(instance, resources, defs, None)
    for tags in ({"crash": "1"}, {}):
        dg.materialize([crashing_snapshots, checks.repo_snapshots_schema], instance=instance, resources=resources,
                       partition_key="r", tags=tags, raise_on_error=False)
    cursor = _alert_tick(instance, resources, defs, cursor)
    assert [b["codellm"]["kind"] for b in bodies] == ["check_failed"]
    assert json.loads(cursor)["repo_snapshots:repo_snapshots_schema"]["pending"] == []
