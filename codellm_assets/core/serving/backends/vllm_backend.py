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
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
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


class VllmBackend(Backend):
    """See the module docstring. ``default_url``: the vLLM server for routes without an endpoint."""

    name = "vllm"

    def __init__(self, default_url: str | None = None, *, fim: FimTokens | None = None,
                 connect_timeout_s: float = 2.0, request_timeout_s: float = 300.0,
                 max_connections: int = 512) -> None:
        self.default_url = default_url.rstrip("/") if default_url else None
        self.default_fim = fim
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, _Target] = {}
        self._tokenizers: dict[str, Any | None] = {}

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self.max_connections))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
                await self._post(endpoint, "/v1/load_lora_adapter",
                                 {"lora_name": model, "lora_path": route.adapter_path}, expect_json=False)
        else:
            model = self._base_model_name(served, route, endpoint)
        if route.base_model_path not in self._tokenizers:
            self._tokenizers[route.base_model_path] = await asyncio.to_thread(load_local_tokenizer,
                                                                              route.base_model_path)
        served = served if model in served else await self._served_models(endpoint)
        max_len = (served.get(model) or {}).get("max_model_len")      # vLLM reports it per model
        self._targets[route.version] = _Target(endpoint, model, route, self._tokenizers[route.base_model_path],
                                               int(max_len) if max_len else None)
        log.info("vllm backend: version %s -> %s model %s", route.version, endpoint, model)

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
        tok = self.tokenizer(version)
        return (detect_fim(tok) if tok is not None else None) or self.default_fim

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
    def _payload(self, prompt: str, params: GenerationParams) -> tuple[_Target, dict[str, Any]]:
        target = self._targets.get(params.version)
        if target is None:
            raise BackendError(f"version '{params.version}' is not loaded; loaded: {self.versions()}")
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
        return target, body

    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        target, body = self._payload(prompt, params)
        data = await self._post(target.endpoint, "/v1/completions", body)
        try:
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            usage = data.get("usage") or {}
            return Generation(texts=[c.get("text") or "" for c in choices],
                              finish_reasons=[c.get("finish_reason") or "stop" for c in choices],
                              prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0), version=params.version)
        except (KeyError, TypeError, ValueError) as e:
            raise BackendError(f"malformed completion from {target.endpoint}: {e}") from e

    async def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        target, body = self._payload(prompt, params)
        body.update(stream=True, stream_options={"include_usage": True})
        finish, usage = None, {}
        try:
            async with self.session.post(f"{target.endpoint}/v1/completions", json=body) as r:
                if r.status >= 400:
                    self._raise_for(r.status, await r.text(), target.endpoint)
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

    async def _post(self, endpoint: str, path: str, body: dict[str, Any], *, expect_json: bool = True) -> Any:
        try:
            async with self.session.post(f"{endpoint}{path}", json=body) as r:
                text = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            raise BackendError(f"vLLM at {endpoint} unreachable: {e!r}") from e
        if status >= 400:
            self._raise_for(status, text, endpoint)
        if not expect_json:
            return text
        try:
            return json.loads(text)
        except ValueError as e:
            raise BackendError(f"vLLM at {endpoint} answered non-JSON: {text[:200]}") from e

    @staticmethod
    def _raise_for(status: int, text: str, endpoint: str) -> None:
        try:   # newer vLLM: {"error": {"message": ...}}; older: {"object": "error", "message": ...}
            data = json.loads(text)
            err = data.get("error")
            message = (err.get("message") if isinstance(err, dict) else err) or data.get("message") or text
        except (ValueError, AttributeError):
            message = text
        message = str(message)
        if 400 <= status < 500 and status not in (404, 408, 429):
            raise BackendRejected(f"vLLM rejected the request: {message[:500]}", status)
        raise BackendError(f"vLLM at {endpoint} answered {status}: {message[:300]}")
