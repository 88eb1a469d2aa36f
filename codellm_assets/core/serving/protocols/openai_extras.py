"""What Continue needs beyond the plain OpenAI API: ``POST /v1/fim/completions`` (the FIM route of
``@continuedev/openai-adapters``' ``fimStream``: ``{model, prompt, suffix, max_tokens, stream: true}``,
answered as completion chunks that carry the text both as ``text`` and as ``delta.content``), and the
``/v1/models`` fields its ``vllm`` provider reads (``max_model_len``) plus one model name per FIM family,
so Continue picks the template of the base model from the name (``codellm-qwen2.5-coder``, ...)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from codellm_assets.core.serving.backends.base import KNOWN_FIM
from codellm_assets.core.serving.gateway import Gateway, PromptSpec, RequestContext
from codellm_assets.core.serving.protocol import CompletionRequest
from codellm_assets.core.serving.protocols.common import Deps, SessionStream, headers, repo_names, sse
from codellm_assets.core.serving.streaming import StreamSession

# Names Continue's getTemplateForModel recognises, per layout in KNOWN_FIM (same order).
FIM_FAMILIES = ("starcoder", "qwen2.5-coder", "deepseek-coder", "codellama")


def fim_family(gw: Gateway, version: str) -> str | None:
    fim = gw.backend.fim(version)
    # An SPM model keeps its family's alias: the gateway re-lays a client-rendered PSM template for it.
    return FIM_FAMILIES[KNOWN_FIM.index(fim.psm)] if fim and fim.psm in KNOWN_FIM else None


def model_list(gw: Gateway) -> dict[str, Any]:
    """``/v1/models``: the public name, one ``<public>-<fim family>`` alias (routed like the public name),
    then each served version; every entry with vLLM's ``max_model_len``."""
    now = int(time.time())
    routes = [r for r in gw.router.table.routes() if r.slot != "shadow"]
    prod = gw.router.table.production

    def max_len(version: str | None) -> int:
        own = gw.backend.max_context(version) if version else None
        return min(gw.settings.max_context_tokens, own or gw.settings.max_context_tokens)

    def card(mid: str, owner: str, parent: str | None, version: str | None) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": now, "owned_by": owner, "root": mid, "parent": parent,
                "max_model_len": max_len(version), "permission": []}

    prod_version = prod.version if prod else None
    data = [card(gw.public_model, "codellm", None, prod_version)]
    family = fim_family(gw, prod_version) if prod_version else None
    if family:
        data.append(card(f"{gw.public_model}-{family}", "codellm", gw.public_model, prod_version))
    data += [card(r.version, f"codellm:{r.slot}", gw.public_model, r.version) for r in routes]
    return {"object": "list", "data": data}


def include(app: FastAPI, deps: Deps) -> None:
    gw = deps.gw

    @app.post("/v1/fim/completions")
    async def fim_completions(request: Request) -> Response:
        key = await deps.authenticate(request)
        body: CompletionRequest = await deps.parse(request, CompletionRequest)
        ctx = RequestContext(user=body.user or key.prefix, team=key.team, model=body.model,
                             language=body.language, kind="completion", protocol="fim",
                             repo_names=repo_names(request, body.repo), filepath=body.filepath)
        spec = PromptSpec(prompts=body.prompts[:1], suffix=body.suffix or "\n")
        params = body.to_generation_params()
        params.n = 1
        if not body.stream:
            served = await gw.complete(ctx, spec, params)
            text, reason = served.generations[0].texts[0], served.generations[0].finish_reasons[0]
            return JSONResponse({"id": served.id, "object": "text_completion", "created": int(time.time()),
                                 "model": served.version, "choices": [{"index": 0, "text": text,
                                                                       "finish_reason": reason}]},
                                headers=headers(served.id, served.slot, served.version))
        session = await StreamSession(gw, ctx, spec, params).open()
        return SessionStream(session, _fim_events(session))


async def _fim_events(session: StreamSession) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(text: str, finish: str | None) -> str:
        return sse({"id": session.id, "object": "text_completion", "created": created, "model": session.version,
                    "choices": [{"index": 0, "text": text, "delta": {"content": text}, "finish_reason": finish}]})

    async for delta in session.deltas():
        yield chunk(delta.text, None)
    if session.error:
        yield sse({"error": {"message": session.error, "type": "server_error", "code": "backend_unavailable"}})
    else:
        yield chunk("", session.finish_reason or "stop")
    yield "data: [DONE]\n\n"
