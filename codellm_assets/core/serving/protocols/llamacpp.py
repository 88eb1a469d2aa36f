"""llama.cpp's ``POST /infill``, as llama.vscode (and llama.vim) call it: ``input_prefix``, ``input_suffix``,
``input_extra[{filename, text}]`` (context chunks from other files), ``prompt`` (the current line up to the
cursor), ``n_predict``, ``temperature``, ``top_k``, ``top_p``, ``stream``, ``t_max_predict_ms``; answered
``{content, ...}`` or as server-sent ``{content, stop}`` events. A warm-up (``n_predict: 0``: the plugin
asks llama.cpp to cache the prompt) is answered at once and generates nothing, so it is neither a request
in the log nor in canary metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from codellm_assets.core.serving.backends.base import GenerationParams
from codellm_assets.core.serving.gateway import PromptSpec, RequestContext
from codellm_assets.core.serving.protocol import MAX_STOP
from codellm_assets.core.serving.protocols.common import (
    Deps,
    SessionStream,
    collect,
    headers,
    language_of,
    repo_names,
    snippet_block,
    sse,
)
from codellm_assets.core.serving.streaming import StreamSession

DEFAULT_MAX_TOKENS = 128         # n_predict -1 (llama.cpp: until the context is full) is capped here


class ExtraChunk(BaseModel):
    model_config = ConfigDict(extra="ignore")
    filename: str = ""
    text: str = ""


class InfillRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")    # samplers, cache_prompt, n_indent, t_max_prompt_ms, ...
    model: str | None = None
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ExtraChunk] = Field(default_factory=list)
    prompt: str = ""
    n_predict: int = Field(-1, ge=-1)
    temperature: float = Field(0.8, ge=0, le=2)   # llama.cpp's defaults
    top_k: int = Field(40, ge=0, description="accepted; the backends sample with top_p only")
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list, max_length=MAX_STOP)
    stream: bool = False
    t_max_predict_ms: int | None = Field(None, ge=0)
    repo: str | None = Field(None, max_length=500, description="extension: the repo (settings name or remote "
                             "URL) whose code index adds context; or the x-codellm-repo header")
    filepath: str | None = Field(None, max_length=1000, description="extension: the cursor's file")

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        return None if v is None or v < 0 else v      # llama.cpp: -1 = random

    @property
    def warm_up(self) -> bool:
        return self.n_predict == 0

    def to_generation_params(self) -> GenerationParams:
        n = DEFAULT_MAX_TOKENS if self.n_predict < 0 else self.n_predict
        return GenerationParams(version="", max_tokens=n, temperature=self.temperature, top_p=self.top_p,
                                stop=[s for s in self.stop if s], seed=self.seed)

    def prompt_spec(self, budget_chars: int) -> PromptSpec:
        """The extra chunks (the plugin sends oldest first: the newest are the most relevant, so they are
        chosen first and put nearest the code) as comments, then the prefix and the current line."""
        newest_first = [(c.filename, c.text) for c in reversed(self.input_extra)]
        block = snippet_block(self.language, newest_first, budget_chars, most_relevant_last=True)
        return PromptSpec(prompts=[block + self.input_prefix + self.prompt], suffix=self.input_suffix or "\n",
                          code_prefix=self.input_prefix + self.prompt)

    @property
    def language(self) -> str | None:
        """From the cursor's file if given, else from the first extra chunk's file name that tells."""
        names = [self.filepath or "", *(c.filename for c in self.input_extra)]
        return next((language_of(n) for n in names if language_of(n)), None)


def _answer(session: StreamSession, content: str, t0: float) -> dict[str, Any]:
    predicted = session.completion_tokens       # None when the answer was cut (t_max_predict_ms): count it
    if predicted is None:
        predicted = session.gw.backend.count_tokens(session.version, "".join(session.parts)) or 0
    ms = (time.perf_counter() - t0) * 1000
    return {"content": content, "stop": True, "id": session.id, "model": session.version,
            "tokens_predicted": predicted, "tokens_evaluated": session.prompt_tokens or 0,
            "stopped_eos": session.finish_reason == "stop", "stopped_limit": session.finish_reason == "length",
            "stopped_word": False, "truncated": False, "tokens_cached": 0,
            "timings": {"prompt_n": session.prompt_tokens or 0, "predicted_n": predicted,
                        "predicted_ms": ms, "prompt_ms": 0.0}}


def include(app: FastAPI, deps: Deps) -> None:
    gw = deps.gw

    @app.post("/infill")
    async def infill(request: Request) -> Response:
        key = await deps.authenticate(request)
        body: InfillRequest = await deps.parse(request, InfillRequest)
        if body.warm_up:
            return JSONResponse({"content": "", "stop": True, "tokens_predicted": 0, "tokens_evaluated": 0,
                                 "warm_up": True})
        ctx = RequestContext(user=key.prefix, team=key.team, model=body.model, language=body.language,
                             kind="completion", protocol="llamacpp", repo_names=repo_names(request, body.repo),
                             filepath=body.filepath)
        t0 = time.perf_counter()
        session = await StreamSession(gw, ctx, body.prompt_spec(gw.settings.ide_context_chars),
                                      body.to_generation_params()).open()
        deadline = body.t_max_predict_ms / 1000 if body.t_max_predict_ms else None
        if not body.stream:
            content = await collect(session, deadline_s=deadline, newline_needed=True)
            return JSONResponse(_answer(session, content, t0),
                                headers=headers(session.id, session.slot, session.version))
        return SessionStream(session, _events(session, deadline, t0))


async def _events(session: StreamSession, deadline_s: float | None, t0: float) -> AsyncIterator[str]:
    t_first: float | None = None
    async for delta in session.deltas():
        yield sse({"content": delta.text, "stop": False})
        t_first = t_first or time.monotonic()
        if deadline_s is not None and time.monotonic() - t_first >= deadline_s and "\n" in "".join(session.parts):
            session.stop()
    if session.error:
        yield sse({"error": {"code": 503, "message": session.error, "type": "unavailable_error"}})
    else:
        yield sse(_answer(session, "", t0))
