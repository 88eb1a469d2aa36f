"""The gateway's core, independent of HTTP: route a request to a version, render its prompt for that
version, generate with canary->production fallback, record it (store, metrics, detector), mirror it to
the shadow version in the background, keep the routing table and readiness fresh (gateway_routes)."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from codellm_assets.core.data.fim import heal_prefix
from codellm_assets.core.serving.assessor import Assessor, extract_code
from codellm_assets.core.serving.auth import KeyAuthenticator, RateLimiter
from codellm_assets.core.serving.backends.base import (
    Backend,
    BackendError,
    BackendRejected,
    Generation,
    GenerationParams,
    Preempted,
    split_fim_prompt,
)
from codellm_assets.core.serving.context_injection import ContextInjector, with_context
from codellm_assets.core.serving.gateway_routes import RoutingReadiness
from codellm_assets.core.serving.healing import Rendered, heal_generations
from codellm_assets.core.serving.metrics import GatewayMetrics
from codellm_assets.core.serving.protocol import ApiError
from codellm_assets.core.serving.router import Decision, Router
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import RequestRecord, ShadowResult, Store
from codellm_assets.settings import ServingSettings

log = logging.getLogger(__name__)
RETRYABLE = (BackendError, asyncio.TimeoutError, TimeoutError)
CHARS_PER_TOKEN_MAX = 32     # a prompt this many chars per allowed token is rejected without tokenizing


@dataclass
class PromptSpec:
    """What the client asked for, before rendering for a version: completion prompts (+ FIM suffix) or
    chat messages."""

    prompts: list[str] = field(default_factory=list)
    suffix: str | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens_explicit: bool = True    # False (chat without max_tokens): clamp to the context left
    code_prefix: str | None = None      # the code before the cursor alone, when prompts[0] has IDE snippets first
    repo_context: str = ""              # retrieved repository context (set by the gateway) put before the code


@dataclass
class RequestContext:
    user: str
    team: str
    model: str | None = None
    language: str | None = None
    kind: str = "completion"          # completion | chat
    protocol: str = "openai"          # the client's wire shape (request log column): openai | tabby | llamacpp | fim
    repo_names: tuple[str, ...] = ()  # how the request names its repo (header, field, Tabby git_url), first wins
    filepath: str | None = None       # the cursor's file, as the IDE names it
    context: Any = None               # the repository context outcome (serving.repo_context.ContextResult)


@dataclass
class Served:
    id: str
    slot: str
    version: str
    generations: list[Generation]
    prompts: list[str]
    latency_s: float


def new_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


class Gateway(RoutingReadiness):
    """Holds the store, backend, router, metrics, auth and detector of one serving process."""

    def __init__(self, settings: ServingSettings, store: Store, backend: Backend, *,
                 default_routes: list[Route] | Callable[[], list[Route]], public_model: str = "codellm",
                 key_cache_s: float = 2.0,
                 owns_store: bool = False, shadow_max_inflight: int = 4, repo_context: Any = None) -> None:
        self.settings, self.store, self.backend = settings, store, backend
        self.default_routes, self.public_model, self.owns_store = default_routes, public_model, owns_store
        self.metrics = GatewayMetrics()
        self.router = Router(sticky_window_s=settings.sticky_window_s)
        self.auth = KeyAuthenticator(store, cache_s=key_cache_s)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.assessor = Assessor(store, self.metrics, fraction=settings.assess_fraction)
        self.shadow_max_inflight = shadow_max_inflight
        self.context = ContextInjector(self, repo_context)   # repo_context: a serving.repo_context.RepoContext
        self._shadow_tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[Any] | None = None
        self._init_routing()

    # ---- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.backend.start()
        self.assessor.start()
        await self.context.refresh()
        first = asyncio.create_task(self.refresh_routes(), name="gateway-first-routes")
        wait = getattr(self.backend, "startup_wait_s", 0.0)
        if wait:
            # A proxy backend loads versions in seconds: accept no request before the first routing pass (or
            # `wait` s), else the first answers after a start are 503 "still loading" (the pass goes on).
            await asyncio.wait({first}, timeout=wait)
        self._loop_task = asyncio.create_task(self._maintain(first), name="gateway-maintenance")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._shadow_tasks:
            _, late = await asyncio.wait(list(self._shadow_tasks), timeout=10)
            for task in late:
                task.cancel()
        await self.backend.close()
        await asyncio.to_thread(self.assessor.close)
        if self.owns_store:
            await asyncio.to_thread(self.store.close)
        else:
            await asyncio.to_thread(self.store.flush)

    async def _maintain(self, first: asyncio.Task[Any] | None = None) -> None:
        """Re-read the routing table every ``route_refresh_s``; re-check readiness when due."""
        if first is not None:
            try:
                await first
            except Exception:  # logged like any failed pass; the loop retries
                log.exception("gateway maintenance failed")
        while True:
            try:
                await self.refresh_routes()
                await self.backend.resync()
                await self.context.refresh()
                if self._probe_due():
                    await self.probe()
            except asyncio.CancelledError:
                raise
            except Exception:   # the maintenance loop must survive anything; the log says what
                log.exception("gateway maintenance failed")
            self.metrics.store_dropped.set(self.store.dropped)
            await asyncio.sleep(self.settings.route_refresh_s)

    # ---- prompt rendering -------------------------------------------------------------------------------
    def _completion_prompts(self, spec: PromptSpec, version: str) -> tuple[list[str], list[str]]:
        """(prompts, whitespace healed off each). With a suffix: the model's FIM template, repository context
        inside it right before the code (the layout the benchmark scores), the prefix healed
        (serving.token_healing). A template the client rendered itself (PSM, Continue) is read back and
        rendered again the same way (for an SPM model: laid out SPM). Else the prompts as sent, context
        first."""
        fim = self.backend.fim(version)
        context = spec.repo_context or ""
        parts: list[tuple[str, str] | None] = []
        if fim and spec.suffix:
            parts = [(p, spec.suffix) for p in spec.prompts]
        elif fim and spec.suffix is None:     # a template the client rendered (Continue): healed, re-laid
            parts = [split_fim_prompt(p) for p in spec.prompts]
        if parts and all(parts):
            healed = [heal_prefix(pre) if self.settings.token_healing else (pre, "") for pre, _ in parts]
            return ([fim.build(pre, suf, context) for (pre, _), (_, suf) in zip(healed, parts)],
                    [removed for _, removed in healed])
        # A model without FIM tokens completes the prefix alone (IDE plugins send suffix by default).
        return [with_context(p, spec.suffix, context) for p in spec.prompts], [""] * len(spec.prompts)

    def render(self, spec: PromptSpec, version: str, max_tokens: int) -> Rendered:
        """Prompts, extra stop sequences, max_tokens and healed whitespace for ``version``; ApiError 400 for
        empty or too-long prompts. Runs before any model work."""
        extra_stops: list[str] = []
        removed: list[str] = []
        if spec.messages is not None:
            try:
                prompt, extra_stops = self.backend.render_chat(version, spec.messages)
            except ValueError as e:
                raise ApiError(400, str(e), param="messages") from e
            prompts = [prompt]
            if spec.repo_context:
                prompts = [with_context(prompt, spec.suffix, spec.repo_context)]
            removed = [""]
        else:
            prompts, removed = self._completion_prompts(spec, version)
        limit = min(self.settings.max_context_tokens, self.backend.max_context(version) or 10 ** 9)
        for p in prompts:
            if not p:
                raise ApiError(400, "prompt must not be empty", param="prompt")
            if len(p) > limit * CHARS_PER_TOKEN_MAX:
                raise ApiError(400, f"the prompt ({len(p)} characters) exceeds the maximum context length of "
                               f"{limit} tokens", code="context_length_exceeded", param="prompt")
            n = self.backend.count_tokens(version, p)
            if n is not None and n + max_tokens > limit and not spec.max_tokens_explicit and n < limit:
                max_tokens = limit - n
            elif n is not None and n + max_tokens > limit:
                raise ApiError(400, f"This model's maximum context length is {limit} tokens. However, you "
                               f"requested {n + max_tokens} tokens ({n} in the prompt, {max_tokens} for the "
                               "completion). Please reduce the prompt or max_tokens.",
                               code="context_length_exceeded", param="max_tokens")
        return Rendered(prompts, extra_stops, max_tokens, removed)

    def params_for(self, asked: GenerationParams, rendered: Rendered) -> tuple[GenerationParams, list[str]]:
        """(what the backend is asked, the stops the gateway applies after healing)."""
        backend_stops, after = rendered.split_stops(asked.stop + rendered.stops)
        return replace(asked, stop=backend_stops, max_tokens=rendered.max_tokens), after

    def decide(self, ctx: RequestContext) -> Decision:
        try:
            return self.router.choose(ctx.user, model=ctx.model)
        except LookupError:
            raise ApiError(503, "the model is still loading; retry shortly" + (
                f" ({self.route_error})" if self.route_error else ""), type="server_error",
                code="model_not_ready") from None

    # ---- non-streaming generation -----------------------------------------------------------------------
    async def complete(self, ctx: RequestContext, spec: PromptSpec, params: GenerationParams) -> Served:
        """Generate for every prompt; a failing/slow canary is retried on production."""
        cid = new_id(ctx.kind)
        decision = self.decide(ctx)
        spec = await self.context.add(ctx, spec, decision.route.version, params.max_tokens)
        rendered = self.render(spec, decision.route.version, params.max_tokens)
        asked = params
        params, after = self.params_for(asked, rendered)
        t0 = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            gens = None
            if decision.slot == "canary":
                try:
                    gens = await asyncio.wait_for(self._generate_all(rendered.prompts, decision.route, params),
                                                  self.settings.canary_timeout_s)
                    self.router.canary_succeeded()
                except RETRYABLE as e:
                    self.canary_failed(cid, ctx, decision.route, rendered.prompts[0], e, t0)
                    decision = Decision("production", self.router.table.production)
                    rendered = self.render(spec, decision.route.version, asked.max_tokens)
                    params, after = self.params_for(asked, rendered)
            if gens is None:
                try:
                    gens = await self._generate_all(rendered.prompts, decision.route, params)
                except RETRYABLE as e:
                    self.record_failure(cid, ctx, decision, rendered.prompts[0], e, t0)
                    raise ApiError(503, f"generation failed: {e}", type="server_error",
                                   code="backend_unavailable") from e
        except BackendRejected as e:
            self.metrics.requests.labels(version=decision.route.version, slot=decision.slot,
                                         status="rejected").inc()
            raise ApiError(e.status, str(e)) from e
        finally:
            self.metrics.inflight.dec()
        gens = heal_generations(gens, rendered, after)
        prompts = rendered.prompts
        served = Served(cid, decision.slot, decision.route.version, gens, prompts, time.perf_counter() - t0)
        texts = [t for g in gens for t in g.texts]
        self.record_success(ctx, served.id, decision, prompts[0], texts[0] if texts else "",
                            served.latency_s, sum(g.prompt_tokens for g in gens),
                            sum(g.completion_tokens for g in gens), spec, params)
        return served

    async def _generate_all(self, prompts: list[str], route: Route, params: GenerationParams) -> list[Generation]:
        p = replace(params, version=route.version)
        return list(await asyncio.gather(*(self.backend.generate(prompt, p) for prompt in prompts)))

    # ---- recording --------------------------------------------------------------------------------------
    def canary_failed(self, cid: str, ctx: RequestContext, route: Route, prompt: str, error: BaseException,
                      t0: float) -> None:
        """Count a canary failure (breaker, metrics, a failed canary row) before retrying on production."""
        self.router.canary_failed()
        self.metrics.canary_fallbacks.inc()
        status = "timeout" if isinstance(error, (asyncio.TimeoutError, TimeoutError)) else "error"
        self.metrics.requests.labels(version=route.version, slot="canary", status=status).inc()
        self.store.record_request(RequestRecord(
            id=f"{cid}:canary", slot="canary", version=route.version, status=status, user=ctx.user,
            team=ctx.team, latency_s=time.perf_counter() - t0, error=repr(error)[:2000], prompt=prompt,
            protocol=ctx.protocol, **_context_columns(ctx)))
        log.warning("canary %s failed (%s); answered by production", route.version, status)

    def record_failure(self, cid: str, ctx: RequestContext, decision: Decision, prompt: str,
                       error: BaseException, t0: float, status: str = "error") -> None:
        self._mark(False, repr(error))
        self.metrics.requests.labels(version=decision.route.version, slot=decision.slot, status=status).inc()
        self.store.record_request(RequestRecord(
            id=cid, slot=decision.slot, version=decision.route.version, status=status, user=ctx.user,
            team=ctx.team, latency_s=time.perf_counter() - t0, error=repr(error)[:2000], prompt=prompt,
            protocol=ctx.protocol, **_context_columns(ctx)))

    def record_success(self, ctx: RequestContext, cid: str, decision: Decision, prompt: str, text: str,
                       latency_s: float, prompt_tokens: int, completion_tokens: int, spec: PromptSpec,
                       params: GenerationParams, status: str = "ok") -> None:
        """Store, metrics, detector, shadow: everything after an answer, none of it on the answer's path."""
        version, slot = decision.route.version, decision.slot
        raw_prefix, raw_suffix = _ide_text(ctx, spec)
        self.store.record_request(RequestRecord(
            id=cid, slot=slot, version=version, status=status, user=ctx.user, team=ctx.team,
            latency_s=latency_s, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            prompt=prompt, completion=text, protocol=ctx.protocol, raw_prefix=raw_prefix, raw_suffix=raw_suffix,
            **_context_columns(ctx)))
        m = self.metrics
        m.requests.labels(version=version, slot=slot, status=status).inc()
        m.latency.labels(version=version, slot=slot).observe(latency_s)
        m.tokens.labels(version=version).inc(completion_tokens)
        if latency_s > 0 and completion_tokens:
            m.tokens_per_second.labels(version=version).observe(completion_tokens / latency_s)
        if status != "ok":
            return
        self._mark(True)
        code = extract_code(text) if ctx.kind == "chat" else text
        assess_prompt = spec.prompts[0] if ctx.kind == "completion" and spec.prompts else None
        self.assessor.submit(cid, version, code, prompt=assess_prompt, language=ctx.language)
        self.maybe_shadow(cid, ctx, prompt, params, version, text, latency_s, assess_prompt)

    # ---- shadow -----------------------------------------------------------------------------------------
    def maybe_shadow(self, cid: str, ctx: RequestContext, prompt: str, params: GenerationParams,
                     served_version: str, served_text: str, served_latency_s: float,
                     assess_prompt: str | None) -> None:
        route = self.router.pick_shadow()
        if route is None or route.version == served_version:
            return
        if len(self._shadow_tasks) >= self.shadow_max_inflight:
            self.metrics.shadow_failures.labels(reason="skipped").inc()
            return
        task = asyncio.create_task(self._shadow(cid, ctx, route, prompt, params, served_version, served_text,
                                                served_latency_s, assess_prompt))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, cid: str, ctx: RequestContext, route: Route, prompt: str, params: GenerationParams,
                      served_version: str, served_text: str, served_latency_s: float,
                      assess_prompt: str | None) -> None:
        """Mirror one request to the shadow version, after the user got the answer; record the comparison."""
        t0 = time.perf_counter()
        text, error, assessment = None, None, None
        try:
            gen = await asyncio.wait_for(self.backend.generate(
                prompt, replace(params, version=route.version, n=1, background=True)),
                self.settings.canary_timeout_s)
            text = gen.texts[0] if gen.texts else ""
        except Preempted:
            error = "preempted"
        except Exception as e:  # noqa: BLE001 - a shadow failure is data, never a user-visible error
            error = repr(e)[:2000]
        latency = time.perf_counter() - t0
        similarity = None
        if text is not None:
            similarity = difflib.SequenceMatcher(None, served_text, text, autojunk=False).ratio()
            code = extract_code(text) if ctx.kind == "chat" else text
            fut = self.assessor.assess_future(code, prompt=assess_prompt, language=ctx.language)
            try:
                assessment = await asyncio.wait_for(asyncio.wrap_future(fut), 60)
            except TimeoutError:
                assessment = None
        self.store.record_shadow(ShadowResult(
            completion_id=cid, served_version=served_version, shadow_version=route.version,
            served_latency_s=served_latency_s, shadow_latency_s=latency, similarity=similarity,
            risk_score=assessment.risk if assessment else None,
            buggy=assessment.buggy if assessment else None, error=error))
        self.metrics.shadow_requests.inc()
        if error:
            self.metrics.shadow_failures.labels(reason="preempted" if error == "preempted" else "error").inc()
        elif similarity is not None:
            self.metrics.shadow_similarity.observe(similarity)


def _ide_text(ctx: RequestContext, spec: PromptSpec) -> tuple[str | None, str | None]:
    """The IDE's own prefix and suffix of a completion (never FIM markup): a client that renders the FIM
    template itself (Continue) sends it as the prompt; it is taken apart. None for chat."""
    if ctx.kind != "completion" or not spec.prompts:
        return None, None
    split = split_fim_prompt(spec.prompts[0]) if spec.suffix is None else None
    return split if split else (spec.prompts[0], spec.suffix)



def _context_columns(ctx: RequestContext) -> dict[str, Any]:
    """The request row's repository-context columns: the repo it named, snippets and tokens added."""
    c = ctx.context
    if c is None:
        return {}
    return {"repo": c.repo, "context_chunks": c.chunks, "context_tokens": c.tokens}
