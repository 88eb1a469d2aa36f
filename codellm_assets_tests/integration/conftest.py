"""Helpers for running the real asset graph with dg.materialize on temp repos and a temp home."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
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


def start_gateway(config: Path, port: int, log: Path) -> subprocess.Popen:
    """`codellm serve` as a user starts it, on a free port; waits for /readyz."""
    cli = Path(sys.executable).with_name("codellm")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "codellm_assets.cli"]
    with log.open("w") as fh:
        proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--config", str(config)], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.5)
    stop_gateway(proc)
    raise AssertionError(f"the gateway did not get ready: {log.read_text()[-2000:]}")


def stop_gateway(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(60)
