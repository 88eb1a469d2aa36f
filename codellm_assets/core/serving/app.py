"""The HTTP face of the gateway: an OpenAI-compatible FastAPI app (``/v1/completions``,
``/v1/chat/completions``, ``/v1/models``) plus ``/v1/feedback``, ``/v1/admin/routing``, ``/metrics``,
``/healthz``, ``/readyz``, and the IDE clients' own shapes (core/serving/protocols: Tabby's API, llama.cpp's
``/infill``, Continue's ``/v1/fim/completions``). Order per request: API key (401) -> rate limit (429) ->
body validation (400) -> routing and prompt checks (400) -> generation. Every answer names its completion id
and the version that served it (``x-codellm-version`` header, ``model`` and ``system_fingerprint`` fields)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from codellm_assets.core.serving.auth import bearer_key, request_identity
from codellm_assets.core.serving.gateway import Gateway, PromptSpec, RequestContext, Served
from codellm_assets.core.serving.protocol import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    FeedbackRequest,
    RoutingRequest,
    error_body,
    validation_message,
)
from codellm_assets.core.serving.protocols import Deps, include_ide_routes, tabby
from codellm_assets.core.serving.protocols.common import SessionStream, repo_names, sse
from codellm_assets.core.serving.protocols.common import headers as version_headers
from codellm_assets.core.serving.protocols.openai_extras import model_list
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import ApiKey
from codellm_assets.core.serving.streaming import StreamSession

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 8 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)


def _fingerprint(slot: str, version: str) -> str:
    return f"codellm:{version}:{slot}"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def create_app(gw: Gateway) -> FastAPI:
    """The FastAPI app for ``gw``; its lifespan starts and stops the gateway (store drained on shutdown)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(title="codellm gateway", version="1", lifespan=lifespan)
    app.state.gateway = gw
    _install_error_handlers(app, gw)

    async def authenticate(request: Request) -> ApiKey:
        try:
            info = await gw.auth.authenticate(_request_key(request))
        except ApiError:
            gw.metrics.requests.labels(version="", slot="", status="unauthorized").inc()
            raise
        try:
            gw.limiter.check(info.prefix)
        except ApiError:
            gw.metrics.requests.labels(version="", slot="", status="rate_limited").inc()
            raise
        return info

    async def parse(request: Request, model: type[M]) -> M:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"null")
        except ValidationError as e:
            gw.metrics.requests.labels(version="", slot="", status="bad_request").inc()
            message, param = validation_message(e.errors())
            raise ApiError(400, message, param=param, code="invalid_request") from None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        prod = gw.router.table.production
        if gw.ready():
            return JSONResponse({"status": "ready", "production": prod.version if prod else None,
                                 "versions": [r.version for r in gw.router.table.routes()]})
        reason = gw.last_error or gw.route_error or "loading the model / first generation pending"
        # Probes are unauthenticated; the raw reason can name backend URLs and model paths, so only an
        # admin key sees it (the log always has it).
        detail = reason if await _is_admin_request(gw, request) else redact_internal(reason)
        return JSONResponse({"status": "not ready", "reason": detail}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(gw.metrics.render(), media_type=gw.metrics.content_type)

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        await authenticate(request)
        return model_list(gw)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        key = await authenticate(request)
        small = int(request.headers.get("content-length") or 0) <= MAX_BODY_BYTES     # else parse() says 413
        if small and tabby.is_tabby_body(await request.body()):   # Tabby's agent posts its shape to this path
            return await tabby.complete(deps, request, key)
        body = await parse(request, CompletionRequest)
        ctx = RequestContext(user=request_identity(key, body.user), team=key.team, model=body.model,
                             language=body.language, kind="completion", repo_names=repo_names(request, body.repo),
                             filepath=body.filepath)
        spec = PromptSpec(prompts=body.prompts, suffix=body.suffix)
        params = body.to_generation_params()
        if body.stream and len(body.prompts) == 1 and body.n == 1:
            session = await StreamSession(gw, ctx, spec, params).open()
            echo = body.prompts[0] if body.echo else ""
            return SessionStream(session, _completion_events(session, body, echo))
        served = await gw.complete(ctx, spec, params)
        payload = _completion_json(served, body)
        if body.stream:      # several prompts or choices: one chunk per choice, then [DONE]
            return StreamingResponse(_replay_events(payload, "text_completion", body),
                                     media_type="text/event-stream",
                                     headers=version_headers(served.id, served.slot, served.version))
        return JSONResponse(payload, headers=version_headers(served.id, served.slot, served.version))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        key = await authenticate(request)
        body = await parse(request, ChatCompletionRequest)
        try:
            messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        except ValueError as e:
            raise ApiError(400, str(e), param="messages") from e
        ctx = RequestContext(user=request_identity(key, body.user), team=key.team, model=body.model,
                             language=body.language, kind="chat")
        explicit = body.max_tokens is not None or body.max_completion_tokens is not None
        spec = PromptSpec(messages=messages, max_tokens_explicit=explicit)
        params = body.to_generation_params()
        if body.stream and body.n == 1:
            session = await StreamSession(gw, ctx, spec, params).open()
            return SessionStream(session, _chat_events(session, body))
        served = await gw.complete(ctx, spec, params)
        payload = _chat_json(served)
        if body.stream:
            return StreamingResponse(_replay_events(payload, "chat.completion.chunk", body),
                                     media_type="text/event-stream",
                                     headers=version_headers(served.id, served.slot, served.version))
        return JSONResponse(payload, headers=version_headers(served.id, served.slot, served.version))

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> dict[str, Any]:
        key = await authenticate(request)
        body = await parse(request, FeedbackRequest)
        info = await asyncio.to_thread(gw.store.completion_info, body.completion_id)
        if info is None or (info.get("team") != key.team and not key.admin):
            raise ApiError(404, f"unknown completion_id '{body.completion_id}'", param="completion_id",
                           code="completion_not_found")
        survival = body.survival
        gw.store.record_feedback(
            body.completion_id, body.event, final_code=body.final_code, reason=body.reason,
            elapsed_ms=body.elapsed_ms, survival_after_s=survival.after_s if survival else None,
            survival_fraction=survival.fraction if survival else None, user=info.get("user"),
            version=info.get("version"), api_key=key.prefix)
        gw.metrics.feedback.labels(event=body.event, version=info.get("version") or "").inc()
        return {"object": "feedback", "completion_id": body.completion_id, "event": body.event,
                "status": "recorded"}

    @app.get("/v1/admin/routing")
    async def get_routing(request: Request) -> dict[str, Any]:
        await _admin(await authenticate(request))
        return _routing_json(gw)

    @app.post("/v1/admin/routing")
    async def post_routing(request: Request) -> dict[str, Any]:
        await _admin(await authenticate(request))
        body = await parse(request, RoutingRequest)
        await gw.set_routes([Route(**r.model_dump()) for r in body.routes])
        return _routing_json(gw)

    deps = Deps(gw, authenticate, parse)
    include_ide_routes(app, deps)
    return app


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\")]+", re.IGNORECASE)
_ABS_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")


def redact_internal(text: str) -> str:
    """``text`` without URLs and absolute paths (an unauthenticated caller learns why, not where)."""
    return _ABS_PATH.sub("<path>", _URL.sub("<url>", text))


def _request_key(request: Request) -> str | None:
    headers = request.headers
    return bearer_key(headers.get("authorization"), headers.get("api-key") or headers.get("x-api-key"))


async def _is_admin_request(gw: Gateway, request: Request) -> bool:
    """Whether the request carries a valid admin key (no 401, no rate-limit count: a probe may call it)."""
    key = _request_key(request)
    if not key:
        return False
    try:
        return (await gw.auth.authenticate(key)).admin
    except ApiError:
        return False


async def _admin(key: ApiKey) -> None:
    if not key.admin:
        raise ApiError(403, "this endpoint needs an admin key (`codellm keys create --team NAME --admin`)",
                       type="permission_error", code="forbidden")


def _routing_json(gw: Gateway) -> dict[str, Any]:
    return {"routes": [r.__dict__ for r in gw.router.table.routes()], "error": gw.route_error}


def _install_error_handlers(app: FastAPI, gw: Gateway) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        if e.status >= 500:     # a server-side failure: its text (backend URLs, exception reprs) stays in the log
            body = error_body(_server_message(e.code, e.message), e.type, e.code, e.param)
            return JSONResponse(body, status_code=e.status, headers=e.headers)
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, e: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(e.errors()))
        return JSONResponse(error_body(message, param=param, code="invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if e.status_code == 404 else "http_error"
        return JSONResponse(error_body(str(e.detail), code=kind), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, e: Exception) -> JSONResponse:
        # The exception stays in the log, under an id the client can quote: its text may hold paths,
        # internal hosts or pieces of other requests, none of which a client may see.
        error_id = uuid.uuid4().hex[:12]
        log.exception("unhandled error %s", error_id)
        return JSONResponse(error_body(f"internal error (id {error_id}); the gateway log has the details",
                                       type="server_error", code="internal_error"), status_code=500)


_SERVER_MESSAGES = {"backend_unavailable": "generation failed; retry shortly",
                    "model_not_ready": "the model is still loading; retry shortly"}


def _server_message(code: str | None, detail: str) -> str:
    """What a client sees of a server-side failure: what happened in general and an id; the detail (which
    may name internal hosts or hold an exception's repr) goes to the log under that id."""
    error_id = uuid.uuid4().hex[:12]
    log.warning("server error %s (%s): %s", error_id, code, detail)
    return f"{_SERVER_MESSAGES.get(code or '', 'the server could not answer')} (id {error_id}; see the gateway log)"


# ---- response bodies ------------------------------------------------------------------------------------

def _completion_json(served: Served, body: CompletionRequest) -> dict[str, Any]:
    choices = []
    for i, gen in enumerate(served.generations):
        for j, (text, reason) in enumerate(zip(gen.texts, gen.finish_reasons)):
            text = body.prompts[i] + text if body.echo else text
            choices.append({"index": i * body.n + j, "text": text, "logprobs": None, "finish_reason": reason})
    return {"id": served.id, "object": "text_completion", "created": int(time.time()), "model": served.version,
            "system_fingerprint": _fingerprint(served.slot, served.version), "choices": choices,
            "usage": _usage(sum(g.prompt_tokens for g in served.generations),
                            sum(g.completion_tokens for g in served.generations))}


def _chat_json(served: Served) -> dict[str, Any]:
    gen = served.generations[0]
    choices = [{"index": j, "message": {"role": "assistant", "content": text}, "logprobs": None,
                "finish_reason": reason} for j, (text, reason) in enumerate(zip(gen.texts, gen.finish_reasons))]
    return {"id": served.id, "object": "chat.completion", "created": int(time.time()), "model": served.version,
            "system_fingerprint": _fingerprint(served.slot, served.version), "choices": choices,
            "usage": _usage(gen.prompt_tokens, gen.completion_tokens)}


def _include_usage(body: CompletionRequest | ChatCompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


async def _completion_events(session: StreamSession, body: CompletionRequest, echo: str) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(text: str, finish: str | None) -> str:
        return sse({"id": session.id, "object": "text_completion", "created": created, "model": session.version,
                     "system_fingerprint": _fingerprint(session.slot, session.version),
                     "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]})

    if echo:
        yield chunk(echo, None)
    async for delta in session.deltas():
        yield chunk(delta.text, None)
    async for tail in _stream_end(session, body, chunk("", session.finish_reason or "stop"), "text_completion"):
        yield tail


async def _chat_events(session: StreamSession, body: ChatCompletionRequest) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, str], finish: str | None) -> str:
        return sse({"id": session.id, "object": "chat.completion.chunk", "created": created,
                     "model": session.version, "system_fingerprint": _fingerprint(session.slot, session.version),
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""}, None)
    async for delta in session.deltas():
        yield chunk({"content": delta.text}, None)
    async for tail in _stream_end(session, body, chunk({}, session.finish_reason or "stop"),
                                  "chat.completion.chunk"):
        yield tail


async def _stream_end(session: StreamSession, body: Any, final_chunk: str, obj: str) -> AsyncIterator[str]:
    if session.error:       # the openai client raises APIError on an in-stream error event
        message = _server_message("backend_unavailable", session.error)
        yield sse(error_body(message, type="server_error", code="backend_unavailable"))
    else:
        yield final_chunk
        if _include_usage(body):
            yield sse({"id": session.id, "object": obj, "created": int(time.time()), "model": session.version,
                        "choices": [], "usage": _usage(session.prompt_tokens or 0, session.completion_tokens or 0)})
    yield "data: [DONE]\n\n"


async def _replay_events(payload: dict[str, Any], obj: str, body: Any) -> AsyncIterator[str]:
    """A finished multi-choice answer as a stream: content chunk and finish chunk per choice."""
    base = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint")}
    for choice in payload["choices"]:
        if obj == "chat.completion.chunk":
            content = {"role": "assistant", "content": choice["message"]["content"]}
            yield sse({**base, "object": obj, "choices": [{"index": choice["index"], "delta": content,
                                                             "logprobs": None, "finish_reason": None}]})
            end = {"index": choice["index"], "delta": {}, "logprobs": None, "finish_reason": choice["finish_reason"]}
        else:
            yield sse({**base, "object": obj, "choices": [{"index": choice["index"], "text": choice["text"],
                                                             "logprobs": None, "finish_reason": None}]})
            end = {"index": choice["index"], "text": "", "logprobs": None, "finish_reason": choice["finish_reason"]}
        yield sse({**base, "object": obj, "choices": [end]})
    if _include_usage(body):
        yield sse({**base, "object": obj, "choices": [], "usage": payload["usage"]})
    yield "data: [DONE]\n\n"
