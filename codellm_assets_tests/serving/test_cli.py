"""`codellm keys`, `codellm routes` and `codellm serve` as a user runs them: the real CLI, a real settings
file, the real server as a subprocess stopped by its pid (SIGTERM drains the store)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from codellm_assets.cli import app
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel, pick_port


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\nrepos: []\nserving:\n  store_url: sqlite:///{tmp_path / 's.db'}\n"
                   "  readiness_interval_s: 5\n  route_refresh_s: 0.5\n")
    return cfg


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_keys_create_list_revoke(config: Path) -> None:
    code, out = _run("keys", "create", "--team", "bars", "--config", str(config))
    assert code == 0
    key = out.strip().splitlines()[-1]                        # the key is the LAST line
    assert key.startswith("cl-") and len(key) > 30
    store = Store(f"sqlite:///{config.parent / 's.db'}")
    assert store.verify_api_key(key) == "bars"
    code, listed = _run("keys", "list", "--config", str(config))
    assert code == 0 and key[:11] in listed and key not in listed and "bars" in listed
    assert _run("keys", "revoke", key[:11], "--config", str(config))[0] == 0
    assert store.verify_api_key(key) is None
    assert _run("keys", "revoke", "cl-nothere", "--config", str(config))[0] == 1
    assert _run("keys", "create", "--team", " ", "--config", str(config))[0] == 2
    store.close()


def test_routes_set_show_and_reject(config: Path) -> None:
    table = [{"slot": "production", "version": "base", "base_model_path": "/m", "weight": 95},
             {"slot": "canary", "version": "codellm/2", "base_model_path": "/m", "adapter_path": "/a", "weight": 5}]
    code, out = _run("routes", "set", json.dumps(table), "--config", str(config))
    # codellm/2 was never registered, let alone gated: refused, and the table stays empty
    assert code == 2 and "refused: codellm/2" in out, out
    assert json.loads(_run("routes", "show", "--config", str(config))[1]) == []
    code, out = _run("routes", "set", json.dumps(table), "--ungated", "incident 42", "--config", str(config))
    assert code == 0 and "UNGATED (incident 42)" in out, out
    code, out = _run("routes", "show", "--config", str(config))
    assert [(r["slot"], r["weight"]) for r in json.loads(out)] == [("production", 95), ("canary", 5)]
    code, out = _run("routes", "set", json.dumps(table[:1]), "--config", str(config))
    assert code == 2 and "sum to 100" in out
    assert _run("routes", "set", "not json", "--config", str(config))[0] == 2


def test_serve_vllm_without_url_is_a_clear_error(config: Path) -> None:
    code, out = _run("serve", "--backend", "vllm", "--config", str(config))
    assert code == 2 and "vllm_url" in out


@pytest.mark.slow
def test_codellm_serve_subprocess_answers_and_drains_on_sigterm(config: Path, tiny_model: TinyModel) -> None:
    table = [{"slot": "production", "version": "base", "base_model_path": str(tiny_model.base), "weight": 100}]
    assert _run("routes", "set", json.dumps(table), "--config", str(config))[0] == 0
    key = _run("keys", "create", "--team", "bars", "--config", str(config))[1].strip().splitlines()[-1]
    port = pick_port()
    log = config.parent / "serve.log"
    cli = Path(sys.executable).with_name("codellm")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "codellm_assets.cli"]
    with log.open("w") as fh:
        proc = subprocess.Popen([*cmd, "serve", "--port", str(port), "--config", str(config)], stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.25)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        ids = [c.completions.create(model="codellm", prompt=f"def f{i}():\n", max_tokens=4).id for i in range(5)]
    finally:
        os.kill(proc.pid, signal.SIGTERM)                     # graceful: lifespan shutdown drains the store
        proc.wait(60)
    # uvicorn re-raises the caught SIGTERM after a graceful shutdown, so -15 is a clean exit too
    assert proc.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    assert "Application shutdown complete" in log.read_text()
    store = Store(f"sqlite:///{config.parent / 's.db'}")
    assert all(store.request(i)["status"] == "ok" for i in ids)
    store.close()


def test_vllm_doc_covers_every_preset_with_its_context_length() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "vllm.md").read_text()
    presets = yaml.safe_load((root / "codellm_assets" / "core" / "training" / "presets.yaml").read_text())
    for name, preset in presets.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| {name} |")), None)
        assert row is not None, f"docs/vllm.md has no row for preset {name}"
        assert f"| {preset['vllm_max_model_len']} |" in row, f"{name}: --max-model-len differs from presets.yaml"
        assert preset["hf_id"] is None or preset["hf_id"] in row
