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


def make_gateway(store: Store, backend: Any, routes: list[Route], **overrides: Any) -> Any:
    from codellm_assets.core.serving.gateway import Gateway

    settings = ServingSettings(**{"readiness_interval_s": 30.0, "route_refresh_s": 0.2, **overrides})
    store.set_routes(routes)
    return Gateway(settings, store, backend, default_routes=[], key_cache_s=0.2)


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
