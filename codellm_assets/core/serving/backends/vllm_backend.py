"""Proxy backend for vLLM's OpenAI-compatible server (``vllm serve BASE --enable-lora --lora-modules
name=path``), over HTTP. The gateway never imports vllm: vLLM pins its own torch/transformers
and runs in its own GPU image (docs/vllm.md has the command per preset).

Each version maps to (endpoint, served model name): the base model's name as vLLM lists it in
``/v1/models``, or a LoRA module named after the version (``codellm/3`` -> ``codellm-3``). A LoRA that the
server does not list yet is loaded at run time with ``POST /v1/load_lora_adapter`` (the server needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``). Versions may live on different servers (``Route.endpoint``),
e.g. the canary on its own replica set. The gateway renders prompts itself (FIM layout, chat template) with
the base model's tokenizer when ``base_model_path`` is a local directory, so context-length checks
happen before any request reaches vLLM.

The HTTP client is aiohttp, not httpx: on the hot path httpx/httpcore spend ~600 us of CPU per proxied
request against ~85 us for aiohttp (benchmarks/gateway.py; 2 cores), which alone would break the gateway's
"<= 2 ms added at p50" budget under load.

Two failures of a real vLLM are handled here, not surfaced as 503s:
- Under load vLLM closes kept-alive connections; a request written onto such a connection fails with
  ``ServerDisconnectedError`` / "Can not write request body" before vLLM ever saw it. It is sent once more on
  a fresh connection (a separate connector that never reuses one).
- A restarted vLLM serves only its ``--lora-modules``: adapters loaded at run time are gone and vLLM answers
  404 "The model `codellm-2` does not exist". The version is re-loaded (``/v1/load_lora_adapter``, or the
  base model's new name) and the request sent again; :meth:`VllmBackend.resync`, called by the gateway's
  maintenance loop, notices a changed model list before a request does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from codellm_assets.core.serving.backends.base import (
    Backend,
    BackendError,
    BackendRejected,
    FimTokens,
    Generation,
    GenerationParams,
    StreamDelta,
    detect_fim,
    load_local_tokenizer,
)
from codellm_assets.core.serving.routes import Route

log = logging.getLogger(__name__)


def lora_name(version: str) -> str:
    """vLLM LoRA module name for a version: ``codellm/3`` -> ``codellm-3``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version)


@dataclass
class _Target:
    endpoint: str
    model: str
    route: Route
    tokenizer: Any | None
    max_model_len: int | None = None
    fim: FimTokens | None = None          # detected once: get_vocab() copies the whole vocabulary


class ModelMissing(BackendError):
    """vLLM answered 404 for the model name: it restarted (runtime-loaded adapters are gone) or renamed."""


# Failures of a request that never reached vLLM: the connection was closed under us while writing.
# ClientConnectorError (connection refused: the server is down) is a ClientOSError too, but a retry would
# only fail again; it is excluded.
def _never_reached(e: BaseException) -> bool:
    if isinstance(e, aiohttp.ClientConnectorError):
        return False
    return isinstance(e, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError))


class VllmBackend(Backend):
    """See the module docstring. ``default_url``: the vLLM server for routes without an endpoint."""

    name = "vllm"
    startup_wait_s = 30.0     # the gateway starts serving after its first routing pass (or this long)

    def __init__(self, default_url: str | None = None, *, fim: FimTokens | None = None,
                 connect_timeout_s: float = 2.0, request_timeout_s: float = 300.0,
                 max_connections: int = 512, resync_s: float = 5.0) -> None:
        self.default_url = default_url.rstrip("/") if default_url else None
        self.default_fim = fim
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None      # force_close: every request on a new connection
        self._targets: dict[str, _Target] = {}
        self._tokenizers: dict[str, Any | None] = {}
        self._reload_locks: dict[str, asyncio.Lock] = {}
        self.resync_s = resync_s
        self._next_resync = 0.0
        self.reloads = 0              # versions re-loaded after a vLLM restart (tests and logs)
        self.fresh_retries = 0        # requests re-sent on a fresh connection

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self.max_connections))
            self._fresh = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self.max_connections,
                                                                      force_close=True))

    async def close(self) -> None:
        for s in (self._session, self._fresh):
            if s is not None:
                await s.close()
        self._session = self._fresh = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendError("the vllm backend is not started")
        return self._session

    # ---- versions -------------------------------------------------------------------------------------
    async def load_version(self, route: Route) -> None:
        known = self._targets.get(route.version)
        if known and known.route == route:
            return
        endpoint = (route.endpoint or self.default_url or "").rstrip("/")
        if not endpoint:
            raise BackendError(f"version '{route.version}': no vLLM endpoint; set serving.vllm_url or the "
                               "route's endpoint")
        served = await self._served_models(endpoint)
        if route.adapter_path:
            model = lora_name(route.version)
            if model not in served:
                await self._load_lora(endpoint, model, route.adapter_path)
        else:
            model = self._base_model_name(served, route, endpoint)
        if route.base_model_path not in self._tokenizers:
            self._tokenizers[route.base_model_path] = await asyncio.to_thread(load_local_tokenizer,
                                                                              route.base_model_path)
        served = served if model in served else await self._served_models(endpoint)
        max_len = (served.get(model) or {}).get("max_model_len")      # vLLM reports it per model
        tok = self._tokenizers[route.base_model_path]
        fim = (detect_fim(tok, route.base_model_path) if tok is not None else None) or self.default_fim
        self._targets[route.version] = _Target(endpoint, model, route, tok, int(max_len) if max_len else None,
                                               fim)
        log.info("vllm backend: version %s -> %s model %s", route.version, endpoint, model)

    async def _load_lora(self, endpoint: str, model: str, path: str) -> None:
        try:
            await self._post(endpoint, "/v1/load_lora_adapter", {"lora_name": model, "lora_path": path},
                             expect_json=False)
        except BackendRejected as e:
            if "already" not in str(e):     # loaded meanwhile (another gateway replica): that is success
                raise

    async def reload(self, version: str, seen: _Target | None = None) -> _Target:
        """Load ``version`` again (vLLM restarted). One reload at a time per version: requests that failed
        together wait for the first one's reload instead of each loading the adapter."""
        lock = self._reload_locks.setdefault(version, asyncio.Lock())
        async with lock:
            current = self._targets.get(version)
            if current is None:
                raise BackendError(f"version '{version}' is not loaded; loaded: {self.versions()}")
            if seen is not None and current is not seen:
                return current              # somebody reloaded it while we waited
            self._targets.pop(version, None)
            try:
                await self.load_version(current.route)
            except BaseException:
                self._targets.setdefault(version, current)
                raise
            self.reloads += 1
            log.warning("vllm backend: version %s re-loaded on %s (vLLM restarted?)", version, current.endpoint)
            return self._targets[version]

    async def resync(self) -> None:
        """Re-load every version whose model the server no longer lists (a restart dropped runtime-loaded
        adapters). One ``/v1/models`` per endpoint, at most every ``resync_s``: called by the gateway's
        maintenance loop every second, and a request that hits the 404 first re-loads on its own."""
        now = time.monotonic()
        if now < self._next_resync:
            return
        self._next_resync = now + self.resync_s
        by_endpoint: dict[str, list[_Target]] = {}
        for t in list(self._targets.values()):
            by_endpoint.setdefault(t.endpoint, []).append(t)
        for endpoint, targets in by_endpoint.items():
            try:
                served = await self._served_models(endpoint)
            except BackendError:
                continue               # down: readiness reports it; the next pass re-checks
            for t in targets:
                if t.model not in served:
                    try:
                        await self.reload(t.route.version, t)
                    except (BackendError, BackendRejected) as e:
                        log.error("vllm backend: cannot re-load %s on %s: %s", t.route.version, endpoint, e)

    @staticmethod
    def _base_model_name(served: dict[str, dict[str, Any]], route: Route, endpoint: str) -> str:
        if route.base_model_path in served:
            return route.base_model_path
        bases = [m for m, info in served.items() if not info.get("parent")]
        if not bases:
            raise BackendError(f"{endpoint}/v1/models lists no base model")
        return bases[0]

    async def _served_models(self, endpoint: str) -> dict[str, dict[str, Any]]:
        try:
            async with self.session.get(f"{endpoint}/v1/models") as r:
                r.raise_for_status()
                return {m["id"]: m for m in (await r.json(content_type=None)).get("data", [])}
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as e:
            raise BackendError(f"vLLM at {endpoint} does not answer /v1/models: {e!r}") from e

    def versions(self) -> list[str]:
        return list(self._targets)

    def tokenizer(self, version: str) -> Any | None:
        target = self._targets.get(version)
        return target.tokenizer if target else None

    def max_context(self, version: str) -> int | None:
        target = self._targets.get(version)
        return target.max_model_len if target else None

    def fim(self, version: str) -> FimTokens | None:
        target = self._targets.get(version)
        return target.fim if target else self.default_fim

    async def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for endpoint in sorted({t.endpoint for t in self._targets.values()}):
            try:
                async with self.session.get(f"{endpoint}/health", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    out[endpoint] = r.status == 200
            except (TimeoutError, aiohttp.ClientError):
                out[endpoint] = False
        return {"ok": bool(out) and all(out.values()), "endpoints": out, "versions": self.versions()}

    # ---- generation -----------------------------------------------------------------------------------
    def _target(self, version: str) -> _Target:
        target = self._targets.get(version)
        if target is None:
            raise BackendError(f"version '{version}' is not loaded; loaded: {self.versions()}")
        return target

    @staticmethod
    def _body(target: _Target, prompt: str, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {"model": target.model, "prompt": prompt, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p, "n": params.n}
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        return body

    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        target = self._target(params.version)
        try:
            data = await self._post(target.endpoint, "/v1/completions", self._body(target, prompt, params))
        except ModelMissing:
            target = await self.reload(params.version, target)
            data = await self._post(target.endpoint, "/v1/completions", self._body(target, prompt, params))
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            return Generation(texts=[c.get("text") or "" for c in choices],
                              finish_reasons=[c.get("finish_reason") or "stop" for c in choices],
                              prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0), version=params.version)
        except (KeyError, TypeError, ValueError) as e:
            raise BackendError(f"malformed completion from {target.endpoint}: {e}") from e

    async def _open_stream(self, target: _Target, prompt: str, params: GenerationParams) -> aiohttp.ClientResponse:
        """The streaming response, status checked; nothing has been read from it yet, so a fresh-connection
        retry or a reload-and-retry cannot duplicate text."""
        body = self._body(target, prompt, params)
        body.update(stream=True, stream_options={"include_usage": True})
        url = f"{target.endpoint}/v1/completions"
        try:
            r = await self.session.post(url, json=body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            if not _never_reached(e) or self._fresh is None:
                raise
            self.fresh_retries += 1
            r = await self._fresh.post(url, json=body)
        if r.status >= 400:
            text = await r.text()
            r.release()
            self._raise_for(r.status, text, target.endpoint)
        return r

    async def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        target = self._target(params.version)
        finish, usage = None, {}
        try:
            try:
                r = await self._open_stream(target, prompt, params)
            except ModelMissing:
                target = await self.reload(params.version, target)
                r = await self._open_stream(target, prompt, params)
            async with r:
                async for raw in r.content:          # one SSE line at a time
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if chunk.get("error"):
                        raise BackendError(f"{target.endpoint}: {chunk['error']}")
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        finish = choice.get("finish_reason") or finish
                        if choice.get("text"):
                            yield StreamDelta(choice["text"])
        except (TimeoutError, aiohttp.ClientError) as e:
            raise BackendError(f"vLLM at {target.endpoint} failed mid-stream: {e!r}") from e
        except ValueError as e:
            raise BackendError(f"malformed stream from {target.endpoint}: {e}") from e
        if finish is None:
            raise BackendError(f"the stream from {target.endpoint} ended without a finish reason")
        yield StreamDelta("", finish_reason=finish, prompt_tokens=usage.get("prompt_tokens"),
                          completion_tokens=usage.get("completion_tokens"))

    async def _send(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, bytes]:
        async with session.post(url, json=body) as r:
            return r.status, await r.read()

    async def _post(self, endpoint: str, path: str, body: dict[str, Any], *, expect_json: bool = True) -> Any:
        url = f"{endpoint}{path}"
        try:
            try:
                status, raw = await self._send(self.session, url, body)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                if not _never_reached(e) or self._fresh is None:
                    raise
                self.fresh_retries += 1          # once, on a connection nobody used before
                log.info("vllm backend: %s on a kept-alive connection; re-sent on a fresh one", type(e).__name__)
                status, raw = await self._send(self._fresh, url, body)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise BackendError(f"vLLM at {endpoint} unreachable: {e!r}") from e
        if status >= 400:
            self._raise_for(status, raw.decode("utf-8", "replace"), endpoint)
        try:
            return json.loads(raw) if expect_json else raw.decode("utf-8", "replace")
        except ValueError as e:
            raise BackendError(f"vLLM at {endpoint} answered non-JSON: {raw[:200]!r}") from e

    @staticmethod
    def _raise_for(status: int, text: str, endpoint: str) -> None:
        try:   # newer vLLM: {"error": {"message": ...}}; older: {"object": "error", "message": ...}
            data = json.loads(text)
            err = data.get("error")
            message = (err.get("message") if isinstance(err, dict) else err) or data.get("message") or text
        except (ValueError, AttributeError):
            message = text
        message = str(message)
        if status == 404 and "does not exist" in message:
            raise ModelMissing(f"vLLM at {endpoint}: {message[:300]}")
        if 400 <= status < 500 and status not in (404, 408, 429):
            raise BackendRejected(f"vLLM rejected the request: {message[:500]}", status)
        raise BackendError(f"vLLM at {endpoint} answered {status}: {message[:300]}")
