"""The registry on a real SQLite-backed MLflow in tmp_path: runs, versions, aliases, refusals, locks."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from codellm_assets.core.training import registry
from codellm_assets.core.training.lora import TrainResult, train_lora
from codellm_assets.core.training.registry import (
    ALIAS_ABSENT,
    AdapterValidationError,
    AliasConflict,
    RegistryError,
    RegistryLockTimeout,
    registry_lock,
)
from codellm_assets.settings import TrainingSettings

MANIFEST = {"manifest_hash": "f" * 64, "commits": {"acme@main": "a" * 40, "tools@main": "b" * 40}}


@pytest.fixture(scope="module")
def trained(tiny_setup, tmp_path_factory) -> TrainResult:
    settings = TrainingSettings(
        max_steps=6,
        batch_size=8,
        learning_rate=5e-3,
        warmup_steps=1,
        logging_steps=2,
        eval_steps=3,
        save_steps=100,
        threads=2,
        eval_max_sequences=16,
    )
    return train_lora(
        base_model_dir=tiny_setup.base_dir,
        dataset_dir=tiny_setup.dataset_dir,
        out_dir=tmp_path_factory.mktemp("reg-train"),
        training=settings,
        target_modules=tiny_setup.target_modules,
        r=8,
        alpha=16,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    exp_id = registry.ensure_experiment(uri, "codellm", root / "artifacts")
    return {"uri": uri, "root": root, "experiment_id": exp_id}


@pytest.fixture(scope="module")
def run_id(trained, tiny_setup, store) -> str:
    return registry.log_training_run(
        trained,
        params={"lr": 5e-3, "preset": "tiny"},
        tags={"dagster_run_id": "r-1"},
        artifacts_dirs={"adapter": trained.adapter_dir, "tokenizer": tiny_setup.dataset_dir / "tokenizer"},
        dataset_manifest=MANIFEST,
        tracking_uri=store["uri"],
        experiment_name="codellm",
        artifact_root=store["root"] / "artifacts",
    )


def _versions(uri: str, name: str) -> list:
    return registry._client(uri).search_model_versions(f"name='{name}'")


def test_experiment_keeps_artifacts_under_the_given_root_not_mlruns(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = registry.ensure_experiment(store["uri"], "codellm", store["root"] / "elsewhere")
    assert again == store["experiment_id"]
    exp = registry._client(store["uri"]).get_experiment(again)
    assert exp.artifact_location == (store["root"] / "artifacts" / "codellm").resolve().as_uri()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_training_run_has_params_metric_history_lineage_and_artifacts(run_id, trained, store):
    client = registry._client(store["uri"])
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.experiment_id == store["experiment_id"]
    assert run.data.params["lr"] == "0.005" and run.data.tags["dagster_run_id"] == "r-1"
    assert run.data.tags["codellm.dataset_manifest_hash"] == "f" * 64
    assert json.loads(run.data.tags["codellm.source_commits"]) == MANIFEST["commits"]
    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, pytest.approx(m.value)) for m in history] == [
        (s, pytest.approx(v)) for s, v in trained.loss_curve
    ]
    assert run.data.metrics["val_loss_base"] == pytest.approx(trained.val_loss_base)
    assert run.data.metrics["val_loss_adapter"] == pytest.approx(trained.val_loss_adapter)
    artifacts = {f.path for f in client.list_artifacts(run_id)}
    assert {"adapter", "tokenizer", "train_metrics.json", "dataset_manifest.json"} <= artifacts
    assert {"adapter/adapter_model.safetensors", "adapter/adapter_config.json"} <= {
        f.path for f in client.list_artifacts(run_id, "adapter")
    }


@pytest.mark.slow
def test_log_training_run_uses_the_active_run(trained, store):
    import mlflow

    prev = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store["uri"])
    try:
        with mlflow.start_run(experiment_id=store["experiment_id"]) as active:  # as dagster-mlflow does
            step, loss = trained.loss_curve[0]
            mlflow.log_metric("train_loss", loss, step=step)  # streamed live by on_log during training
            got = registry.log_training_run(trained, params={"x": 1}, tags={}, artifacts_dirs={})
            assert got == active.info.run_id
    finally:
        mlflow.set_tracking_uri(prev)
    client = registry._client(store["uri"])
    assert client.get_run(got).data.metrics["steps"] == trained.steps
    history = client.get_metric_history(got, "train_loss")
    assert sorted(m.step for m in history) == [s for s, _ in trained.loss_curve]  # no step logged twice
    with pytest.raises(RegistryError, match="no active MLflow run"):
        registry.log_training_run(trained, params={}, tags={}, artifacts_dirs={})


@pytest.mark.slow
def test_a_version_logged_before_the_stage_packages_still_loads(run_id, trained, tiny_setup, store, tmp_path,
                                                               monkeypatch):
    """Versions registered before core/ was grouped by stage carry a pyfunc file that imports
    codellm_assets.core.train_checkpoints at load time: that path must keep working."""
    old = Path(__file__).with_name("fixtures") / "adapter_pyfunc_before_stage_packages.py.txt"
    assert "codellm_assets.core.train_checkpoints" in old.read_text()
    pyfunc = tmp_path / "adapter_pyfunc.py"
    pyfunc.write_text(old.read_text())
    monkeypatch.setattr(registry, "PYFUNC_FILE", pyfunc)
    v = registry.register_adapter(tracking_uri=store["uri"], model_name="codellm-before-move",
                                  adapter_dir=trained.adapter_dir, base_model_dir=tiny_setup.base_dir,
                                  run_id=run_id, dataset_manifest=MANIFEST, tokenizer_dir=tiny_setup.base_dir)
    out = _load_and_predict(store["uri"], f"models:/codellm-before-move/{v.version}", tmp_path / "pyfunc",
                            max_new_tokens=2)
    assert len(out) == 1 and isinstance(out[0], str)


@pytest.mark.slow
def test_register_adapter_creates_a_challenger_version_that_downloads_and_predicts(
    run_id, trained, tiny_setup, store, tmp_path
):
    uri = store["uri"]
    v1 = registry.register_adapter(
        tracking_uri=uri,
        model_name="codellm",
        adapter_dir=trained.adapter_dir,
        base_model_dir=tiny_setup.base_dir,
        run_id=run_id,
        dataset_manifest=MANIFEST,
        extra_tags={"eval.pass@1": 0.25},
        tokenizer_dir=tiny_setup.base_dir,
    )
    assert (v1.name, v1.version, v1.run_id, v1.aliases) == ("codellm", "1", run_id, ("challenger",))
    assert v1.tags["codellm.dataset_manifest_hash"] == "f" * 64
    assert v1.tags["codellm.base_model"] == str(tiny_setup.base_dir.resolve())
    assert (
        v1.tags["codellm.base_fingerprint"] == trained.base_fingerprint and v1.tags["eval.pass_1"] == "0.25"
    )
    assert json.loads(v1.tags["codellm.source_commits"]) == MANIFEST["commits"]
    assert registry.get_alias(uri, "codellm", "challenger") == v1

    got = registry.download_adapter(uri, "codellm", "challenger", tmp_path / "dl")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (got / name).read_bytes() == (Path(trained.adapter_dir) / name).read_bytes()
    assert registry.validate_adapter(got, tiny_setup.base_dir).base_verified == "fingerprint"

    # the version is a working model: base by reference + adapter
    out = _load_and_predict(uri, "models:/codellm@challenger", tmp_path / "pyfunc", max_new_tokens=4)
    assert len(out) == 1 and isinstance(out[0], str)

    v2 = registry.register_adapter(
        tracking_uri=uri,
        model_name="codellm",
        adapter_dir=trained.adapter_dir,
        base_model_dir=tiny_setup.base_dir,
        run_id=run_id,
        dataset_manifest=MANIFEST,
    )
    assert v2.version == "2" and registry.get_alias(uri, "codellm", "challenger").version == "2"
    assert registry.get_alias(uri, "codellm", "champion") is None
    with pytest.raises(RegistryError, match="no alias 'champion'"):
        registry.download_adapter(uri, "codellm", "champion", tmp_path / "none")


def _load_and_predict(uri: str, model_uri: str, dst: Path, *, max_new_tokens: int) -> list[str]:
    """Load a registered version as MLflow pyfunc (a fresh download) and complete one prompt."""
    with _mlflow_at(uri):
        import mlflow.pyfunc

        dst.mkdir()
        model = mlflow.pyfunc.load_model(model_uri, dst_path=str(dst))
    return model.predict(["def acme_post_ledger("], params={"max_new_tokens": max_new_tokens})


@contextlib.contextmanager
def _mlflow_at(uri: str):
    import mlflow

    prev = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(prev[0])
        mlflow.set_registry_uri(prev[1])


# ---- refusals: a corrupt or mismatched adapter never becomes a version ---------------------------------


def _other_base(tiny_setup, dst: Path, **config_changes) -> Path:
    """A base of the same family but other weights (or another shape with ``config_changes``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_setup.base_dir)
    for k, v in config_changes.items():
        setattr(config, k, v)
    torch.manual_seed(123)
    AutoModelForCausalLM.from_config(config).save_pretrained(dst)
    return dst


def _truncate(adapter: Path, tiny_setup, tmp: Path) -> Path:
    f = adapter / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:-64])
    return tiny_setup.base_dir


def _nan(adapter: Path, tiny_setup, tmp: Path) -> Path:
    from safetensors.torch import load_file, save_file

    f = adapter / "adapter_model.safetensors"
    tensors = load_file(f)
    name = min(tensors)
    tensors[name][0, 0] = float("nan")
    save_file(tensors, f, metadata={"format": "pt"})
    return tiny_setup.base_dir


def _rank(adapter: Path, tiny_setup, tmp: Path) -> Path:
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["r"] = 4
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    return tiny_setup.base_dir


def _other_weights(adapter: Path, tiny_setup, tmp: Path) -> Path:
    return _other_base(tiny_setup, tmp / "other-weights")


def _other_shape(adapter: Path, tiny_setup, tmp: Path) -> Path:
    (adapter / "codellm_base.json").unlink()  # no recorded fingerprint: the shape check must catch it
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some/hub-id"
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    return _other_base(tiny_setup, tmp / "other-shape", hidden_size=96, head_dim=24)


def _no_config(adapter: Path, tiny_setup, tmp: Path) -> Path:
    (adapter / "adapter_config.json").unlink()
    return tiny_setup.base_dir


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate, "unreadable — truncated or corrupt"),
        (_nan, "NaN or inf"),
        (_rank, "rank mismatch"),
        (_other_weights, "trained on a base with fingerprint"),
        (_other_shape, "trained on another base"),
        (_no_config, "no adapter_config.json"),
    ],
)
def test_corrupt_or_mismatched_adapter_is_refused_and_no_version_created(
    corrupt, message, trained, tiny_setup, store, tmp_path
):
    adapter = tmp_path / "adapter"
    shutil.copytree(trained.adapter_dir, adapter)
    base = corrupt(adapter, tiny_setup, tmp_path)
    with pytest.raises(AdapterValidationError, match=message):
        registry.validate_adapter(adapter, base)
    name = f"refused-{corrupt.__name__.strip('_')}"
    with pytest.raises(AdapterValidationError, match=message):
        registry.register_adapter(
            tracking_uri=store["uri"],
            model_name=name,
            adapter_dir=adapter,
            base_model_dir=base,
            run_id="never-used",
            dataset_manifest=MANIFEST,
        )
    assert _versions(store["uri"], name) == []


def test_a_sound_adapter_validates(trained, tiny_setup):
    info = registry.validate_adapter(trained.adapter_dir, tiny_setup.base_dir)
    assert (info.r, info.alpha, info.base_verified) == (8, 16, "fingerprint")
    assert info.target_modules == ("k_proj", "o_proj", "q_proj", "v_proj")
    assert info.parameters == trained.trainable_params and info.bytes == trained.adapter_bytes


# ---- aliases: compare-and-set under the registry lock --------------------------------------------------


@pytest.fixture
def three_versions(store, request) -> str:
    """A model with versions 1..3 (plain versions: the alias logic does not care what they hold)."""
    name = f"alias-{request.node.name}"[:60].replace("[", "-").replace("]", "")
    client = registry._client(store["uri"])
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=(store["root"] / "dummy").as_uri())
    return name


def test_set_alias_compare_and_set(store, three_versions):
    uri, name = store["uri"], three_versions
    assert registry.set_alias(uri, name, "champion", 1, expected_current=ALIAS_ABSENT).version == "1"
    with pytest.raises(AliasConflict, match="points to version 1, expected None"):
        registry.set_alias(uri, name, "champion", 2, expected_current=ALIAS_ABSENT)
    with pytest.raises(AliasConflict, match="points to version 1, expected 3"):
        registry.set_alias(uri, name, "champion", 2, expected_current=3)
    moved = registry.set_alias(uri, name, "champion", 2, expected_current="1")
    assert moved.aliases == ("champion",) and moved.tags["codellm.alias.champion.previous"] == "1"
    assert registry.set_alias(uri, name, "champion", 3).version == "3"  # no expectation: unconditional
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.set_alias(uri, name, "champion", 9)
    assert registry.get_alias(uri, name, "champion").version == "3"


def _race_two_promotions(uri: str, name: str, lock_url: str | None = None) -> dict[int, str]:
    """Two threads, released together, both try to move champion 1 -> 2 and 1 -> 3 with compare-and-set."""
    registry.set_alias(uri, name, "champion", 1, lock_url=lock_url)
    barrier, outcome = threading.Barrier(2), {}

    def promote(target: int) -> None:
        barrier.wait()  # without the lock both would read "champion == 1" and both would "win"
        try:
            registry.set_alias(uri, name, "champion", target, expected_current=1, lock_url=lock_url)
            outcome[target] = "won"
        except AliasConflict:
            outcome[target] = "conflict"

    threads = [threading.Thread(target=promote, args=(v,)) for v in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_concurrent_set_alias_from_two_threads_is_serialized(store, three_versions):
    for _ in range(3):
        outcome = _race_two_promotions(store["uri"], three_versions)
        assert sorted(outcome.values()) == ["conflict", "won"], outcome
        winner = next(v for v, o in outcome.items() if o == "won")
        assert registry.get_alias(store["uri"], three_versions, "champion").version == str(winner)


_HOLD_LOCK = """
import sys, time
from codellm_assets.core.training.registry_lock import registry_lock
with registry_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_registry_lock_excludes_another_process(store):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, store["uri"], "1.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with (
            pytest.raises(RegistryLockTimeout, match="still held"),
            registry_lock(store["uri"], timeout_s=0.2),
        ):
            pass
        t0 = time.monotonic()
        with registry_lock(store["uri"], timeout_s=30):
            waited = time.monotonic() - t0
        assert waited > 0.5
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    "uri, lock_url, expected",
    [
        ("sqlite:////data/mlflow/mlflow.db", None, "/data/mlflow/mlflow.db.lock"),
        ("sqlite:////data/mlflow.db", "/shared/registry.lock", "/shared/registry.lock"),
        ("http://mlflow:5000", "postgresql://u@db/dagster", "postgresql://u@db/dagster"),
        ("postgresql://u@db/mlflow", None, "postgresql://u@db/mlflow"),
        ("file:///data/mlruns", None, "/data/mlruns/.codellm-registry.lock"),
    ],
)
def test_lock_target(uri, lock_url, expected):
    from codellm_assets.core.training.registry_lock import lock_target

    assert lock_target(uri, lock_url) == expected


@pytest.mark.parametrize(
    "manifest, commits",
    [
        ({"commits": {"a@main": "1" * 40}}, {"a@main": "1" * 40}),
        (
            {
                "sources": [
                    {"repo": "a", "branch": "main", "commit": "2" * 40},
                    {"repo": "b", "branch": "dev", "commit": "3" * 40},
                ]
            },
            {"a@main": "2" * 40, "b@dev": "3" * 40},
        ),
        ({"sources": []}, {}),
    ],
)
def test_source_commits(manifest, commits):
    assert registry.source_commits(manifest) == commits


def test_manifest_hash_prefers_the_recorded_one():
    assert registry.manifest_hash({"manifest_hash": "abc", "x": 1}) == "abc"
    assert (
        registry.manifest_hash({"x": 1})
        == registry.manifest_hash({"x": 1})
        != registry.manifest_hash({"x": 2})
    )


@pytest.mark.parametrize(
    "base, expected",
    [
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/#/experiments/1/runs/abc"),
        ("http://mlflow.internal/", "http://mlflow.internal/#/experiments/1/runs/abc"),
    ],
)
def test_mlflow_ui_url(base, expected):
    assert registry.mlflow_ui_url(base, "1", "abc") == expected


# ---- the production lock: a Postgres advisory lock (a real server, started here) ---------------------------


@pytest.fixture
def postgres_url(postgres_server):
    """The session's throw-away PostgreSQL server (codellm_assets_tests/conftest.py)."""
    return postgres_server


@pytest.mark.slow
def test_postgres_advisory_lock_serializes_alias_moves(postgres_url, store, three_versions):
    uri, name = store["uri"], three_versions
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with registry_lock(uri, lock_url=postgres_url):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        with (
            pytest.raises(RegistryLockTimeout, match="not granted"),
            registry_lock(uri, lock_url=postgres_url, timeout_s=0.3),
        ):
            pass
    finally:
        release.set()
        holder.join(30)

    outcome = _race_two_promotions(uri, name, lock_url=postgres_url)
    assert sorted(outcome.values()) == ["conflict", "won"], outcome
