"""Tabby's server API, as its IDE agent (the npm package ``tabby-agent``, behind Tabby's VS Code, JetBrains
and Vim extensions) calls it: ``GET|POST /v1/health`` (what the agent probes on start; with ``model``,
``device`` and ``version.git_describe`` >= 0.9.0 it also reads ``GET /v1beta/server_setting``),
``POST /v1/completions`` in Tabby's ``segments`` shape (the same path as the OpenAI shape: app.py hands a
body with ``segments`` here) answered ``{id, choices[{index, text}]}``, and ``POST /v1/events`` mapped onto
our feedback events (select -> accept, dismiss -> reject, view -> view). Same per-team keys as the rest."""

from __future__ import annotations

import asyncio
import json
import os
import platform
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from codellm_assets.core.serving.backends.base import GenerationParams
from codellm_assets.core.serving.gateway import Gateway, PromptSpec, RequestContext
from codellm_assets.core.serving.protocol import ApiError
from codellm_assets.core.serving.protocols.common import Deps, headers, repo_names, snippet_block
from codellm_assets.core.serving.store import ApiKey

# What the health answer claims: the agent reads /v1beta/server_setting from servers >= 0.9.0.
TABBY_COMPAT_VERSION = "0.11.1"
DEFAULT_MAX_TOKENS = 64          # Tabby's own default max_decoding_tokens
DEFAULT_TEMPERATURE = 0.1        # Tabby's own default sampling temperature
EVENTS = {"view": "view", "select": "accept", "dismiss": "reject"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Declaration(_Body):
    filepath: str = ""
    body: str


class Snippet(_Body):
    filepath: str = ""
    body: str
    score: float | None = None


class Segments(_Body):
    prefix: str
    suffix: str | None = None
    filepath: str | None = None
    git_url: str | None = None
    declarations: list[Declaration] | None = None
    relevant_snippets_from_changed_files: list[Snippet] | None = None
    relevant_snippets_from_recently_opened_files: list[Snippet] | None = None
    clipboard: str | None = None


class TabbyCompletionRequest(_Body):
    """Tabby's ``POST /v1/completions`` body."""

    language: str | None = Field(None, max_length=40)
    segments: Segments
    user: str | None = Field(None, max_length=256)
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = None
    mode: str | None = None

    def to_generation_params(self) -> GenerationParams:
        temp = DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        return GenerationParams(version="", max_tokens=DEFAULT_MAX_TOKENS, temperature=temp, seed=self.seed)

    def context_snippets(self) -> list[tuple[str, str]]:
        """Most relevant first: the declarations of the symbols at the cursor (the agent orders them), then
        snippets from changed files, then from recently opened files (each by score, best first)."""
        seg = self.segments
        out = [(d.filepath, d.body) for d in seg.declarations or []]
        for group in (seg.relevant_snippets_from_changed_files, seg.relevant_snippets_from_recently_opened_files):
            out += [(s.filepath, s.body) for s in sorted(group or [], key=lambda s: -(s.score or 0.0))]
        return out

    def prompt_spec(self, budget_chars: int) -> PromptSpec:
        """The prefix with the context snippets before it (as comments, within ``budget_chars``); an empty
        suffix becomes a newline, as Tabby's server does."""
        block = snippet_block(self.language, self.context_snippets(), budget_chars)
        return PromptSpec(prompts=[block + self.segments.prefix], suffix=self.segments.suffix or "\n",
                          code_prefix=self.segments.prefix)


class TabbyEvent(_Body):
    type: str = Field(min_length=1, max_length=40)
    completion_id: str = Field(min_length=1, max_length=80)
    choice_index: int = Field(0, ge=0)
    view_id: str | None = Field(None, max_length=200)
    elapsed: int | None = Field(None, ge=0)
    select_kind: str | None = Field(None, max_length=20)


def is_tabby_body(raw: bytes) -> bool:
    """Whether a ``/v1/completions`` body is Tabby's shape (has ``segments``, no ``prompt``)."""
    if b'"segments"' not in raw:
        return False
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and "segments" in body and "prompt" not in body


def health(gw: Gateway) -> dict[str, Any]:
    device = "cuda" if gw.backend.name == "vllm" else "cpu"
    prod = gw.router.table.production
    return {"model": gw.public_model, "chat_model": gw.public_model, "device": device,
            "arch": platform.machine(), "cpu_info": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count() or 1, "cuda_devices": [],
            "version": {"build_date": "", "build_timestamp": "", "git_sha": "",
                        "git_describe": f"v{TABBY_COMPAT_VERSION}-codellm"},
            "codellm_version": prod.version if prod else None, "webserver": False}


async def complete(deps: Deps, request: Request, key: ApiKey) -> Response:
    """Tabby's completion: segments -> prompt (FIM rendered for the served version) -> ``{id, choices}``."""
    gw = deps.gw
    body: TabbyCompletionRequest = await deps.parse(request, TabbyCompletionRequest)
    ctx = RequestContext(user=body.user or key.prefix, team=key.team, language=body.language,
                         kind="completion", protocol="tabby",
                         repo_names=repo_names(request, body.segments.git_url), filepath=body.segments.filepath)
    served = await gw.complete(ctx, body.prompt_spec(gw.settings.ide_context_chars), body.to_generation_params())
    gen = served.generations[0]
    payload = {"id": served.id, "choices": [{"index": i, "text": t} for i, t in enumerate(gen.texts)]}
    return JSONResponse(payload, headers=headers(served.id, served.slot, served.version))


async def record_event(gw: Gateway, key: ApiKey, event: TabbyEvent) -> None:
    """One Tabby event as our feedback event; 404 for a completion this team was not served."""
    info = await asyncio.to_thread(gw.store.completion_info, event.completion_id)
    if info is None or (info.get("team") != key.team and not key.admin):
        raise ApiError(404, f"unknown completion_id '{event.completion_id}'", param="completion_id",
                       code="completion_not_found")
    ours = EVENTS[event.type]
    reason = f"tabby {event.type}" + (f" select_kind={event.select_kind}" if event.select_kind else "") + \
        (f" choice_index={event.choice_index}" if event.choice_index else "")
    gw.store.record_feedback(event.completion_id, ours, reason=reason, elapsed_ms=event.elapsed,
                             user=info.get("user"), version=info.get("version"))
    gw.metrics.feedback.labels(event=ours, version=info.get("version") or "").inc()


def include(app: FastAPI, deps: Deps) -> None:
    gw = deps.gw

    @app.api_route("/v1/health", methods=["GET", "POST"])
    async def tabby_health(request: Request) -> dict[str, Any]:
        await deps.authenticate(request)
        return health(gw)

    @app.get("/v1beta/server_setting")
    async def tabby_server_setting(request: Request) -> dict[str, Any]:
        await deps.authenticate(request)
        # our own feedback store gets the events; the agent's anonymous usage posts go nowhere else
        return {"disable_client_side_telemetry": True}

    @app.post("/v1/events")
    async def tabby_events(request: Request, select_kind: str | None = None) -> Response:
        key = await deps.authenticate(request)
        event: TabbyEvent = await deps.parse(request, TabbyEvent)
        if select_kind and not event.select_kind:
            event.select_kind = select_kind
        if event.type not in EVENTS:
            raise ApiError(400, f"unknown event type '{event.type}' (known: {', '.join(EVENTS)})", param="type")
        await record_event(gw, key, event)
        return Response(status_code=200)
