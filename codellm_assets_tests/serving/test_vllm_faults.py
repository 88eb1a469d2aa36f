"""Faults of a vLLM server that the real one produces only by chance under load, injected by a raw-socket
stand-in: a kept-alive connection closed under a request that never reached the server
(``ServerDisconnectedError`` / "Can not write request body") is retried once on a fresh connection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import openai
import pytest

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.vllm_backend import VllmBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, pick_port, serve_app, wait_ready


@dataclass
class DroppingServer:
    """Answers the first request on every connection; closes the connection, unanswered, on the second (what
    vLLM's HTTP server does to a kept-alive connection it times out just as the client reuses it)."""

    port: int
    dropped: int = 0
    answered: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *headers = head.decode().split("\r\n")
                length = next((int(h.split(":")[1]) for h in headers if h.lower().startswith("content-length")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                path = line.split()[1]
                if served and path == "/v1/completions":
                    self.dropped += 1
                    return                      # close without a byte of answer
                served += 1
                self.answered.append(path)
                writer.write(self._answer(path, body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @staticmethod
    def _answer(path: str, body: dict) -> bytes:
        if path == "/v1/models":
            data = {"data": [{"id": "base", "parent": None, "max_model_len": 256}]}
            payload, ctype = json.dumps(data), "application/json"
        elif body.get("stream"):
            chunks = [{"choices": [{"index": 0, "text": " ok", "finish_reason": None}]},
                      {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]},
                      {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}]
            payload, ctype = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n", \
                "text/event-stream"
        else:
            data = {"choices": [{"index": 0, "text": " ok", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
            payload, ctype = json.dumps(data), "application/json"
        raw = payload.encode()
        return (f"HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {len(raw)}\r\n"
                "connection: keep-alive\r\n\r\n").encode() + raw


@pytest.fixture
def dropping_server() -> Iterator[DroppingServer]:
    server = DroppingServer(pick_port())
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def main() -> None:
        srv = await asyncio.start_server(server.handle, "127.0.0.1", server.port)
        started.set()
        async with srv:
            with contextlib.suppress(asyncio.CancelledError):
                await srv.serve_forever()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    for task in asyncio.all_tasks(loop):
        loop.call_soon_threadsafe(task.cancel)
    thread.join(10)


def test_a_request_on_a_closed_kept_alive_connection_is_sent_again_on_a_fresh_one(
        tiny_model: TinyModel, store: Store, dropping_server: DroppingServer) -> None:
    key = store.create_api_key("bars")
    backend = VllmBackend(dropping_server.url)
    gw = make_gateway(store, backend, [Route("production", "base", str(tiny_model.base), None, 100)])
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        for i in range(6):
            stream = i % 2 == 1
            r = c.completions.create(model="codellm", prompt="x", max_tokens=1, stream=stream)
            text = "".join(ch.choices[0].text for ch in r if ch.choices) if stream else r.choices[0].text
            assert text == " ok"
    assert dropping_server.dropped >= 3 and backend.fresh_retries == dropping_server.dropped
    assert dropping_server.answered.count("/v1/completions") >= 7        # probe + 6, each answered once


def test_a_dead_server_is_not_retried() -> None:
    """Connection refused is not 'never reached a live server': no second attempt, a BackendError."""
    from codellm_assets.core.serving.backends.base import BackendError

    async def run() -> None:
        dead = f"http://127.0.0.1:{pick_port()}"
        backend = VllmBackend(dead)
        await backend.start()
        try:
            with pytest.raises(BackendError, match="unreachable"):
                await backend._post(dead, "/v1/completions", {"model": "base", "prompt": "x"})
            assert backend.fresh_retries == 0
        finally:
            await backend.close()

    asyncio.run(run())
