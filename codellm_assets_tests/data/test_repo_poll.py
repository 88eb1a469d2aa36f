"""repo_poll without Dagster: the backoff table, the run-request decisions, the background pool, and
git_scan.run_bounded killing a whole process group at its timeout."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import psutil
import pytest

from codellm_assets.core.data import repo_poll
from codellm_assets.core.data.git_scan import run_bounded
from codellm_assets.core.data.repo_poll import Polled, RepoState, RunAsked

H1 = json.dumps({"main": "a" * 40})
H2 = json.dumps({"main": "b" * 40})


@pytest.mark.parametrize(("failures", "wait"), [(0, 0), (1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (30, 3600)])
def test_backoff_doubles_up_to_the_cap(failures, wait):
    assert repo_poll.backoff_s(failures, 60, 3600) == wait


def test_record_poll_backs_off_and_a_success_resets():
    state = RepoState()
    for n in (1, 2, 3):
        repo_poll.record_poll(state, Polled(None, "boom", 100.0, 101.0), base_s=10, max_s=100)
        assert state.failures == n and state.retry_at == 101.0 + 10 * 2 ** (n - 1) and state.error == "boom"
    repo_poll.record_poll(state, Polled(H1, None, 200.0, 201.0), base_s=10, max_s=100)
    assert (state.failures, state.retry_at, state.error, state.seen) == (0, 0.0, None, H1)


def test_due_skips_backed_off_and_in_flight_and_takes_the_oldest_first():
    states = {"a": RepoState(polled_at=5), "b": RepoState(polled_at=1), "c": RepoState(retry_at=50),
              "d": RepoState(polled_at=0), "e": RepoState(polled_at=2)}
    due = repo_poll.due(states, list(states), now=10, cap=2, in_flight=lambda n: n == "d")
    assert due == ["b", "e"]


def _ask(heads=H1, attempt=1, at=0.0):
    return RunAsked("req", heads, at, attempt)


# (state before, run found, expected: request asked -> its reason (None: nothing), state fields after)
DECISIONS = [
    ("nothing polled yet", RepoState(), None, None, {}),
    ("new repo", RepoState(seen=H1), None, "new repo", {"done": None}),
    ("branch moved", RepoState(seen=H2, done=H1), None, "branch moved", {}),
    ("already done", RepoState(seen=H1, done=H1), None, None, {"request": None}),
    ("done, '' for an empty repo", RepoState(seen=json.dumps({"main": "0" * 40}), done=json.dumps({"main": ""})),
     None, None, {}),
    ("run still running", RepoState(seen=H1, request=_ask()), ("pending", "r1"), None, {"done": None}),
    ("no run yet, within grace", RepoState(seen=H1, request=_ask(at=95)), None, None, {}),
    ("no run after the grace", RepoState(seen=H1, request=_ask(at=0)), None,
     "retry 1: the request never became a run", {}),
    ("run succeeded", RepoState(seen=H1, request=_ask()), ("success", "r1"), None, {"done": H1, "request": None}),
    ("run failed", RepoState(seen=H1, request=_ask()), ("failed", "r1"), "retry 1 after a failed run",
     {"done": None}),
    ("last retry failed", RepoState(seen=H1, request=_ask(attempt=3)), ("failed", "r3"), None,
     {"gave_up": H1, "request": None}),
    ("given up on these heads", RepoState(seen=H1, gave_up=H1), None, None, {}),
    ("given up, then a new commit", RepoState(seen=H2, gave_up=H1, done=H1), None, "branch moved", {}),
    ("moved while a run was pending", RepoState(seen=H2, done=H1, request=_ask()), ("pending", "r1"),
     "branch moved", {}),
]


@pytest.mark.parametrize(("state", "run", "reason", "after"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS])
def test_decide(state, run, reason, after):
    asked = repo_poll.decide(state, "alpha", run, now=100.0, max_run_retries=2, grace_s=10)
    assert (asked.reason if asked else None) == reason
    if asked is not None:
        assert state.request is asked and asked.heads == state.seen
        assert asked.attempt == (1 if reason in ("new repo", "branch moved") else 2)
    for key, value in after.items():
        assert getattr(state, key) == value, key


def test_cursor_round_trip_and_the_old_format():
    states = {"a": RepoState(seen=H1, request=RunAsked("x", H1, 1.0, 2, "retry 1 after a failed run"))}
    assert repo_poll.load_states(repo_poll.dump_states(states)) == states
    assert repo_poll.load_states(json.dumps({"a": H1})) == {"a": RepoState(done=H1, seen=H1)}
    assert repo_poll.load_states(None) == {}


def test_pool_runs_in_the_background_and_never_twice_at_once():
    pool = repo_poll.FetchPool(2)
    release = threading.Event()
    assert pool.submit("slow", lambda: (release.wait(5), H1)[1])
    assert not pool.submit("slow", lambda: H2), "a repo in flight is not submitted again"
    assert pool.submit("boom", lambda: (_ for _ in ()).throw(RuntimeError("no route to host")))
    assert not pool.wait(["slow"], timeout=0.2) and pool.in_flight("slow")
    assert pool.wait(["boom"], timeout=5)
    assert pool.take(["slow", "boom"])["boom"].error == "no route to host"
    release.set()
    assert pool.wait(["slow"], timeout=5)
    assert pool.take(["slow"])["slow"].heads == H1 and pool.take(["slow"]) == {}


def test_run_bounded_kills_what_the_command_started(tmp_path):
    # What a hung fetch looks like: git waiting on a remote helper (here `sleep`) it started. subprocess.run's
    # timeout kills only the direct child; the helper would live on, one leaked process per poll.
    pid_file = tmp_path / "helper.pid"
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded(["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"], timeout=1)
    assert time.monotonic() - start < 5
    helper = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(helper):
        time.sleep(0.05)
    assert not _alive(helper), "the command's own child survived the timeout"
    assert run_bounded(["sh", "-c", "echo ok"], timeout=5).stdout == b"ok\n"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
