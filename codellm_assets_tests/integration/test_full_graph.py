"""The whole graph, in process, on a tiny model: two temp repos -> ... -> registered challenger -> canary
route. Asserts the artifacts each stage left behind (dataset on disk, adapter, MLflow version + alias,
routing table), then a second run resumes from what is stored."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from datasets import load_from_disk

from codellm_assets.core.serving.store import Store
from codellm_assets.core.training import registry, registry_packages
from codellm_assets.runner import run_graph
from codellm_assets.settings import load_settings
from codellm_assets_tests.integration.conftest import start_gateway, stop_gateway, write_config
from codellm_assets_tests.integration.test_data_stage import module
from codellm_assets_tests.integration.test_eval_gate import COMPANY_KEYS
from codellm_assets_tests.serving.conftest import pick_port


@pytest.mark.slow
def test_whole_graph_on_a_tiny_model(tmp_path, make_git_repo, monkeypatch, request):
    a = make_git_repo("payments", {f"pay/m{i}.py": module(f"pay_{i}", body_lines=20) for i in range(12)})
    b = make_git_repo("search", {f"search/s{i}.py": module(f"search_{i}", body_lines=20) for i in range(12)})
    port = pick_port()
    config = write_config(tmp_path, [{"name": "payments", "path": str(a), "branches": ["main"]},
                                     {"name": "search", "path": str(b), "branches": ["main"]}],
                          eval={"company_tasks_file": None}, serving={"port": port})
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    settings = load_settings(config)
    # A real gateway: deployed_endpoint fails unless a completion through it comes from the new version.
    gateway = start_gateway(config, port, tmp_path / "gateway.log")
    request.addfinalizer(lambda: stop_gateway(gateway))
    results = run_graph(settings, config_path=str(config))
    failed = [(r.name, r.partition, r.error) for r in results if not r.success]
    assert failed == []
    names = [r.name for r in results]
    peaks = [r.peak_rss_gb for r in results]            # in process: the peak so far, never down
    assert 0.1 < peaks[0] and peaks == sorted(peaks)
    assert names[-4:] == ["eval_scores", "registered_model", "deployed_endpoint", "packaged_model"]

    data = settings.data_dir
    ds = load_from_disk(json.loads((data / "training_dataset.json").read_text())["dataset_dir"])
    assert ds["train"].num_rows > 0 and len(ds["train"][0]["input_ids"]) == settings.dataset.seq_len
    adapter = json.loads((data / "lora_adapter.json").read_text())
    assert (settings.resolve(adapter["adapter_dir"]) / "adapter_model.safetensors").exists()
    assert adapter["val_loss_adapter"] is not None and adapter["val_loss_base"] is not None
    challenger = registry.get_alias(settings.mlflow_tracking_uri, "codellm", "challenger")
    assert challenger is not None and challenger.version == "1"
    for fmt in settings.packaging.formats:   # packaged_model: each artifact's checksum on the version
        assert len(registry_packages.package_tags(challenger, fmt)["sha256"]) == 64, fmt
    store = Store(settings.store_url)
    try:
        routes = {r.slot: (r.version, r.weight) for r in store.routes()}
    finally:
        store.close()
    assert routes == {"production": ("base", 95), "canary": ("codellm/1", 5)}

    instance = dg.DagsterInstance.get()
    ev = instance.get_latest_materialization_event(dg.AssetKey("eval_scores"))
    meta = ev.asset_materialization.metadata
    assert "pass@1" in meta and [k for k in COMPANY_KEYS if k not in meta] == []
    assert meta["company_tasks"].value > 0 and meta["company_languages"].value == ["python"]
    tds = instance.get_latest_materialization_event(dg.AssetKey("training_dataset")).asset_materialization.metadata
    assert tds["holdout_split"].value == "time"   # one commit per repo: each falls back to hash, and says so
    assert tds["holdout_fallback"].value == {"payments": "all files share one commit date: hash split",
                                             "search": "all files share one commit date: hash split"}
    again = run_graph(settings, config_path=str(config), selection="eval_scores*")
    assert [r.name for r in again] == ["eval_scores", "registered_model", "deployed_endpoint", "packaged_model"]
    assert all(r.success for r in again)
    assert registry.get_alias(settings.mlflow_tracking_uri, "codellm", "challenger").version == "2"
