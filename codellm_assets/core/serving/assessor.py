"""The buggy-code detector, run OFF the request path: a background thread with a bounded queue assesses
completions (``codellm_assets.core.evaluation.buggy.assess_code``), stores the verdict on the request row and counts
``codellm_buggy_code_total`` / ``codellm_assessed_completions_total``. When the queue is full a completion
is simply not assessed (the rate is a sample). Detection yields to serving: the thread runs at a lower CPU
priority (Linux per-thread nice, inherited by the ruff subprocess) and keeps to a CPU budget (after an
assessment that took ``d`` seconds it rests ``d * (1 - budget) / budget``), so under heavy traffic it
samples instead of competing with generation for the cores."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import random
import re
import threading
import time
from typing import Any

from codellm_assets.core.serving.metrics import GatewayMetrics
from codellm_assets.core.serving.store import Store

log = logging.getLogger(__name__)
_STOP = object()
_FENCE = re.compile(r"```[\w+-]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block of a chat answer, else the whole text."""
    m = _FENCE.search(text)
    return m.group(1) if m else text


class Assessor:
    def __init__(self, store: Store | None, metrics: GatewayMetrics | None, *, fraction: float = 1.0,
                 queue_size: int = 64, niceness: int = 10, cpu_budget: float = 0.1,
                 rng: random.Random | None = None) -> None:
        self.store, self.metrics, self.fraction, self.niceness = store, metrics, fraction, niceness
        self.cpu_budget = min(max(cpu_budget, 0.01), 1.0)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._rng = rng or random.Random()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.skipped = 0
        self.failed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="buggy-code-assessor", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued (up to ``timeout``), then stop."""
        if self._thread is not None:
            self._closing.set()                          # no more resting: drain what is queued
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, completion_id: str, version: str, code: str, *, prompt: str | None = None,
               language: str | None = None) -> bool:
        """Queue a served completion (sampled by ``fraction``); False if skipped."""
        if self._thread is None or self._rng.random() >= self.fraction:
            return False
        return self._put((completion_id, version, code, prompt, language, None))

    def assess_future(self, code: str, *, prompt: str | None = None,
                      language: str | None = None) -> concurrent.futures.Future[Any]:
        """Assess ``code`` in the background; the future gets the CodeAssessment (or None if skipped)."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._thread is None or not self._put((None, None, code, prompt, language, fut)):
            fut.set_result(None)
        return fut

    def _put(self, item: tuple[Any, ...]) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.skipped += 1
            return False

    def _run(self) -> None:
        try:   # lower this thread's priority (Linux: per thread); ruff subprocesses inherit it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.niceness)
        except (AttributeError, OSError, PermissionError):
            pass
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            completion_id, version, code, prompt, language, fut = item
            t0 = time.monotonic()
            try:
                result = self._assess(code, prompt, language)
            except Exception as e:  # noqa: BLE001 - the detector must never take the gateway down
                self.failed += 1
                log.warning("buggy-code detector failed: %s", e)
                result = None
            if fut is not None:
                fut.set_result(result)
            elif result is not None:
                self._record(completion_id, version, result)
            if self.cpu_budget < 1.0 and fut is None:     # shadow comparisons are already rate-bounded
                self._closing.wait((time.monotonic() - t0) * (1.0 - self.cpu_budget) / self.cpu_budget)

    @staticmethod
    def _assess(code: str, prompt: str | None, language: str | None) -> Any:
        from codellm_assets.core.evaluation.buggy import assess_code

        return assess_code(code, language or "python", run_ruff=True, execute=False, prompt=prompt)

    def _record(self, completion_id: str, version: str, result: Any) -> None:
        if self.store is not None:
            self.store.record_assessment(completion_id, result.risk, result.buggy, result.syntax_error)
        if self.metrics is not None:
            self.metrics.assessed.labels(version=version).inc()
            if result.buggy:
                self.metrics.buggy.labels(version=version).inc()
            if result.syntax_error:
                self.metrics.syntax_errors.labels(version=version).inc()
