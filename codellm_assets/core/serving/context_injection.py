"""The gateway's step that puts repository context (serving/repo_context.py) before a completion's prompt.

Per completion request with one prompt: resolve the repo the request names, take the code around the cursor
(the IDE's prefix without its own snippet block, and the suffix; taken apart from FIM markup when the client
rendered the template itself), retrieve from that repo's code index, and fit the block into
``serving.repo_context_tokens`` tokens of the served version's tokenizer, and into what the context window
leaves after the prompt itself (IDE snippets included) and ``max_tokens``. Without a tokenizer, characters
count (3 per token). All of it runs in a worker thread, never on the event loop.

Layout (CrossCodeEval's): ``<fim_prefix>`` + repository context + IDE snippets + prefix ``<fim_suffix>`` ...:
the IDE's snippets (recent edits) stay nearest the code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from codellm_assets.core.serving.backends.base import KNOWN_FIM, split_fim_prompt
from codellm_assets.core.serving.repo_context import ContextResult

log = logging.getLogger(__name__)
CHARS_PER_TOKEN = 3          # the fallback count without a tokenizer (code: ~3-4 characters per token)
JOIN_MARGIN_TOKENS = 8       # tokens kept free: context + prompt may tokenize a little longer than apart
COUNT_CACHE_SIZE = 20_000    # remembered snippet token counts (a few MB)
CACHED_TEXT_CHARS = 4_000    # texts up to this long are remembered: snippets, not prompts


def with_context(prompt: str, suffix: str | None, context: str) -> str:
    """``prompt`` with ``context`` before its code: at the start, or right after the FIM prefix token of a
    template the client rendered itself (no ``suffix``)."""
    if not context:
        return prompt
    if suffix is None and split_fim_prompt(prompt) is not None:
        for fim in KNOWN_FIM:
            pre = fim.prefix.lstrip("▁")
            at = prompt.find(pre)
            if at >= 0 and not prompt[:at].strip():
                end = at + len(pre)
                if fim.prefix.startswith("▁") and prompt[end:end + 1] == " ":     # CodeLlama: "<PRE> {prefix}"
                    end += 1
                return prompt[:end] + context + prompt[end:]
    return context + prompt


def _code_around_cursor(spec: Any) -> tuple[str, str]:
    """(prefix, suffix) of the code alone: no IDE snippet block, no FIM markup."""
    prompt = spec.prompts[0]
    if spec.suffix is None:
        split = split_fim_prompt(prompt)
        if split is not None:
            return split
        return spec.code_prefix if spec.code_prefix is not None else prompt, ""
    return spec.code_prefix if spec.code_prefix is not None else prompt, spec.suffix


class ContextInjector:
    """Adds repository context to completions for a gateway ``gw`` (backend, settings, metrics)."""

    def __init__(self, gw: Any, repo_context: Any | None) -> None:
        self.gw, self.repo_context = gw, repo_context
        self._unknown_logged: set[str] = set()
        self._counts: OrderedDict[tuple[str, str], int] = OrderedDict()    # (version, snippet) -> tokens
        self._counts_lock = threading.Lock()

    def _cached_count(self, version: str, text: str) -> int:
        """Tokens of ``text`` for ``version``, remembered for the snippets that come back request after
        request (the same definitions while a developer types on); bounded LRU."""
        key = (version, text)
        with self._counts_lock:
            n = self._counts.get(key)
            if n is not None:
                self._counts.move_to_end(key)
                return n
        n = self.gw.backend.count_tokens(version, text) or 0
        with self._counts_lock:
            self._counts[key] = n
            while len(self._counts) > COUNT_CACHE_SIZE:
                self._counts.popitem(last=False)
        return n

    @property
    def enabled(self) -> bool:
        return self.repo_context is not None and self.gw.settings.repo_context_tokens > 0

    async def refresh(self) -> None:
        """Load what current.json changed, in a thread (the maintenance loop calls it: requests rarely wait
        for a load)."""
        if self.enabled:
            try:
                await asyncio.to_thread(self.repo_context.refresh)
            except Exception:   # a broken index must not stop the maintenance loop
                log.exception("repository context: refreshing the indexes failed")

    async def add(self, ctx: Any, spec: Any, version: str, max_tokens: int) -> Any:
        """``spec`` with ``repo_context`` set (and ``ctx.context`` the outcome); ``spec`` as it is when
        context is off or not wanted (chat)."""
        if not self.enabled or ctx.kind != "completion" or spec.messages is not None:
            return spec
        if not ctx.repo_names:
            result = ContextResult("no_repo")          # most plain clients: no thread hop for them
        elif len(spec.prompts) != 1:
            result = ContextResult("skipped", self.repo_context.resolve(*ctx.repo_names))
        else:
            t0 = time.perf_counter()
            try:
                result = await asyncio.to_thread(self._compute, ctx, spec, version, max_tokens)
            except Exception:   # retrieval must never fail a completion: answer without context
                log.exception("repository context failed for %s", ctx.repo_names)
                result = ContextResult("error")
            result.seconds = time.perf_counter() - t0      # what the request waited, thread hop included
        ctx.context = result
        m = self.gw.metrics
        m.repo_context.labels(outcome=result.outcome).inc()
        if result.chunks:
            m.repo_context_chunks.inc(result.chunks)
        if result.seconds:
            m.repo_context_seconds.observe(result.seconds)
        if result.outcome == "unknown_repo" and ctx.repo_names:
            name = ctx.repo_names[0][:200]
            if name not in self._unknown_logged and len(self._unknown_logged) < 1000:
                self._unknown_logged.add(name)
                log.info("repository context: no configured repo matches %r (settings repos: name, url, "
                         "remotes, path)", name)
        log.debug("repository context %s: repo=%s chunks=%d tokens=%d %.1f ms", result.outcome, result.repo,
                  result.chunks, result.tokens, result.seconds * 1000)
        return replace(spec, repo_context=result.text) if result.text else spec

    def _compute(self, ctx: Any, spec: Any, version: str, max_tokens: int) -> ContextResult:
        rc, gw = self.repo_context, self.gw
        repo = rc.resolve(*ctx.repo_names)
        if repo is None:
            return ContextResult("unknown_repo")
        if rc.index(repo) is None:
            return ContextResult("no_index", repo)
        backend = gw.backend
        tokens_known = backend.count_tokens(version, "x") is not None
        if tokens_known:
            def count(text: str) -> int:
                return self._cached_count(version, text) if len(text) <= CACHED_TEXT_CHARS else \
                    backend.count_tokens(version, text) or 0
            scale = 1
        else:
            count, scale = len, CHARS_PER_TOKEN
        # Room left in the window by the prompt as it will be rendered (IDE snippets and FIM tokens included).
        fim = backend.fim(version)
        rendered = fim.build(spec.prompts[0], spec.suffix) if fim and spec.suffix else spec.prompts[0]
        limit = min(gw.settings.max_context_tokens, backend.max_context(version) or 10 ** 9)
        wanted = gw.settings.repo_context_tokens * scale
        free = (limit - max_tokens - JOIN_MARGIN_TOKENS) * scale
        # A token holds at least one byte: a prompt with fewer bytes than the room left needs no counting.
        size = len(rendered.encode()) if tokens_known else len(rendered)
        room = free - (size if size + wanted <= free else count(rendered))
        budget = min(wanted, room)
        prefix, suffix = _code_around_cursor(spec)
        return rc.context(repo, prefix, suffix, filepath=ctx.filepath, language=ctx.language, budget=budget,
                          count=count)
