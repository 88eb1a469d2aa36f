"""Fixtures for the serving tests: a tiny real model + LoRA adapter (session-scoped), the gateway served by
a real uvicorn server on a free loopback port (in a thread), stand-in vLLM servers as real subprocesses
stopped by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets.settings import ServingSettings
from codellm_assets.testing.tiny_model import build_tiny_adapter, build_tiny_model


def pick_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TinyModel:
    base: Path
    adapter: Path
    adapter2: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny-model")
    base = build_tiny_model(root / "base")
    return TinyModel(base, build_tiny_adapter(base, root / "adapter", seed=1),
                     build_tiny_adapter(base, root / "adapter2", seed=2))


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None) -> Iterator[str]:
    """Run ``app`` under a real uvicorn server in a thread; yields its base URL; stops it (lifespan shutdown)."""
    import uvicorn

    port = port or pick_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                          access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_ready(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base_url} not ready: {httpx.get(f'{base_url}/readyz').text}")


def make_gateway(store: Store, backend: Any, routes: list[Route], *, repo_context: Any = None,
                 **overrides: Any) -> Any:
    from codellm_assets.core.serving.gateway import Gateway

    settings = ServingSettings(**{"readiness_interval_s": 30.0, "route_refresh_s": 0.2, **overrides})
    store.set_routes(routes)
    return Gateway(settings, store, backend, default_routes=[], key_cache_s=0.2, repo_context=repo_context)


@contextlib.contextmanager
def tiny_gateway(base: Path | str, store_dir: Path, user: str = "bars",
                 **overrides: Any) -> Iterator[tuple[str, Store, Any, str]]:
    """(url, store, gateway, api key) of a gateway serving ``base`` on the transformers backend over a real
    uvicorn server, ready; closes the store after it stopped."""
    from codellm_assets.core.serving.app import create_app
    from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend

    store = Store(f"sqlite:///{Path(store_dir) / 'store.db'}")
    key = store.create_api_key(user)
    gateway = make_gateway(store, TransformersBackend(micro_batch_ms=0),
                           [Route("production", "base", str(base), None, 100)], **overrides)
    try:
        with serve_app(create_app(gateway)) as url:
            wait_ready(url)
            yield url, store, gateway, key
    finally:
        store.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


@dataclass
class StandIn:
    url: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/stats", timeout=5).json()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def standin() -> Iterator[Callable[..., StandIn]]:
    """Factory: ``standin(tag="prod", delay_ms=0)`` -> a stand-in vLLM server subprocess on a free port."""
    started: list[StandIn] = []

    def start(tag: str = "standin", *, delay_ms: float = 0, token_delay_ms: float = 0,
              loras: tuple[str, ...] = ()) -> StandIn:
        port = pick_port()
        cmd = [sys.executable, "-m", "codellm_assets.testing.standin", "--port", str(port), "--tag", tag,
               "--delay-ms", str(delay_ms), "--token-delay-ms", str(token_delay_ms)]
        for name in loras:
            cmd += ["--lora", name]
        proc = subprocess.Popen(cmd, start_new_session=True)
        s = StandIn(f"http://127.0.0.1:{port}", proc)
        started.append(s)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{s.url}/health", timeout=1).status_code == 200:
                    return s
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"stand-in {tag} did not start")
            time.sleep(0.05)

    yield start
    for s in started:
        s.kill()


# ---- a real vLLM server (CPU build, its own venv) -------------------------------------------------------

@dataclass
class RealVllm:
    """One vLLM server for the whole session: the tiny model (head_dim 32) with adapter ``codellm-2`` served
    from the start (``--lora-modules``); ``adapter3``/``adapter4`` are for run-time loading."""

    process: Any
    base: Path
    adapter2: Path
    adapter3: Path
    adapter4: Path
    start_s: float

    @property
    def url(self) -> str:
        return self.process.url

    def restart(self) -> float:
        """Stop and start again on the same port (runtime-loaded adapters are gone); seconds to ready."""
        self.process.stop()
        self.process.start()
        return self.process.wait_ready()


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVllm]:
    """Started once per session (60-90 s on 2 cores). Without the venv: skipped locally, FAILED in CI
    (.ci/run installs it), so the vllm tests never pass by not running."""
    from codellm_assets.core.serving.backends.vllm_server import INSTALL_HINT, VllmCommand, VllmProcess, vllm_python

    python = vllm_python(os.environ.get("CODELLM__SERVING__VLLM_VENV"))     # the settings' env override
    if python is None:
        if os.environ.get("CI"):
            pytest.fail(f"the vLLM venv is missing in CI: {INSTALL_HINT}")
        pytest.skip(f"no vLLM venv: {INSTALL_HINT}")
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("vllm")
    base = build_tiny_model(root / "base", heads=2)
    adapters = [build_tiny_adapter(base, root / f"adapter{i}", seed=i) for i in (2, 3, 4)]
    cmd = VllmCommand(python, str(base), pick_port(), loras={"codellm-2": str(adapters[0])}, max_model_len=256,
                      max_lora_rank=8, max_loras=4)
    proc = VllmProcess(cmd, root / "vllm.log").start()
    try:
        start_s = proc.wait_ready(timeout_s=600)
        yield RealVllm(proc, base, *adapters, start_s=start_s)
    finally:
        proc.stop()
