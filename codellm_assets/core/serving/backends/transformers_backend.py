"""In-process CPU backend: one base model per path, several peft LoRA adapters selected per request.

All model work runs on ONE worker thread (the event loop never blocks; adapter switching via
``set_adapter`` mutates the model, so jobs must not overlap). The worker is a micro-batcher: it takes the
most urgent job, then gathers compatible jobs (same version and sampling parameters) already queued or,
under concurrent traffic, arriving within ``micro_batch_ms``, and runs them as one left-padded ``generate``
call (measured on 2 cores, tiny model, 8 clients: ~7x the throughput of one-by-one). User jobs go before
background jobs (shadow mirrors, probes), and a running background job stops as soon as a user job waits
(it raises ``Preempted``), so mirroring never holds up a user. Streaming uses transformers'
``AsyncTextIteratorStreamer`` (a ``TextIteratorStreamer`` that feeds the event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from codellm_assets.core.serving.backends.base import (
    Backend,
    BackendError,
    FimTokens,
    Generation,
    GenerationParams,
    Preempted,
    StopScanner,
    StreamDelta,
    detect_fim,
    trim_at_stop,
)
from codellm_assets.core.serving.backends.markup import encode_batch, fim_markup
from codellm_assets.core.serving.routes import Route

log = logging.getLogger(__name__)
_seq = itertools.count()
_STOP = object()


@dataclass
class _Loaded:
    """A base model and its tokenizers (one for the worker, one for the event loop: a fast tokenizer
    must not be used from two threads at once)."""

    model: Any
    gen_tok: Any
    loop_tok: Any
    fim: FimTokens | None
    max_positions: int | None
    adapters: dict[str, str] = field(default_factory=dict)   # adapter name -> path
    markup: dict[str, int] = field(default_factory=dict)      # FIM literals the tokenizer does not match


class _Job:
    def __init__(self, prompt: str, params: GenerationParams, *, fn: Callable[[], Any] | None = None,
                 streamer: Any = None) -> None:
        self.prompt, self.params, self.fn, self.streamer = prompt, params, fn, streamer
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.cancelled = threading.Event()
        self.priority = 1 if params.background else 0

    def batch_key(self) -> tuple[Any, ...] | None:
        p = self.params
        if self.fn is not None or self.streamer is not None or p.seed is not None:
            return None
        return (p.version, p.max_tokens, p.temperature, p.top_p, tuple(p.stop), p.n, self.priority)


class TransformersBackend(Backend):
    """See the module docstring."""

    name = "transformers"

    def __init__(self, *, micro_batch_ms: float = 4.0, max_batch_size: int = 8,
                 threads: int | None = None) -> None:
        self.micro_batch_s = micro_batch_ms / 1000.0
        self.max_batch_size = max_batch_size
        self.threads = threads
        self._bases: dict[str, _Loaded] = {}
        self._versions: dict[str, tuple[str, str | None]] = {}   # version -> (base path, adapter name)
        self._routes: dict[str, Route] = {}
        self._inbox: queue.Queue[tuple[int, int, Any]] = queue.Queue()
        self._user_waiting = 0
        self._count_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.batches_run = 0
        self.jobs_run = 0
        self.decode_steps = 0                  # generate() steps run, all batches: shows a cancel stopped work
        self.running: list[_Job] = []          # the batch on the worker now (observability, tests)
        self._last_batch_size = 1

    # ---- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="transformers-worker", daemon=True)
            self._worker.start()

    async def close(self) -> None:
        if self._worker is not None:
            self._inbox.put((-1, next(_seq), _STOP))
            await asyncio.to_thread(self._worker.join, 30)
            self._worker = None

    async def load_version(self, route: Route) -> None:
        known = self._routes.get(route.version)
        if known and (known.base_model_path, known.adapter_path) == (route.base_model_path, route.adapter_path):
            return
        await self._call(lambda: self._load_version_sync(route))

    def versions(self) -> list[str]:
        return list(self._versions)

    async def health(self) -> dict[str, Any]:
        alive = self._worker is not None and self._worker.is_alive()
        return {"ok": alive and bool(self._versions), "worker_alive": alive, "versions": self.versions(),
                "queued": self._inbox.qsize()}

    def tokenizer(self, version: str) -> Any | None:
        loaded = self._loaded_for(version)
        return loaded.loop_tok if loaded else None

    def max_context(self, version: str) -> int | None:
        loaded = self._loaded_for(version)
        return loaded.max_positions if loaded else None

    def fim(self, version: str) -> FimTokens | None:
        loaded = self._loaded_for(version)
        return loaded.fim if loaded else None

    # ---- generation (event loop side) -----------------------------------------------------------------
    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        self._check_version(params.version)
        job = _Job(prompt, params)
        self._submit(job)
        try:
            return await asyncio.wrap_future(job.future)
        finally:
            job.cancelled.set()         # a caller that gave up (timeout, disconnect) stops the work

    async def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[StreamDelta]:
        from transformers import AsyncTextIteratorStreamer

        self._check_version(params.version)
        loaded = self._loaded_for(params.version)
        streamer = AsyncTextIteratorStreamer(loaded.gen_tok, skip_prompt=True, skip_special_tokens=True)
        job = _Job(prompt, params, streamer=streamer)
        self._submit(job)
        scanner = StopScanner(params.stop)
        try:
            async for piece in streamer:
                out = scanner.feed(piece)
                if out:
                    yield StreamDelta(out)
                if scanner.stopped:
                    break
            gen = await asyncio.wrap_future(job.future)
            tail = scanner.finish()
            if tail:
                yield StreamDelta(tail)
            reason = "stop" if scanner.stopped else gen.finish_reasons[0]
            yield StreamDelta("", finish_reason=reason, prompt_tokens=gen.prompt_tokens,
                              completion_tokens=gen.completion_tokens)
        finally:
            job.cancelled.set()

    def _check_version(self, version: str) -> None:
        if version not in self._versions:
            raise BackendError(f"version '{version}' is not loaded; loaded: {self.versions()}")

    def _loaded_for(self, version: str) -> _Loaded | None:
        entry = self._versions.get(version)
        return self._bases.get(entry[0]) if entry else None

    def _submit(self, job: _Job) -> None:
        if self._worker is None or not self._worker.is_alive():
            raise BackendError("the transformers worker is not running")
        if job.priority == 0:
            with self._count_lock:
                self._user_waiting += 1
        self._inbox.put((job.priority, next(_seq), job))

    async def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker thread, between generations."""
        job = _Job("", GenerationParams(version=""), fn=fn)
        self._submit(job)
        return await asyncio.wrap_future(job.future)

    # ---- worker thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        ready: list[tuple[int, int, Any]] = []
        while True:
            if not ready:
                heapq.heappush(ready, self._inbox.get())
            self._drain(ready)
            _, _, job = heapq.heappop(ready)
            if job is _STOP:
                self._fail_all(ready)
                return
            batch = self._collect(job, ready)
            if job.priority == 0:
                with self._count_lock:
                    self._user_waiting -= len(batch)
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if batch:
                self.running = batch
                self._execute(batch)
                self.running = []
                if batch[0].fn is None:
                    self._last_batch_size = len(batch)

    def _drain(self, ready: list[tuple[int, int, Any]]) -> None:
        while True:
            try:
                heapq.heappush(ready, self._inbox.get_nowait())
            except queue.Empty:
                return

    def _collect(self, first: _Job, ready: list[tuple[int, int, Any]]) -> list[_Job]:
        key = first.batch_key()
        batch = [first]
        if key is None or self.max_batch_size <= 1:
            return batch
        keep = []
        for item in sorted(ready):
            job = item[2]
            if job is not _STOP and len(batch) < self.max_batch_size and job.batch_key() == key:
                batch.append(job)
            else:
                keep.append(item)
        ready[:] = keep
        heapq.heapify(ready)
        # Wait for company only under concurrent traffic (something was queued, or the last batch was
        # shared): a lone request pays no batching delay.
        concurrent = len(batch) > 1 or self._last_batch_size > 1
        deadline = time.monotonic() + (self.micro_batch_s if concurrent else 0.0)
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._inbox.get(timeout=remaining)
            except queue.Empty:
                break
            if item[2] is not _STOP and item[2].batch_key() == key:
                batch.append(item[2])
            else:
                heapq.heappush(ready, item)
        return batch

    def _execute(self, batch: list[_Job]) -> None:
        first = batch[0]
        try:
            if first.fn is not None:
                results = [first.fn()]
            else:
                results = self._generate_batch(batch)
                self.batches_run += 1
                self.jobs_run += len(batch)
            for job, res in zip(batch, results):
                job.future.set_result(res)
        except Exception as e:   # every failure goes back to the waiting callers
            err = e if isinstance(e, (BackendError, ValueError)) else BackendError(f"generation failed: {e}")
            if not isinstance(e, (BackendError, ValueError)):
                log.exception("transformers backend: generation failed")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(err)
        finally:
            if first.streamer is not None:
                first.streamer.end()        # unblocks the consumer even when generation failed

    def _fail_all(self, ready: list[tuple[int, int, Any]]) -> None:
        for _, _, job in ready:
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(BackendError("the backend is shutting down"))
                if job.streamer is not None:
                    job.streamer.end()

    def _generate_batch(self, batch: list[_Job]) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

        p = batch[0].params
        base_path, adapter = self._versions[p.version]
        loaded = self._bases[base_path]
        tok = loaded.gen_tok
        enc = encode_batch(tok, [j.prompt for j in batch], loaded.markup)
        eos = tok.eos_token_id
        cfg = GenerationConfig(max_new_tokens=p.max_tokens, do_sample=p.temperature > 0,
                               num_return_sequences=p.n, pad_token_id=tok.pad_token_id, eos_token_id=eos)
        if p.temperature > 0:
            cfg.temperature, cfg.top_p, cfg.top_k = p.temperature, p.top_p, 0
        preempted = threading.Event()
        background = p.background

        def should_stop() -> bool:
            if background and self._user_waiting > 0:
                preempted.set()
                return True
            return all(j.cancelled.is_set() for j in batch)

        class _StopWhen(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), should_stop(), dtype=torch.bool)

        extra: dict[str, Any] = {"stopping_criteria": StoppingCriteriaList([_StopWhen()])}
        if p.stop:
            cfg.stop_strings = list(p.stop)
            extra["tokenizer"] = tok
        if first_streamer := batch[0].streamer:
            extra["streamer"] = first_streamer
        if p.seed is not None:
            torch.manual_seed(p.seed)
        with self._adapter(loaded, adapter), torch.inference_mode():
            out = loaded.model.generate(**enc, generation_config=cfg, **extra)
        if preempted.is_set():
            raise Preempted("background job preempted by user traffic")
        new = out[:, enc["input_ids"].shape[1]:]
        self.decode_steps += int(new.shape[1])
        return [self._decode(tok, new[i * p.n:(i + 1) * p.n], int(enc["attention_mask"][i].sum()), p)
                for i in range(len(batch))]

    @staticmethod
    def _decode(tok: Any, rows: Any, prompt_tokens: int, p: GenerationParams) -> Generation:
        eos_ids = {tok.eos_token_id, tok.pad_token_id} - {None}
        texts, reasons, used = [], [], 0
        for row in rows.tolist():
            cut = next((i for i, t in enumerate(row) if t in eos_ids), None)
            ids = row if cut is None else row[:cut]
            text, hit = trim_at_stop(tok.decode(ids, skip_special_tokens=True), p.stop)
            texts.append(text)
            reasons.append("stop" if cut is not None or hit else "length")
            used += len(ids)
        return Generation(texts, reasons, prompt_tokens, used, p.version)

    @contextlib.contextmanager
    def _adapter(self, loaded: _Loaded, adapter: str | None) -> Any:
        from peft import PeftModel

        if not isinstance(loaded.model, PeftModel):
            yield
        elif adapter is None:
            with loaded.model.disable_adapter():
                yield
        else:
            loaded.model.set_adapter(adapter)
            yield

    # ---- loading (worker thread) ----------------------------------------------------------------------
    def _load_version_sync(self, route: Route) -> None:
        loaded = self._bases.get(route.base_model_path) or self._load_base(route.base_model_path)
        adapter = None
        if route.adapter_path:
            adapter = re.sub(r"[^A-Za-z0-9_]", "_", route.version)
            self._load_adapter(loaded, adapter, route.adapter_path)
        self._versions[route.version] = (route.base_model_path, adapter)
        self._routes[route.version] = route
        log.info("transformers backend: version %s loaded (base %s, adapter %s)", route.version,
                 route.base_model_path, route.adapter_path)

    def _load_base(self, path: str) -> _Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            gen_tok = AutoTokenizer.from_pretrained(path)
            loop_tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise BackendError(f"cannot load base model from {path}: {e}") from e
        for tok in (gen_tok, loop_tok):
            tok.padding_side = "left"           # decoder-only batches pad on the left
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
        model.eval()
        fim = detect_fim(loop_tok, path)
        loaded = _Loaded(model=model, gen_tok=gen_tok, loop_tok=loop_tok, fim=fim,
                         max_positions=getattr(model.config, "max_position_embeddings", None),
                         markup=fim_markup(loop_tok, fim))
        self._bases[path] = loaded
        return loaded

    @staticmethod
    def _load_adapter(loaded: _Loaded, name: str, path: str) -> None:
        from peft import PeftModel

        try:
            if not isinstance(loaded.model, PeftModel):
                loaded.model = PeftModel.from_pretrained(loaded.model, path, adapter_name=name)
            else:
                if name in loaded.model.peft_config:
                    loaded.model.delete_adapter(name)
                loaded.model.load_adapter(path, adapter_name=name)
        except (OSError, ValueError, KeyError) as e:
            raise BackendError(f"cannot load LoRA adapter from {path}: {e}") from e
        loaded.model.eval()
        loaded.adapters[name] = path
