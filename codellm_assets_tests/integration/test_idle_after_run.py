"""No work without new input: after `codellm run` (the in-process runner) has materialized the whole graph,
the sensors and the automation sensor, evaluated the way the daemon evaluates them (each with its own cursor,
starting empty as when `dagster dev` starts, sensor asset events stored in the instance), request nothing
tick after tick; a re-materialized but unchanged upstream does not retrain; a real new commit and enough new
feedback do request the expected runs (so the quiet ticks are not quiet by construction).

The tests share one graph run (minutes on the tiny model) and run in file order: quiet first, then new input.
"""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from dagster._core.definitions.partitions.context import partition_loading_context

from codellm_assets.core.serving.store import RequestRecord, Store
from codellm_assets.definitions import build_defs
from codellm_assets.defs.shared import latest_data_version
from codellm_assets.runner import run_graph
from codellm_assets.settings import load_settings
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration.conftest import start_gateway, stop_gateway, write_config
from codellm_assets_tests.integration.test_data_stage import module, module_repos
from codellm_assets_tests.serving.conftest import pick_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

FEEDBACK_THRESHOLD = 3
RETRAIN = ["training_dataset", "base_model", "lora_adapter", "company_benchmark", "eval_scores",
           "registered_model", "deployed_endpoint", "packaged_model"]


class Daemon:
    """What one daemon tick does: every sensor with its cursor (asset events reported to the instance,
    dynamic partitions added, run requests collected), then the automation sensor with its cursor."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance = defs, instance
        self.cursors: dict[str, str | None] = {}
        self.automation_cursor = None

    def sensor_tick(self, sensor: dg.SensorDefinition) -> list[dg.RunRequest]:
        resources = {k: self.defs.resources[k] for k in sensor.required_resource_keys}
        # The daemon resolves run requests (partition keys) against the instance's dynamic partitions.
        with partition_loading_context(dynamic_partitions_store=self.instance), dg.build_sensor_context(
                instance=self.instance, cursor=self.cursors.get(sensor.name), definitions=self.defs,
                resources=resources, sensor_name=sensor.name) as ctx:
            data = sensor.evaluate_tick(ctx)
        if data.cursor is not None:
            self.cursors[sensor.name] = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        for req in data.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return list(data.run_requests or [])

    def automation_tick(self) -> dict[str, int]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance,
                                                   cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        keys = self.defs.resolve_asset_graph().get_all_asset_keys()
        return {k.to_user_string(): n for k in keys if (n := result.get_num_requested(k))}

    def tick(self) -> dict[str, object]:
        """{sensor or 'automation': what it requested} for everything that requested something."""
        out: dict[str, object] = {}
        for sensor in self.defs.sensors:
            if isinstance(sensor, (dg.AutomationConditionSensorDefinition, dg.RunStatusSensorDefinition)):
                continue   # automation: below; the run-failure alert reacts to runs, it never requests one
            requests = self.sensor_tick(sensor)
            if requests:
                out[sensor.name] = [(r.partition_key, r.tags.get("codellm/reason")) for r in requests]
        if requested := self.automation_tick():
            out["automation"] = requested
        return out


@pytest.fixture(scope="module")
def after_run(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("idle")
    repos = module_repos(tmp, ("payments", "search"), files=12, body_lines=20)
    port = pick_port()
    config = write_config(tmp, [{"name": n, "path": str(p), "branches": ["main"]} for n, p in repos.items()],
                          eval={"company_tasks_file": None}, serving={"port": port},
                          monitoring={"feedback_volume_threshold": FEEDBACK_THRESHOLD})
    gateway = start_gateway(config, port, tmp / "gateway.log")   # deployed_endpoint needs a live gateway
    request.addfinalizer(lambda: stop_gateway(gateway))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(tmp / "dagster"))
        settings = load_settings(config)
        results = run_graph(settings, config_path=str(config))
        assert [(r.name, r.partition, r.error) for r in results if not r.success] == []
        defs = build_defs(str(config))
        instance = dg.DagsterInstance.get()
        yield {"settings": settings, "config": config, "repos": repos, "defs": defs, "instance": instance,
               "daemon": Daemon(defs, instance)}


def test_codellm_run_records_the_source_versions_it_consumed(after_run):
    instance = after_run["instance"]
    assert latest_data_version(instance, "feedback_events", observed=True) == "batch-0"
    for repo in after_run["repos"]:
        observed = latest_data_version(instance, "git_heads", partition=repo, observed=True)
        assert observed is not None and observed == latest_data_version(instance, "repo_snapshots", partition=repo)


def test_sensors_and_automation_request_nothing_after_codellm_run(after_run):
    daemon = after_run["daemon"]
    # The automation sensor's first tick may come before the other sensors' first ticks: whatever they
    # report on starting must then read as no change on the automation's next ticks.
    assert daemon.automation_tick() == {}
    ticks = [daemon.tick() for _ in range(3)]
    assert ticks == [{}, {}, {}]
    assert daemon.cursors.get("git_heads_sensor"), "the git sensor must start from what was snapshotted"


def test_unchanged_rematerialization_does_not_retrain(after_run):
    daemon, settings, config = after_run["daemon"], after_run["settings"], after_run["config"]
    assert daemon.tick() == {}
    again = run_graph(settings, config_path=str(config), selection="key:deduped_corpus or key:feedback_dataset")
    assert sorted(r.name for r in again if r.success) == ["deduped_corpus", "feedback_dataset"]
    assert [daemon.tick() for _ in range(2)] == [{}, {}]


def _give_feedback(settings, n: int) -> None:
    store = Store(settings.store_url)
    try:
        for i in range(n):
            cid = f"cmpl-{uuid.uuid4().hex}"
            store.record_request(RequestRecord(id=cid, slot="production", version="base", status="ok",
                                               user=f"dev{i}", latency_s=0.1, prompt=f"def kept_{i}(x):\n",
                                               completion=f"    return x + {i}\n",
                                               # real source, so the examples pass the corpus gate
                                               raw_prefix=module(f"kept_{uuid.uuid4().hex[:8]}", body_lines=20)
                                               + f"\n\ndef kept_{i}(x):\n", raw_suffix=""))
            store.flush()
            store.record_feedback(cid, "accept")
        store.flush()
    finally:
        store.close()


def test_enough_new_feedback_requests_feedback_dataset_then_retrain(after_run):
    daemon, settings, config = after_run["daemon"], after_run["settings"], after_run["config"]
    assert daemon.tick() == {}
    _give_feedback(settings, FEEDBACK_THRESHOLD - 1)
    assert daemon.tick() == {}, "below the volume threshold nothing may run"
    _give_feedback(settings, 1)
    assert daemon.tick() == {"automation": {"feedback_dataset": 1}}
    assert daemon.tick() == {}, "requested once, not again while nothing changed"
    # What the requested run does: the feedback examples change, so the retrain chain follows.
    assert all(r.success for r in run_graph(settings, config_path=str(config), selection="feedback_dataset"))
    assert daemon.tick() == {"automation": {name: 1 for name in RETRAIN}}


def test_new_commit_requests_a_snapshot_of_that_repo_only(after_run):
    daemon = after_run["daemon"]
    assert daemon.tick() == {}
    commit_files(after_run["repos"]["search"], {"search/new.py": module("search_new", body_lines=20)}, "new work")
    assert daemon.tick() == {"git_heads_sensor": [("search", "branch moved")]}
    assert daemon.tick() == {}
