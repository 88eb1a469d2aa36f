"""No work without new input, through the real thing: `codellm run` materializes the whole graph (tiny model) into
a DAGSTER_HOME, then `dagster dev` (webserver + daemon, every sensor and the automation sensor running) starts on
it as `make dev` would. Several sensor and automation ticks launch no run; a real new commit then does launch a
snapshot of that repo (the quiet ticks are not quiet because nothing can run)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.e2e.conftest import LOCATION, PROJECT_ROOT, REPOSITORY, _make_repo, _server_env, dagster_dev
from codellm_assets_tests.integration.conftest import SMALL, start_gateway, stop_gateway
from codellm_assets_tests.integration.test_data_stage import module
from codellm_assets_tests.serving.conftest import pick_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUNS = """
query {
  runsOrError(limit: 200) {
    __typename ... on Runs { results { runId status tags { key value } assetSelection { path } } }
  }
}"""

TICKS = """
query($sel: SensorSelector!) {
  sensorOrError(sensorSelector: $sel) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 50) { status runIds skipReason error { message } } } }
  }
}"""

WATCHED = ("git_heads_sensor", "feedback_observer", "codellm_automation")
QUIET_TICKS = {"git_heads_sensor": 1, "feedback_observer": 2, "codellm_automation": 3}
TICK_TIMEOUT_S = 240   # automation and feedback every 30 s, git heads every 60 s, on 2 shared cores


def _write_settings(root, port: int):
    repos = []
    for name in ("payments", "search"):
        path = _make_repo(root / "repos" / name,
                          {f"{name}/m{i}.py": module(f"{name}_{i}", body_lines=20) for i in range(12)})
        repos.append({"name": name, "path": str(path), "branches": ["main"]})
    cfg = {"home": str(root / "home"), "repos": repos, **SMALL,
           "eval": {**SMALL["eval"], "company_tasks_file": None}, "serving": {"port": port}}
    path = root / "codellm.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["tags"]}


def _ticks(server, sensor: str) -> list[dict]:
    sel = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": sensor}
    data = server.graphql(TICKS, {"sel": sel})["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    assert data["sensorState"]["status"] == "RUNNING", f"{sensor}: {data['sensorState']['status']}"
    return [t for t in data["sensorState"]["ticks"] if t["status"] != "STARTED"]


def _daemon_runs(server) -> list[dict]:
    """Runs not made by `codellm run`: what the sensors and the automation launched."""
    runs = server.graphql(RUNS)["runsOrError"]["results"]
    return [r for r in runs if _tags(r).get("codellm/launched_by") != "codellm run"]


def _wait_ticks(server, wanted: dict[str, int], timeout_s: float = TICK_TIMEOUT_S) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout_s
    while True:
        ticks = {name: _ticks(server, name) for name in wanted}
        if all(len(ticks[n]) >= k for n, k in wanted.items()):
            return ticks
        if time.monotonic() > deadline:
            raise AssertionError(f"ticks after {timeout_s:.0f} s: { {n: len(t) for n, t in ticks.items()} } "
                                 f"(wanted {wanted})\n{server.log_tail()}")
        time.sleep(3)


def test_dagster_dev_after_codellm_run_launches_nothing_until_a_commit(tmp_path):
    port = pick_port()
    config = _write_settings(tmp_path, port)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = _server_env(home, config)
    gateway = start_gateway(config, port, tmp_path / "gateway.log")   # as `make run` does: serve, then run
    try:
        _run_then_watch(tmp_path, config, home, env)
    finally:
        stop_gateway(gateway)


def _run_then_watch(tmp_path, config, home, env) -> None:
    done = subprocess.run([sys.executable, "-m", "codellm_assets.cli", "run", "--config", str(config)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"codellm run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    with dagster_dev(tmp_path, config, home) as server:
        assert server.graphql(RUNS)["runsOrError"]["results"], "codellm run's runs are in this instance"
        ticks = _wait_ticks(server, QUIET_TICKS)
        for name, tick_list in ticks.items():   # quiet because nothing changed, not because a sensor crashed
            assert [t["error"] for t in tick_list if t["status"] == "FAILURE"] == [], name
        launched = [(_tags(r).get("dagster/sensor_name") or _tags(r).get("dagster/automation_condition_sensor"),
                     [".".join(a["path"]) for a in r["assetSelection"] or []]) for r in _daemon_runs(server)]
        assert launched == [], f"runs launched with nothing new: {launched}"

        # Positive control: a real commit makes the git sensor's next tick snapshot that repo, and only it.
        seen = len(ticks["git_heads_sensor"])
        commit_files(tmp_path / "repos" / "search", {"search/new.py": module("search_new", body_lines=20)}, "new")
        _wait_ticks(server, {"git_heads_sensor": seen + 1})
        runs = _daemon_runs(server)
        assert [(_tags(r).get("dagster/partition"), _tags(r).get("codellm/reason")) for r in runs] == \
            [("search", "branch moved")]
