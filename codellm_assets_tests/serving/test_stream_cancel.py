"""An IDE that keeps typing closes its stream: the real gateway (uvicorn, tiny model) must stop generating
(the backend's decode steps stay well under max_tokens) and record the request as cancelled, not as an
error, for each streaming protocol (OpenAI completions, Continue's FIM route, llama.cpp's /infill)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, serve_app, wait_ready

MAX_TOKENS = 400


@pytest.fixture(scope="module")
def served(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, str]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('cancel') / 'store.db'}")
    key = store.create_api_key("bars")
    backend = TransformersBackend(micro_batch_ms=0)
    gw = make_gateway(store, backend, [Route("production", "base", str(tiny_model.base), None, 100)])
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        yield url, gw, key
    store.close()


def _open_stream(url: str, key: str, path: str, body: str) -> socket.socket:
    """A raw HTTP/1.1 request (so the test decides exactly when the connection closes)."""
    u = urlsplit(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=30)
    sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode())
    return sock


def _read_events(sock: socket.socket, n: int) -> bytes:
    data = b""
    while data.count(b"data: ") < n:
        chunk = sock.recv(4096)
        assert chunk, f"the stream ended early: {data[-300:]!r}"
        data += chunk
    return data


def _settled(gw: Any, steps_before: int, timeout: float = 20.0) -> int:
    """Decode steps run since ``steps_before`` once the backend is idle again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not gw.backend.running and gw.backend._inbox.empty():
            time.sleep(0.1)
            if not gw.backend.running:
                return gw.backend.decode_steps - steps_before
        time.sleep(0.02)
    raise AssertionError("the backend did not become idle")


CASES = {
    "openai": ("/v1/completions", '{"prompt": "def add(a, b):\\n", "max_tokens": %d, "temperature": 0, '
               '"stream": true}'),
    "fim": ("/v1/fim/completions", '{"prompt": "def add(a, b):\\n", "suffix": "\\n", "max_tokens": %d, '
            '"temperature": 0, "stream": true}'),
    "llamacpp": ("/infill", '{"input_prefix": "def add(a, b):\\n", "input_suffix": "\\n", "n_predict": %d, '
                 '"temperature": 0, "stream": true}'),
}


@pytest.mark.parametrize("protocol", list(CASES))
def test_closing_the_stream_stops_generation_and_records_cancelled(served: tuple[str, Any, str],
                                                                   protocol: str) -> None:
    url, gw, key = served
    path, template = CASES[protocol]
    # uncancelled, the same request runs all MAX_TOKENS steps (the tiny model never stops early here)
    steps0 = gw.backend.decode_steps
    sock = _open_stream(url, key, path, template % MAX_TOKENS)
    while sock.recv(65536):
        pass
    sock.close()
    assert _settled(gw, steps0) == MAX_TOKENS
    # closed after three events: generation stops early, the log says cancelled
    steps1 = gw.backend.decode_steps
    sock = _open_stream(url, key, path, template % MAX_TOKENS)
    head = _read_events(sock, 3)
    sock.close()
    steps = _settled(gw, steps1)
    print(f"{protocol}: {steps} of {MAX_TOKENS} decode steps after closing at the third event")
    assert steps < MAX_TOKENS / 2, f"{steps} decode steps after the client left"
    cid = head.split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    gw.store.flush()
    row = gw.store.request(cid)
    assert row is not None and row["status"] == "cancelled" and row["protocol"] == protocol
    assert row["error"] is None and row["completion"]          # the text sent before the client left
    assert gw.store.window_stats().errors == 0
