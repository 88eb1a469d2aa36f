"""`codellm vllm command|start`: what vLLM is started with comes from the routing table (the production
base and every routed adapter on it), not from a hard-coded champion."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from codellm_assets.cli import app
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel


def _config(tmp_path: Path, venv: Path) -> Path:
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\nrepos: []\nserving:\n  vllm_venv: {venv}\n"
                   f"  vllm_url: http://127.0.0.1:18999\n")
    return cfg


def _fake_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv-vllm"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\n")
    (venv / ".installed").touch()
    return venv


def test_command_serves_the_routed_base_and_adapters(tiny_model: TinyModel, tmp_path: Path) -> None:
    cfg = _config(tmp_path, _fake_venv(tmp_path))
    other_base = tmp_path / "other-base"
    other_base.mkdir()
    with Store(f"sqlite:///{tmp_path / 'home' / 'store.db'}") as store:
        store.set_routes([Route("production", "codellm/2", str(tiny_model.base), str(tiny_model.adapter), 90),
                          Route("canary", "codellm/3", str(tiny_model.base), str(tiny_model.adapter2), 10),
                          Route("shadow", "codellm/4", str(other_base), str(tiny_model.adapter2), 100)])
    r = CliRunner().invoke(app, ["vllm", "command", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    line = r.stdout.strip().splitlines()[-1]
    assert f"--model {tiny_model.base} " in line and "--port 18999" in line        # serving.vllm_url's port
    assert f"--lora-modules codellm-2={tiny_model.adapter} codellm-3={tiny_model.adapter2}" in line
    assert "codellm-4" not in line and "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in line
    assert "--max-lora-rank 8" in line and "--max-model-len 512" in line    # adapters r=4; the model's 512
    assert "codellm/4 is on another base" in r.output


def test_without_the_venv_it_says_how_to_build_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CODELLM__SERVING__VLLM_VENV", raising=False)   # CI points it at the real venv
    cfg = _config(tmp_path, tmp_path / "nowhere")
    r = CliRunner().invoke(app, ["vllm", "command", "--config", str(cfg)])
    assert r.exit_code == 2 and "make vllm" in " ".join(r.output.split())   # rich wraps at the terminal width
