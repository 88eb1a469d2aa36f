"""Helpers for running the real asset graph with dg.materialize on temp repos and a temp home."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from codellm_assets.resources import CodellmIOManager, GatewayResource, MetricsStoreResource, SettingsResource

SMALL = {"quality": {"min_lines": 3}, "dedup": {"threshold": 0.7},
         "dataset": {"seq_len": 64, "validation_fraction": 0.2, "holdout_fraction": 0.2, "tokenizer_vocab_size": 400},
         "model": {"tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2, "tiny_pretrain_steps": 3},
         "training": {"max_steps": 4, "batch_size": 2, "save_steps": 2, "eval_steps": 2, "logging_steps": 1},
         # gate minimums 2: the gate's plumbing on a tiny benchmark (the evidence rule: evaluation/test_gate.py)
         "eval": {"humaneval_subset": 2, "max_new_tokens": 8, "company_max_tasks": 2, "timeout_s": 3,
                  "gate_min_tasks": 2, "gate_min_files": 2}}


def write_config(tmp_path: Path, repos: list[dict], **overrides) -> Path:
    cfg = {"home": str(tmp_path / "home"), "repos": repos, **SMALL}
    for k, v in overrides.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / "codellm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def resources_for(config: Path) -> dict:
    s = SettingsResource(config_path=str(config))
    return {"settings": s, "io_manager": CodellmIOManager(settings=s),
            "metrics_store": MetricsStoreResource(settings=s),
            "gateway": GatewayResource(settings=s)}


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst
