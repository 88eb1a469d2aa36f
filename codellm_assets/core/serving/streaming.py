"""Streaming generation with the same guarantees as the non-streaming path: the first piece is fetched
BEFORE the response starts (so a dead canary is retried on production and the version header is right),
and a canary that dies mid-stream is continued by production from the text streamed so far - the user
still gets a whole answer. Everything is recorded when the stream ends, however it ends."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from codellm_assets.core.serving.backends.base import BackendRejected, GenerationParams, StreamDelta
from codellm_assets.core.serving.gateway import (
    RETRYABLE,
    Gateway,
    PromptSpec,
    RequestContext,
    new_id,
)
from codellm_assets.core.serving.healing import HealedStream
from codellm_assets.core.serving.protocol import ApiError
from codellm_assets.core.serving.router import Decision

_DONE = object()


async def _first(agen: AsyncIterator[StreamDelta], timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(agen.__anext__(), timeout)
    except StopAsyncIteration:
        return _DONE


async def _aclose(agen: Any) -> None:
    # closing a broken stream must not mask the real outcome
    with contextlib.suppress(BaseException):
        await agen.aclose()


class StreamSession:
    """An opened stream: ``id``, ``slot``, ``version`` are known before the first byte is sent."""

    def __init__(self, gw: Gateway, ctx: RequestContext, spec: PromptSpec, params: GenerationParams) -> None:
        self.gw, self.ctx, self.spec, self.asked = gw, ctx, spec, params
        self.id = new_id(ctx.kind)
        self.error: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.finish_reason: str | None = None
        self.parts: list[str] = []          # the text handed out so far (recorded however the stream ends)
        self._finalized = False
        self._stop_requested = False

    @property
    def slot(self) -> str:
        return self.decision.slot

    @property
    def version(self) -> str:
        return self.decision.route.version

    async def open(self) -> StreamSession:
        """Route, render, start the backend stream and fetch its first piece (canary -> production)."""
        gw = self.gw
        self.decision = gw.decide(self.ctx)
        self.t0 = time.perf_counter()
        self.spec = await gw.context.add(self.ctx, self.spec, self.version, self.asked.max_tokens)
        self._prepare()
        gw.metrics.inflight.inc()
        try:
            if self.decision.slot == "canary":
                try:
                    await self._start(gw.settings.canary_timeout_s)
                    return self
                except RETRYABLE as e:
                    gw.canary_failed(self.id, self.ctx, self.decision.route, self.prompt, e, self.t0)
                    self.decision = Decision("production", gw.router.table.production)
                    self._prepare()
            try:
                await self._start(None)
            except RETRYABLE as e:
                gw.record_failure(self.id, self.ctx, self.decision, self.prompt, e, self.t0)
                raise ApiError(503, f"generation failed: {e}", type="server_error",
                               code="backend_unavailable") from e
            return self
        except BackendRejected as e:
            gw.metrics.inflight.dec()
            raise ApiError(e.status, str(e)) from e
        except BaseException:
            gw.metrics.inflight.dec()
            raise

    def _prepare(self) -> None:
        rendered = self.gw.render(self.spec, self.version, self.asked.max_tokens)
        self.prompt = rendered.prompts[0]
        params, after = self.gw.params_for(self.asked, rendered)
        self.params = replace(params, version=self.version)
        if not self.parts:          # a canary's stream taken over mid-answer keeps its healing state
            self.removed, self.healing = rendered.removed[0], HealedStream(rendered.removed[0], after)

    async def _start(self, timeout: float | None) -> None:
        self.agen = self.gw.backend.stream(self.prompt, self.params)
        try:
            self.first = await _first(self.agen, timeout)
        except BaseException:
            await _aclose(self.agen)
            raise

    async def deltas(self) -> AsyncIterator[StreamDelta]:
        """The answer's pieces. On a backend failure after production took over, ``error`` is set and the
        iteration ends (the caller reports it in-stream)."""
        parts = self.parts
        status = "ok"
        pending = self.first
        try:
            while True:
                try:
                    if pending is not None:
                        delta, pending = pending, None
                    else:
                        timeout = self.gw.settings.canary_timeout_s if self.slot == "canary" else None
                        delta = await _first(self.agen, timeout)
                    if delta is _DONE:
                        held = self.healing.flush()
                        if held:
                            parts.append(held)
                            yield StreamDelta(held)
                        break
                except RETRYABLE as e:
                    if self.slot != "canary":
                        status, self.error = "error", f"generation failed mid-stream: {e}"
                        self.gw.record_failure(self.id, self.ctx, self.decision, self.prompt, e, self.t0)
                        return
                    await self._continue_on_production(e, "".join(parts))
                    continue
                text = self.healing.feed(delta.text) if delta.text else ""
                if text:
                    parts.append(text)
                    yield replace(delta, text=text)
                    if self._stop_requested:        # the protocol's own limit (llama.cpp t_max_predict_ms)
                        self.finish_reason = "length"
                        break
                if self.healing.stopped:            # a stop the backend was not given (it matched the cut)
                    self.finish_reason = "stop"
                    break
                if delta.finish_reason:
                    self.finish_reason = delta.finish_reason
                    self.prompt_tokens = delta.prompt_tokens
                    self.completion_tokens = delta.completion_tokens
            if self.slot == "canary":
                self.gw.router.canary_succeeded()
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"          # the client went away; stop generating
            raise
        finally:
            await self._finalize("".join(parts), status)

    def stop(self) -> None:
        """End the answer after the piece just handed out, as a normal (ok, ``length``) answer."""
        self._stop_requested = True

    async def abandon(self) -> None:
        """Called after the response, however it ended: a client that left (before the first byte, or
        mid-stream: the server's send failed and ``deltas`` was never resumed) - close the backend stream so
        generation stops, settle the gauge, record the request as cancelled with the text sent so far."""
        await self._finalize("".join(self.parts), "cancelled")

    async def _finalize(self, text: str, status: str) -> None:
        if self._finalized:
            return
        self._finalized = True
        await _aclose(self.agen)
        self.gw.metrics.inflight.dec()
        if self.error is None:
            self._record(text, status)

    async def _continue_on_production(self, error: BaseException, so_far: str) -> None:
        gw = self.gw
        gw.canary_failed(self.id, self.ctx, self.decision.route, self.prompt, error, self.t0)
        await _aclose(self.agen)
        used = gw.backend.count_tokens(self.version, so_far) or len(so_far) // 4
        self.decision = Decision("production", gw.router.table.production)
        self._prepare()
        self.params = replace(self.params, max_tokens=max(1, self.params.max_tokens - used))
        # the healed whitespace is part of what the user got before so_far (HealedStream took it off)
        self.agen = gw.backend.stream(self.prompt + (self.removed if so_far else "") + so_far, self.params)

    def _record(self, text: str, status: str) -> None:
        latency = time.perf_counter() - self.t0
        completion_tokens = self.completion_tokens
        if completion_tokens is None:
            completion_tokens = self.gw.backend.count_tokens(self.version, text) or 0
        self.gw.record_success(self.ctx, self.id, self.decision, self.prompt, text, latency,
                               self.prompt_tokens or 0, completion_tokens, self.spec, self.params, status=status)
