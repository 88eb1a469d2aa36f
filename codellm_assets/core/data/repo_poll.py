"""Polling many git repos without blocking a sensor tick, and retrying a snapshot run that failed.

Two parts, no Dagster (the sensor in defs/ingest.py wires them to the instance):

* ``FetchPool``: a fixed number of daemon threads that poll repos (fetch a mirror, read the branch heads).
  A tick submits the repos that are due and waits a bounded time; a fetch still running when the tick returns
  keeps going in the background and its outcome is collected by a later tick. A repo already in flight is
  never submitted twice, so thousands of repos are worked through a few at a time across ticks. Each git
  command is killed at its own timeout (git_scan.run_bounded), so a hung remote holds one thread for at most
  ``fetch_timeout_s`` and never the tick. Daemon threads: an exiting process does not wait for a hung fetch.
* ``RepoState`` (one per repo, stored in the sensor's cursor) with ``record_poll`` (exponential backoff for
  a repo that keeps failing to poll, reset by a success), ``due`` (which repos a tick polls: backoff over,
  not in flight, polled longest ago first, at most a cap) and ``decide`` (whether to request a snapshot run).

Why the cursor does not simply remember "heads requested": a requested run can fail (a transient git error,
a full disk, a killed pod), and a cursor that already moved would never request it again. So the state keeps
``done`` (the heads a run is known to have snapshotted) apart from ``request`` (the run asked for, with an id
the run carries as a tag). Each tick looks that run up: success moves ``done``; a failure requests it again,
up to ``max_run_retries`` times for the same heads; a request that never became a run (dropped) is asked
again after a grace period. New heads always start over. (A run that failed only at its blocking check still
snapshotted those heads; the sensor reports it as a success: defs/ingest.py ``_snapshotted``.)
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from codellm_assets.core.data.git_scan import NULL_SHA

RunStatus = Literal["pending", "success", "failed"]


# ---- the background pool ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Polled:
    """One finished poll of one repo: its heads (JSON {branch: sha}) or why they could not be read."""
    heads: str | None
    error: str | None
    started: float
    finished: float


class FetchPool:
    """``workers`` daemon threads running poll functions; outcomes wait in ``done`` until taken."""

    def __init__(self, workers: int):
        self.workers = workers
        self._jobs: queue.Queue[tuple[Hashable, Callable[[], str]]] = queue.Queue()
        self._cond = threading.Condition()
        self._in_flight: set[Hashable] = set()
        self._done: dict[Hashable, Polled] = {}
        for i in range(workers):
            threading.Thread(target=self._work, name=f"repo-poll-{i}", daemon=True).start()

    def submit(self, key: Hashable, poll: Callable[[], str]) -> bool:
        """Queue ``poll`` (returns the heads, raises on failure) for ``key``; False if ``key`` is in flight."""
        with self._cond:
            if key in self._in_flight:
                return False
            self._in_flight.add(key)
        self._jobs.put((key, poll))
        return True

    def in_flight(self, key: Hashable) -> bool:
        with self._cond:
            return key in self._in_flight

    def wait(self, keys: Iterable[Hashable], timeout: float) -> bool:
        """Block until none of ``keys`` is in flight or ``timeout`` passed; True if all finished."""
        keys = set(keys)
        with self._cond:
            return self._cond.wait_for(lambda: not keys & self._in_flight, timeout=timeout)

    def take(self, keys: Iterable[Hashable]) -> dict[Hashable, Polled]:
        """The finished outcomes of ``keys`` (removed from the pool)."""
        with self._cond:
            return {k: self._done.pop(k) for k in keys if k in self._done}

    def _work(self) -> None:
        while True:
            key, poll = self._jobs.get()
            started = time.time()
            try:
                heads, error = poll(), None
            except Exception as e:   # any failure is this repo's, recorded and backed off; the thread lives on
                heads, error = None, str(e) or type(e).__name__
            with self._cond:
                self._done[key] = Polled(heads, error, started, time.time())
                self._in_flight.discard(key)
                self._cond.notify_all()


_POOLS: dict[int, FetchPool] = {}
_POOLS_LOCK = threading.Lock()


def fetch_pool(workers: int) -> FetchPool:
    """The process-wide pool of this size (the code server evaluates every tick in one process)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = FetchPool(workers)
        return _POOLS[workers]


# ---- per-repo state --------------------------------------------------------------------------------

@dataclass
class RunAsked:
    """The snapshot run requested for ``heads``; the run carries ``id`` as a tag."""
    id: str
    heads: str
    at: float
    attempt: int
    reason: str = ""


@dataclass
class RepoState:
    done: str | None = None       # heads a snapshot run is known to have succeeded for
    seen: str | None = None       # heads of the latest successful poll
    polled_at: float = 0.0        # when the latest poll started (the oldest are polled first)
    failures: int = 0             # polls failed in a row
    retry_at: float = 0.0         # backoff: not polled before this time
    error: str | None = None      # why the latest poll failed
    request: RunAsked | None = None
    gave_up: str | None = None    # heads whose runs failed 1 + max_run_retries times: not asked again
    log: list[str] = field(default_factory=list, repr=False)   # this tick's messages, not stored

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("log")
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RepoState:
        names = {f.name for f in fields(cls)} - {"log"}
        state = cls(**{k: v for k, v in d.items() if k in names})
        if isinstance(state.request, Mapping):
            state.request = RunAsked(**state.request)
        return state


def load_states(cursor: str | None) -> dict[str, RepoState]:
    """Repo states from a cursor; the old cursor ({repo: heads requested}) reads as those heads done."""
    raw = json.loads(cursor) if cursor else {}
    if raw.get("v") == 2:
        return {name: RepoState.from_json(d) for name, d in raw["repos"].items()}
    return {name: RepoState(done=heads, seen=heads) for name, heads in raw.items() if isinstance(heads, str)}


def dump_states(states: Mapping[str, RepoState]) -> str:
    return json.dumps({"v": 2, "repos": {n: s.to_json() for n, s in sorted(states.items())}}, sort_keys=True)


def same_heads(recorded: str | None, heads: str | None) -> bool:
    """Whether a recorded {branch: sha} (a cursor entry or repo_snapshots' data version, which writes an empty
    repository's commit as "") names the same commits as ``heads``."""
    if recorded is None or heads is None:
        return False
    try:
        parsed = json.loads(recorded)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    return {b: sha or NULL_SHA for b, sha in parsed.items()} == json.loads(heads)


def backoff_s(failures: int, base_s: float, max_s: float) -> float:
    """The wait after ``failures`` failed polls in a row: base, 2 x base, 4 x base, ... capped at max."""
    return 0.0 if failures <= 0 else min(max_s, base_s * 2 ** (failures - 1))


def record_poll(state: RepoState, polled: Polled, *, base_s: float, max_s: float) -> None:
    if polled.error is None:
        state.seen, state.failures, state.retry_at, state.error = polled.heads, 0, 0.0, None
        return
    state.failures += 1
    wait = backoff_s(state.failures, base_s, max_s)
    state.retry_at, state.error = polled.finished + wait, polled.error
    state.log.append(f"poll failed {state.failures} time(s) in a row, next try in {wait:.0f} s: {polled.error}")


def due(states: Mapping[str, RepoState], names: Iterable[str], *, now: float, cap: int,
        in_flight: Callable[[str], bool]) -> list[str]:
    """Repos to poll this tick: backoff over and not still in flight, polled longest ago first, at most ``cap``."""
    ready = [n for n in names if states[n].retry_at <= now and not in_flight(n)]
    return sorted(ready, key=lambda n: states[n].polled_at)[:cap]


def decide(state: RepoState, name: str, run: tuple[RunStatus, str] | None, *, now: float,
           max_run_retries: int, grace_s: float) -> RunAsked | None:
    """The run to request for this repo now (``state.request`` is set to it), or None.

    ``run``: the status and id of the newest run carrying ``state.request.id`` (None: no such run yet).
    """
    target = state.seen
    if target is None:
        return None
    if state.request is not None and state.request.heads != target:
        state.request = None   # the branch moved on: the run for the older heads no longer matters
    if same_heads(state.done, target):
        state.request = None
        return None
    if state.gave_up == target:
        return None
    asked = state.request
    if asked is None:
        return _ask(state, name, target, now, 1, "branch moved" if state.done is not None else "new repo")
    if run is None:
        if now - asked.at < grace_s:
            return None
        state.log.append(f"run request {asked.id} never became a run in {grace_s:.0f} s: asking again")
        return _ask(state, name, target, now, asked.attempt + 1,
                    f"retry {asked.attempt}: the request never became a run")
    status, run_id = run
    if status == "pending":
        return None
    if status == "success":
        state.done, state.request, state.gave_up = asked.heads, None, None
        return None
    if asked.attempt > max_run_retries:
        state.request, state.gave_up = None, target
        state.log.append(f"run {run_id} failed; {asked.attempt} run(s) failed for these heads, giving up until "
                         f"a branch moves (ingest.max_run_retries={max_run_retries})")
        return None
    state.log.append(f"run {run_id} failed: requesting it again (retry {asked.attempt}/{max_run_retries})")
    return _ask(state, name, target, now, asked.attempt + 1, f"retry {asked.attempt} after a failed run")


def _ask(state: RepoState, name: str, heads: str, now: float, attempt: int, reason: str) -> RunAsked:
    rid = hashlib.sha256(f"{name}\0{heads}\0{attempt}\0{now!r}".encode()).hexdigest()[:20]
    state.request = RunAsked(rid, heads, now, attempt, reason)
    return state.request
