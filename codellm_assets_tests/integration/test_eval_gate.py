"""The eval gate is part of the data, on a real instance, registry and graph (tiny model).

A challenger trained with a learning rate that wrecks it fails eval_gate. eval_scores is materialized
in its own run (as `codellm run` does, or a re-run from the UI), then declarative automation is
evaluated the way the daemon does (twice, with the cursor) and every run it requests is executed:
nothing is registered, nothing deployed. Then each way around the gate is tried directly: no verdict,
a reported (runless) materialization, a forged runless verdict, an edited stored value, a check passed
under looser settings, an adapter changed after its evaluation, a version registered outside the
graph, an invented gate record, gate tags copied onto a version with another adapter.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file, save_file

from codellm_assets.core.serving.store import Store
from codellm_assets.core.training import registry
from codellm_assets.definitions import build_defs
from codellm_assets.runner import run_graph
from codellm_assets.settings import load_settings
from codellm_assets_tests.conftest import commit_files, git
from codellm_assets_tests.integration.conftest import start_gateway, stop_gateway, write_config
from codellm_assets_tests.integration.test_data_stage import module
from codellm_assets_tests.serving.conftest import pick_port

pytestmark = pytest.mark.slow
# eval_scores' company benchmark figures (base and adapter on the same FIM tasks, with context too)
COMPANY_KEYS = ("company_em", "company_es", "company_em_base", "company_es_base", "company_tasks",
                "company_tasks_by_kind", "company_languages", "company_score", "company_score_base",
                "company_em_delta", "company_table", "company_chart", "company_score_context", "company_em_context",
                "company_es_context", "company_em_context_delta", "company_exec_tasks")
# Learning rate 0.5 without warm-up, LoRA on the output head too: four steps make the adapter far worse than
# its base on held-out code (~61 bits per character vs ~6). On the attention and MLP projections alone the
# near-uniform 3-step base cannot be made much worse: its final norm and small head keep every output flat.
BAD_TRAINING = {"learning_rate": 0.5, "warmup_steps": 0, "target_modules": ["q_proj", "v_proj", "lm_head"]}
# A margin under which that adapter passes: a regression of up to log2(1 + 1e30) ~ 100 bits per character.
LOOSE_MARGIN = 1e30


class Env:
    def __init__(self, root: Path):
        repo = root / "repos" / "payments"
        repo.mkdir(parents=True)
        git(repo, "init", "-q", "-b", "main")
        commit_files(repo, {f"pay/m{i}.py": module(f"pay_{i}", body_lines=20) for i in range(16)}, "initial")
        self.root = root
        self.port = pick_port()
        self.config = write_config(root, [{"name": "payments", "path": str(repo), "branches": ["main"]}],
                                   eval={"company_tasks_file": None}, training=BAD_TRAINING,
                                   serving={"port": self.port})
        self.settings = load_settings(self.config)

    def with_eval(self, name: str, **overrides) -> Path:
        """Another settings file on the same home (same data, registry, store)."""
        cfg = yaml.safe_load(self.config.read_text())
        cfg["eval"] = {**cfg["eval"], **overrides}
        path = self.root / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    @property
    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.get()

    def run(self, selection: str, config: Path | None = None):
        return run_graph(self.settings, config_path=str(config or self.config), selection=selection)

    def execute(self, keys, config: Path | None = None, with_checks: bool = True) -> dg.ExecuteInProcessResult:
        job = build_defs(str(config or self.config)).resolve_implicit_global_asset_job_def()
        keys = {dg.AssetKey(k) if isinstance(k, str) else k for k in keys}
        if not with_checks:   # e.g. a UI materialization with the checks deselected
            job = job.get_subset(asset_selection=keys, asset_check_selection=set())
            return job.execute_in_process(instance=self.instance, raise_on_error=False)
        return job.execute_in_process(instance=self.instance, asset_selection=list(keys), raise_on_error=False)

    def versions(self) -> list[str]:
        client = MlflowClient(self.settings.mlflow_tracking_uri, self.settings.mlflow_tracking_uri)
        try:
            found = client.search_model_versions(f"name='{self.settings.registry.model_name}'")
        except Exception:   # no registry tables yet: nothing was ever registered
            return []
        return sorted(mv.version for mv in found)

    def routes(self) -> dict:
        store = Store(self.settings.store_url)
        try:
            return {r.slot: (r.version, r.weight) for r in store.routes()}
        finally:
            store.close()


def step_error(result: dg.ExecuteInProcessResult) -> str:
    failures = [ev for ev in result.all_events if ev.is_step_failure]
    err = failures[0].event_specific_data.error if failures else None
    while err is not None and err.cause is not None:
        err = err.cause
    return err.message if err else ""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_gate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(root / "dagster"))
        e = Env(root)
        gateway = start_gateway(e.config, e.port, root / "gateway.log")   # deployed_endpoint needs a live one
        try:
            results = e.run("*lora_adapter") + e.run("company_benchmark")
            assert [(r.name, r.error) for r in results if not r.success] == []
            yield e
        finally:
            stop_gateway(gateway)


def requested(defs: dg.Definitions, tick) -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()
                  if tick.get_num_requested(k))


def test_a_failed_gate_never_ships_through_automation(env):
    defs = build_defs(str(env.config))
    first = dg.evaluate_automation_conditions(defs=defs, instance=env.instance)
    assert requested(defs, first) == []
    [ev] = env.run("eval_scores")   # its own run, as `codellm run` or a UI re-run does
    assert not ev.success and ev.checks_failed == ["eval_gate"]
    cursor, ticks, outcomes = first.cursor, [], []
    for _ in range(3):   # each tick: evaluate with the cursor, then run what it asked for (one run, as the daemon)
        tick = dg.evaluate_automation_conditions(defs=defs, instance=env.instance, cursor=cursor)
        cursor = tick.cursor
        ticks.append(requested(defs, tick))
        if ticks[-1]:
            outcomes.append(env.execute(ticks[-1]))
    # The daemon does try: the new eval_scores makes registration (and, chained, deployment) eager ...
    assert ticks[0] == ["deployed_endpoint", "packaged_model", "registered_model"] and ticks[1:] == [[], []], ticks
    # ... and registration refuses, so nothing is registered and the deployment never starts.
    assert env.versions() == [] and "canary" not in env.routes()
    [run] = outcomes
    assert "eval_gate FAILED" in step_error(run) and "not registered" in step_error(run)
    assert run.get_asset_materialization_events() == []


def test_registered_model_refuses_the_failed_verdict_directly(env):
    result = env.execute(["registered_model"])
    assert not result.success and "eval_gate FAILED" in step_error(result)
    assert env.versions() == []


def test_a_missing_verdict_is_not_a_pass(env):
    assert env.execute(["eval_scores"], with_checks=False).success   # materialized without its check
    result = env.execute(["registered_model"])
    assert not result.success and "no eval_gate verdict" in step_error(result)
    assert env.versions() == []


def test_a_forged_runless_verdict_and_a_reported_materialization_are_refused(env):
    assert env.execute(["eval_scores"], with_checks=False).success
    record = env.instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=1).records[0]
    from dagster._core.definitions.asset_checks.asset_check_evaluation import (
        AssetCheckEvaluation,
        AssetCheckEvaluationTargetMaterializationData,
    )

    env.instance.report_runless_asset_event(AssetCheckEvaluation(
        asset_key=dg.AssetKey("eval_scores"), check_name="eval_gate", passed=True, metadata={},
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)))
    result = env.execute(["registered_model"])
    assert not result.success and "no eval_gate verdict" in step_error(result)
    # "Report materialization" from the UI: an event without a run, the stored value is an older run's.
    env.instance.report_runless_asset_event(dg.AssetMaterialization("eval_scores"))
    result = env.execute(["registered_model"])
    assert not result.success and "not produced by a run" in step_error(result)
    assert env.versions() == []


def test_an_edited_stored_value_is_refused(env):
    loose = env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN)
    [ev] = env.run("eval_scores", config=loose)
    assert ev.success, ev.error
    stored = env.settings.data_dir / "eval_scores.json"
    value = json.loads(stored.read_text())
    value["challenger"]["pass@1"] = 1.0
    stored.write_text(json.dumps(value))
    result = env.execute(["registered_model"], config=loose)
    assert not result.success and "fingerprint" in step_error(result)
    assert env.versions() == []


def test_registration_rederives_the_verdict_under_its_own_settings(env):
    """A check passed under looser settings than registration's does not register."""
    [ev] = env.run("eval_scores", config=env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN))
    assert ev.success, ev.error
    result = env.execute(["registered_model"])   # the strict settings
    assert not result.success and "re-derived" in step_error(result)
    assert env.versions() == []


def test_an_adapter_changed_after_its_evaluation_is_refused(env):
    """lora_adapter retrained (here: its weights changed) after eval_scores passed on the previous one."""
    loose = env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN)
    [ev] = env.run("eval_scores", config=loose)
    assert ev.success, ev.error
    adapter_dir = json.loads((env.settings.data_dir / "lora_adapter.json").read_text())["adapter_dir"]
    weights_file = env.settings.resolve(adapter_dir) / "adapter_model.safetensors"
    original = weights_file.read_bytes()
    try:
        save_file({k: v * 0.5 for k, v in load_file(weights_file).items()}, weights_file)
        result = env.execute(["registered_model"], config=loose)
        assert not result.success and "evaluated adapter" in step_error(result)
    finally:
        weights_file.write_bytes(original)
    assert env.versions() == []


def test_a_passed_gate_registers_its_record_and_deploys(env):
    loose = env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN)
    results = env.run("eval_scores*", config=loose)
    assert [(r.name, r.success, r.error) for r in results] == [
        ("eval_scores", True, None), ("registered_model", True, None), ("deployed_endpoint", True, None),
        ("packaged_model", True, None)]
    info = registry.get_version(env.settings.mlflow_tracking_uri, "codellm", "1")
    gate = registry.read_gate(info)
    ev = env.instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=1).records[0]
    assert gate.passed and gate.eval_storage_id == ev.storage_id and gate.eval_run_id == ev.run_id
    assert gate.adapter_sha256 == info.tags["codellm.adapter_sha256"]
    assert env.routes()["canary"] == ("codellm/1", 5)
    # Same benchmark, same base: the reference was not scored again.
    meta = ev.event_log_entry.asset_materialization.metadata
    assert meta["reference"].value == "base" and meta["reference_cached"].value is True
    assert [k for k in COMPANY_KEYS if k not in meta] == []
    fim_tasks = json.loads((env.settings.data_dir / "company_benchmark.json").read_text())["fim_tasks"]
    assert meta["company_tasks"].value == fim_tasks >= env.settings.eval.gate_min_tasks
    assert sum(meta["company_tasks_by_kind"].value.values()) == fim_tasks and meta["company_languages"].value
    assert "EM adapter+context" in meta["company_table"].value and meta["base_cached"].value is True
    assert set(meta["company_em_delta"].value) == {"mean", "low", "high", "n"}
    value = json.loads((env.settings.data_dir / "eval_scores.json").read_text())
    paired = value["paired"]["challenger"]["company"]   # the rows the gate bootstraps company_score on
    assert len(paired) == fim_tasks and {"task_id", "kind", "em", "es"} <= set(paired[0])


def _register_outside_the_graph(env, adapter_dir: str) -> str:
    lora = json.loads((env.settings.data_dir / "lora_adapter.json").read_text())
    client = MlflowClient(env.settings.mlflow_tracking_uri, env.settings.mlflow_tracking_uri)
    run = client.create_run(client.get_experiment_by_name(env.settings.registry.experiment).experiment_id)
    info = registry.register_adapter(
        tracking_uri=env.settings.mlflow_tracking_uri, model_name="codellm", adapter_dir=adapter_dir,
        base_model_dir=lora["base_model_dir"], run_id=run.info.run_id,
        dataset_manifest={"manifest_hash": lora["manifest_hash"]}, alias=None)
    stored = env.settings.data_dir / "registered_model.json"
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "version": info.version}))
    return info.version


def test_deployed_endpoint_refuses_a_version_without_a_passed_gate(env):
    lora = json.loads((env.settings.data_dir / "lora_adapter.json").read_text())
    version = _register_outside_the_graph(env, lora["adapter_dir"])
    result = env.execute(["deployed_endpoint"])
    assert not result.success and "holds no passed eval gate" in step_error(result)
    assert env.routes()["canary"] == ("codellm/1", 5)
    # An invented gate record (tags typed into the MLflow UI): no such passed evaluation in the instance.
    client = MlflowClient(env.settings.mlflow_tracking_uri, env.settings.mlflow_tracking_uri)
    sha = registry.get_version(env.settings.mlflow_tracking_uri, "codellm", version).tags["codellm.adapter_sha256"]
    invented = registry.GateRecord("passed", "some-run", 999999, "x", "some-run", 1, sha)
    for key, value in invented.tags().items():
        client.set_model_version_tag("codellm", version, key, value)
    result = env.execute(["deployed_endpoint"])
    assert not result.success and "does not match a passed eval_gate" in step_error(result)
    # Tags copied from a gated version (the MLflow UI lets anyone edit tags) onto another adapter.
    other = env.root / "other" / "adapter"   # MLflow keeps a directory artifact under its own name
    shutil.copytree(lora["adapter_dir"], other)
    weights = load_file(other / "adapter_model.safetensors")
    save_file({k: v + 0.5 for k, v in weights.items()}, other / "adapter_model.safetensors")
    version = _register_outside_the_graph(env, str(other))
    for key, value in registry.read_gate(registry.get_version(env.settings.mlflow_tracking_uri, "codellm",
                                                              "1")).tags().items():
        client.set_model_version_tag("codellm", version, key, value)
    result = env.execute(["deployed_endpoint"])
    assert not result.success and "the gate evaluated" in step_error(result)
    assert env.routes()["canary"] == ("codellm/1", 5)


def test_the_champion_is_rescored_on_the_same_tasks_once(env):
    registry.set_alias(env.settings.mlflow_tracking_uri, "codellm", "champion", "1")
    loose = env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN)
    metas = []
    for _ in range(2):
        [ev] = env.run("eval_scores", config=loose)
        assert ev.success, ev.error
        rec = env.instance.fetch_materializations(dg.AssetKey("eval_scores"), limit=1).records[0]
        metas.append(rec.event_log_entry.asset_materialization.metadata)
    assert [m["reference"].value for m in metas] == ["champion v1"] * 2
    assert [m["reference_cached"].value for m in metas] == [False, True]
    value = json.loads((env.settings.data_dir / "eval_scores.json").read_text())
    ours, theirs = value["paired"]["challenger"], value["paired"]["reference"]
    for table, key in (("humaneval", "task_id"), ("company", "task_id"), ("holdout", "id")):
        assert [r[key] for r in ours[table]] == [r[key] for r in theirs[table]] and ours[table]
    assert os.environ.get("DAGSTER_HOME")


def test_eval_and_registration_in_one_run(env):
    """The daemon's shape: eval_scores, its blocking check and registered_model in one run."""
    loose = env.with_eval("loose.yaml", gate_margin=LOOSE_MARGIN)
    before = env.versions()
    result = env.execute(["eval_scores", "registered_model"], config=loose)
    assert result.success, step_error(result)
    [new] = sorted(set(env.versions()) - set(before))
    gate = registry.read_gate(registry.get_version(env.settings.mlflow_tracking_uri, "codellm", new))
    assert gate.passed and gate.eval_run_id == gate.check_run_id == result.run_id


def test_the_canary_guard_widens_only_the_gated_canary(env):
    """The deployed (gated) codellm/1 canary: the same version name over a swapped adapter is rolled back
    on good traffic; the real one goes 5 -> 25 -> 100 % and becomes the champion."""
    from codellm_assets.core.serving.routes import Route
    from codellm_assets.defs import deployment
    from codellm_assets_tests.integration.conftest import resources_for
    from codellm_assets_tests.integration.test_monitoring import tick, traffic

    resources = resources_for(env.config)
    with Store(env.settings.store_url) as store:
        routes = store.routes()
        canary = next(r for r in routes if r.slot == "canary")
        assert (canary.version, canary.weight) == ("codellm/1", 5)
        swapped = env.root / "swapped" / "adapter"
        shutil.copytree(canary.adapter_path, swapped)
        weights = load_file(swapped / "adapter_model.safetensors")
        save_file({k: v + 0.25 for k, v in weights.items()}, swapped / "adapter_model.safetensors")
        store.set_routes([r if r.slot != "canary" else Route("canary", r.version, r.base_model_path, str(swapped),
                                                               r.weight) for r in routes])
        traffic(store, "canary", "codellm/1", 60, users=5, buggy=False)
        res = tick(deployment.canary_guard, resources, env.instance)
        meta = res.asset_events[0].metadata
        assert meta["decision"].value == "rollback" and "the gate evaluated" in meta["reason"].value
        assert env.routes()["canary"] == ("codellm/1", 0)

        # `codellm routes set` refuses the swapped table and takes the gated one as it is
        from typer.testing import CliRunner

        from codellm_assets.cli import app
        swapped_table = json.dumps([r.__dict__ for r in store.routes()])
        out = CliRunner().invoke(app, ["routes", "set", swapped_table, "--config", str(env.config)])
        assert out.exit_code == 2 and "refused: codellm/1: the route serves adapter" in out.output, out.output
        out = CliRunner().invoke(app, ["routes", "set", json.dumps([r.__dict__ for r in routes]),
                                       "--config", str(env.config)])
        assert out.exit_code == 0, out.output
        traffic(store, "canary", "codellm/1", 60, users=5, buggy=False)
        first = tick(deployment.canary_guard, resources, env.instance)
        assert first.asset_events[0].metadata["decision"].value == "promote"
        assert env.routes()["canary"] == ("codellm/1", 25)
        traffic(store, "canary", "codellm/1", 60, users=5, buggy=False)
        tick(deployment.canary_guard, resources, env.instance, first.cursor)
        assert env.routes()["production"] == ("codellm/1", 100)
    assert str(registry.get_alias(env.settings.mlflow_tracking_uri, "codellm", "champion").version) == "1"
