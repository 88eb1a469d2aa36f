"""A failed eval gate does not ship through the real daemon (`dagster dev`: webserver + daemon, the
automation sensor on, as `make dev` runs it).

`codellm run` materializes everything up to the adapter (a tiny model wrecked by its learning rate, so
the gate fails); then the server starts, and once the automation sensor has ticked, eval_scores is
materialized in its own run (a UI re-run). The daemon then requests registration and deployment, and
registration refuses: no model version, no canary, however many ticks follow. (On the code before
issue 12 the same flow registers the failed challenger and puts it on the canary.)
"""

from __future__ import annotations

import shutil
import time

import pytest

from codellm_assets.core.serving.store import Store
from codellm_assets.runner import run_graph
from codellm_assets.settings import load_settings
from codellm_assets_tests.conftest import commit_files, git
from codellm_assets_tests.e2e.conftest import (
    LOCATION,
    PROJECT_ROOT,
    REPOSITORY,
    DagsterDevServer,
    dagster_dev,
)
from codellm_assets_tests.integration.conftest import write_config
from codellm_assets_tests.integration.test_data_stage import module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
# four steps on the output head too make the adapter far worse than its base (integration/test_eval_gate.py)
BAD_TRAINING = {"learning_rate": 0.5, "warmup_steps": 0, "target_modules": ["q_proj", "v_proj", "lm_head"]}
AUTOMATION_INTERVAL_S = 30                                   # codellm_automation's minimum_interval_seconds

TICKS = """
query($sel: SensorSelector!) {
  sensorOrError(sensorSelector: $sel) {
    __typename ... on Sensor { sensorState { ticks(limit: 50) { status timestamp runIds error { message } } } }
  }
}"""

RUNS = """
query {
  runsOrError(limit: 100) {
    __typename ... on Runs { results { runId status endTime assetSelection { path } tags { key value } } }
  }
}"""


def _automation_ticks(server: DagsterDevServer) -> list[dict]:
    sel = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": "codellm_automation"}
    data = server.graphql(TICKS, {"sel": sel})["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    return [t for t in data["sensorState"]["ticks"] if t["status"] != "STARTED"]


TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def _runs_of(server: DagsterDevServer, asset: str) -> list[dict]:
    runs = server.graphql(RUNS)["runsOrError"]["results"]
    return [r for r in runs if [asset] in [a["path"] for a in r["assetSelection"] or []]]


def _settled(server: DagsterDevServer) -> bool:
    """No run pending, and two automation ticks since the last run ended."""
    runs = server.graphql(RUNS)["runsOrError"]["results"]
    if any(r["status"] not in TERMINAL for r in runs):
        return False
    last_end = max((r["endTime"] or 0 for r in runs), default=0)
    return sum(t["timestamp"] > last_end for t in _automation_ticks(server)) >= 2


def _wait(predicate, timeout_s: float, what: str, server: DagsterDevServer):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"{what} not seen within {timeout_s:.0f} s\n{server.log_tail()}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A home where `codellm run` left everything up to the adapter and the company benchmark."""
    root = tmp_path_factory.mktemp("gate_daemon")
    repo = root / "repos" / "payments"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    commit_files(repo, {f"pay/m{i}.py": module(f"pay_{i}", body_lines=20) for i in range(16)}, "initial")
    config = write_config(root, [{"name": "payments", "path": str(repo), "branches": ["main"]}],
                          eval={"company_tasks_file": None}, training=BAD_TRAINING)
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    settings = load_settings(config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        results = run_graph(settings, config_path=str(config), selection="*lora_adapter")
        results += run_graph(settings, config_path=str(config), selection="company_benchmark")
    assert [(r.name, r.error) for r in results if not r.success] == []
    return root, config, home, settings


@pytest.fixture(scope="module")
def server(prepared):
    root, config, home, _ = prepared
    with dagster_dev(root, config, home) as srv:
        yield srv


def test_the_daemon_does_not_ship_a_failed_gate(prepared, server: DagsterDevServer):
    from dagster_graphql import DagsterGraphQLClient

    settings = prepared[3]
    # Eager conditions react to updates after their first evaluation; and whatever the daemon starts on
    # its own first (a re-snapshot, a retrain: issue 12 part 5) must be over, or its runs would hold
    # eval_scores together with registered_model, where the blocking check alone skips registration.
    _wait(lambda: _settled(server), 12 * AUTOMATION_INTERVAL_S, "the daemon settling (no run pending)", server)
    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port, timeout=60)
    # The code location runs in process already (definitions.py): its executor takes no `in_process` key.
    eval_run = client.submit_job_execution("__ASSET_JOB", repository_location_name=LOCATION,
                                           repository_name=REPOSITORY, asset_selection=["eval_scores"],
                                           tags={"codellm/test": "e2e-gate"})
    assert server.wait_for_run(eval_run) == "FAILURE"   # the blocking gate failed in that run
    checks = [c for c in server.check_executions("eval_scores", "eval_gate") if c["runId"] == eval_run]
    assert [c["status"] for c in checks] == ["FAILED"], server.run_errors(eval_run)

    # The daemon tries to register (and, chained, deploy) the new eval_scores. It may first re-run
    # eval_scores with them (its gate fails again in that run); registration itself must then refuse.
    def refusal():
        for run in _runs_of(server, "registered_model"):
            if run["status"] == "SUCCESS" or (  # a registration that went through fails the test at once
                    run["status"] in TERMINAL and "not registered" in " ".join(server.run_errors(run["runId"]))):
                return run
        return None

    refused = _wait(refusal, 6 * AUTOMATION_INTERVAL_S + 240, "registered_model refusing in an automation run", server)
    assert refused["status"] == "FAILURE" and _tag(refused, "codellm/launched_by") == "automation"
    assert "eval_gate FAILED" in " ".join(server.run_errors(refused["runId"]))
    # ... and on the ticks that follow requests nothing more: no version, no canary.
    done = time.time()
    _wait(lambda: sum(t["timestamp"] > done for t in _automation_ticks(server)) >= 2, 3 * AUTOMATION_INTERVAL_S + 60,
          "two more automation ticks", server)
    later = [r for r in _runs_of(server, "registered_model") + _runs_of(server, "deployed_endpoint")
             if r["runId"] != refused["runId"] and r["status"] not in TERMINAL]
    assert later == [], later
    attempts = _runs_of(server, "registered_model")
    assert all(r["status"] != "SUCCESS" for r in attempts), attempts
    store = Store(settings.store_url)
    try:
        assert [r for r in store.routes() if r.slot == "canary"] == []
    finally:
        store.close()
    from mlflow import MlflowClient

    mlflow = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    assert mlflow.search_registered_models() == []
