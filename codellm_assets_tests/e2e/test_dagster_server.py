"""The code location served by a real `dagster dev`: sensors on by default, a materialization launched
through GraphQL succeeds, and a leaked secret fails the blocking check (the run fails, nothing flows on)."""

from __future__ import annotations

import time

import pytest

from codellm_assets_tests.e2e.conftest import (
    LOCATION,
    REPO_SELECTOR,
    REPOSITORY,
    TEST_PARTITIONS,
    DagsterDevServer,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SENSORS = """
query($sel: RepositorySelector!) {
  sensorsOrError(repositorySelector: $sel) {
    __typename
    ... on Sensors { results { name sensorType sensorState { status } } }
    ... on PythonError { message }
  }
}"""

SENSOR_TICKS = """
query($sel: SensorSelector!) {
  sensorOrError(sensorSelector: $sel) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 20) { status runIds error { message stack } } } }
  }
}"""

MATERIALIZATIONS = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 20) {
        runId partition
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}"""

RUNS = """
query {
  runsOrError(limit: 50) {
    __typename ... on Runs { results { runId status tags { key value } } }
  }
}"""


def _metadata(entries: list[dict]) -> dict:
    return {e["label"]: e.get("intValue") for e in entries}


def _materialization(server: DagsterDevServer, asset: str, run_id: str, partition: str) -> dict | None:
    data = server.graphql(MATERIALIZATIONS, {"key": {"path": [asset]}})["assetOrError"]
    assert data["__typename"] == "Asset", f"{asset}: {data}"
    return next((m for m in data["assetMaterializations"]
                 if m["runId"] == run_id and m["partition"] == partition), None)


def test_every_sensor_is_running_by_default(dagster_server: DagsterDevServer):
    data = dagster_server.graphql(SENSORS, {"sel": REPO_SELECTOR})["sensorsOrError"]
    assert data["__typename"] == "Sensors", data
    statuses = {s["name"]: s["sensorState"]["status"] for s in data["results"]}
    assert {"git_heads_sensor", "codellm_automation"} <= set(statuses), statuses
    assert {name: st for name, st in statuses.items() if st != "RUNNING"} == {}
    automation = next(s for s in data["results"] if s["name"] == "codellm_automation")
    assert automation["sensorType"] == "AUTO_MATERIALIZE"  # what Dagster calls a declarative-automation sensor


def test_graphql_launch_of_clean_partition_succeeds(dagster_server: DagsterDevServer):
    run_id, status = dagster_server.materialize_partition("clean")
    assert status == "SUCCESS", dagster_server.run_errors(run_id)
    snap = _materialization(dagster_server, "repo_snapshots", run_id, "clean")
    scrubbed = _materialization(dagster_server, "scrubbed_corpus", run_id, "clean")
    assert snap and scrubbed, "the run succeeded but recorded no materialization for partition 'clean'"
    assert _metadata(snap["metadataEntries"])["files"] == 3
    # The planted e-mail address was redacted (that rule is on; only aws_access_key is off).
    assert _metadata(scrubbed["metadataEntries"])["redactions_total"] >= 1
    checks = dagster_server.check_executions("scrubbed_corpus", "no_leftover_secrets", "clean")
    assert [c["status"] for c in checks if c["runId"] == run_id] == ["SUCCEEDED"]
    schema = dagster_server.check_executions("repo_snapshots", "repo_snapshots_schema", "clean")
    assert [c["status"] for c in schema if c["runId"] == run_id] == ["SUCCEEDED"]


def test_leaked_key_fails_the_blocking_check(dagster_server: DagsterDevServer):
    run_id, status = dagster_server.materialize_partition("leaky")
    checks = [c for c in dagster_server.check_executions("scrubbed_corpus", "no_leftover_secrets", "leaky")
              if c["runId"] == run_id]
    assert [c["status"] for c in checks] == ["FAILED"], (status, dagster_server.run_errors(run_id))
    evaluation = checks[0]["evaluation"]
    assert evaluation["success"] is False and evaluation["severity"] == "ERROR"
    assert _metadata(evaluation["metadataEntries"])["leftovers"] >= 1
    # A failed blocking check fails its step, hence the run.
    assert status == "FAILURE"
    # The other stages of that partition did materialize: the failure is the check's alone.
    assert _materialization(dagster_server, "scrubbed_corpus", run_id, "leaky") is not None


ALL_SENSORS = ("git_heads_sensor", "codellm_automation", "check_alert_sensor", "run_failure_alert",
               "quality_monitor", "canary_guard")


def _sensor_ticks(server: DagsterDevServer, sensor: str) -> list[dict]:
    sel = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}
    data = server.graphql(SENSOR_TICKS, {"sel": sel})["sensorOrError"]
    assert data["__typename"] == "Sensor", f"{sensor}: {data}"
    return [t for t in data["sensorState"]["ticks"] if t["status"] != "STARTED"]


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def test_sensors_tick_cleanly_and_ingest_each_repo_on_their_own(dagster_server: DagsterDevServer):
    """With nothing but the server started, the default-on git_heads_sensor requests one run per repo
    (default executor: a process per step) and every sensor completes a tick without an error."""
    deadline = time.monotonic() + 120
    while True:
        runs = {_tag(r, "dagster/partition"): r for r in dagster_server.graphql(RUNS)["runsOrError"]["results"]
                if _tag(r, "codellm/reason")}
        ticks = {s: _sensor_ticks(dagster_server, s) for s in ALL_SENSORS}
        if (set(TEST_PARTITIONS) <= set(runs) and all(ticks.values())) or time.monotonic() > deadline:
            break
        time.sleep(2)
    failed = {s: [t["error"] for t in tt if t["status"] == "FAILURE"] for s, tt in ticks.items()}
    assert {s: e for s, e in failed.items() if e} == {}, "sensors failed on a tick"
    assert [s for s, tt in ticks.items() if not tt] == [], "sensors that never completed a tick in 120 s"
    assert sorted(runs) == sorted(TEST_PARTITIONS), "git_heads_sensor did not request one run per repo"
    assert {_tag(r, "codellm/reason") for r in runs.values()} == {"new repo"}
    outcome = {p: dagster_server.wait_for_run(r["runId"]) for p, r in runs.items()}
    assert outcome == {"clean": "SUCCESS", "leaky": "FAILURE"}, {
        p: dagster_server.run_errors(r["runId"]) for p, r in runs.items()}
