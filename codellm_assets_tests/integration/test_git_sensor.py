"""git_heads_sensor on a real Dagster instance with real git repos: a failed snapshot run is requested again
(up to ingest.max_run_retries), a hung remote does not hold up the tick or the other repos, and a repo that
keeps failing to fetch is backed off exponentially until it works again."""

from __future__ import annotations

import json
import shutil
import socket
import time

import dagster as dg
import pytest
from dagster._core.utils import make_new_run_id

from codellm_assets.defs import checks, corpus, ingest
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration.conftest import resources_for, write_config
from codellm_assets_tests.integration.test_data_stage import AWS_ID, module

PER_REPO = [ingest.repo_snapshots, corpus.clean_files, corpus.scrubbed_corpus, checks.no_leftover_secrets]


class Sensor:
    """Ticks the sensor the way the daemon does: its cursor carried from tick to tick."""

    def __init__(self, config, instance):
        self.resources, self.instance, self.cursor = resources_for(config), instance, None

    def tick(self) -> dg.SensorResult:
        with dg.build_sensor_context(instance=self.instance, resources=self.resources, cursor=self.cursor) as ctx:
            result = ingest.git_heads_sensor(ctx)
        self.cursor = result.cursor
        for req in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        return result

    def state(self, repo: str) -> dict:
        return json.loads(self.cursor)["repos"][repo]

    def launch(self, request: dg.RunRequest) -> bool:
        """The run the daemon would launch for ``request``: a real run in the instance, with its tags."""
        return dg.materialize(PER_REPO, resources=self.resources, instance=self.instance,
                              partition_key=request.partition_key, tags=request.tags, raise_on_error=False).success


def _one(result: dg.SensorResult) -> dg.RunRequest:
    assert len(result.run_requests) == 1, result.run_requests
    return result.run_requests[0]


def test_failed_run_is_requested_again_until_it_succeeds(tmp_path, make_git_repo, instance):
    repo = make_git_repo("alpha", {"src/a.py": module("a"), "src/b.py": module("b")})
    sensor = Sensor(write_config(tmp_path, [{"name": "alpha", "path": str(repo), "branches": ["main"]}]), instance)
    first = _one(sensor.tick())
    assert first.tags["codellm/reason"] == "new repo"
    shutil.move(repo, tmp_path / "away")   # the repo is unreachable while the run runs (a lost mount)
    assert not sensor.launch(first)
    shutil.move(tmp_path / "away", repo)
    retry = _one(sensor.tick())
    assert retry.partition_key == "alpha" and retry.tags["codellm/reason"] == "retry 1 after a failed run"
    assert retry.tags[ingest.REQUEST_TAG] != first.tags[ingest.REQUEST_TAG]
    assert sensor.state("alpha")["done"] is None, "the cursor must not move before a run succeeded"
    assert sensor.launch(retry)
    assert sensor.tick().run_requests == []
    assert sensor.state("alpha")["done"] == sensor.state("alpha")["seen"]
    assert sensor.tick().run_requests == []


def test_a_run_failed_only_by_its_blocking_check_is_not_retried(tmp_path, make_git_repo, instance):
    """A leaked key fails the blocking leftover check and the run with it; the snapshot of those commits exists
    and its verdict already blocks the partition downstream, so asking again would only repeat the verdict."""
    leaky = make_git_repo("leaky", {"app/settings.py": module("settings", extra=f'KEY = "{AWS_ID}"\n')})
    sensor = Sensor(write_config(tmp_path, [{"name": "leaky", "path": str(leaky), "branches": ["main"]}],
                                 scrub={"disabled_rules": ["aws_access_key"]}), instance)
    assert not sensor.launch(_one(sensor.tick()))
    assert sensor.tick().run_requests == []
    assert sensor.state("leaky")["done"] == sensor.state("leaky")["seen"]


def test_a_running_run_is_waited_for_and_a_dropped_request_asked_again(tmp_path, make_git_repo, instance):
    repo = make_git_repo("alpha", {"src/a.py": module("a")})
    sensor = Sensor(write_config(tmp_path, [{"name": "alpha", "path": str(repo), "branches": ["main"]}],
                                 ingest={"run_start_grace_s": 0.01}), instance)
    first = _one(sensor.tick())
    time.sleep(0.05)
    dropped = _one(sensor.tick())   # no run ever carried the first request: past the grace it is asked again
    assert dropped.tags["codellm/reason"] == "retry 1: the request never became a run"
    instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=make_new_run_id(), status=dg.DagsterRunStatus.STARTED,
                                   tags={**dropped.tags, "dagster/partition": "alpha"}))   # launched, not finished
    time.sleep(0.05)
    assert sensor.tick().run_requests == []
    assert sensor.state("alpha")["request"]["id"] == dropped.tags[ingest.REQUEST_TAG] != first.tags[ingest.REQUEST_TAG]


def test_retries_are_capped_and_a_new_commit_starts_over(tmp_path, make_git_repo, instance):
    repo = make_git_repo("alpha", {"src/a.py": module("a")})
    sensor = Sensor(write_config(tmp_path, [{"name": "alpha", "path": str(repo), "branches": ["main"]}],
                                 ingest={"max_run_retries": 1}), instance)
    request = _one(sensor.tick())
    for _ in range(2):   # the first run and its one retry fail
        shutil.move(repo, tmp_path / "away")
        assert not sensor.launch(request)
        shutil.move(tmp_path / "away", repo)
        result = sensor.tick()
        request = result.run_requests[0] if result.run_requests else None
    assert request is None, "after 1 + max_run_retries failed runs nothing more is requested for those heads"
    assert sensor.state("alpha")["gave_up"] == sensor.state("alpha")["seen"]
    assert sensor.tick().run_requests == []
    commit_files(repo, {"src/c.py": module("c")}, "new work")
    fresh = _one(sensor.tick())
    assert fresh.tags["codellm/reason"] == "new repo"   # nothing was ever snapshotted for this repo
    assert sensor.launch(fresh)
    assert sensor.tick().run_requests == []


@pytest.fixture
def black_hole():
    """A git:// address whose server accepts the connection and never answers (a hung remote)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)   # never accepted: the kernel completes the handshake, git then waits forever
        yield f"git://127.0.0.1:{server.getsockname()[1]}/hung.git"


def test_a_hung_remote_blocks_neither_the_tick_nor_the_other_repos(tmp_path, make_git_repo, instance, black_hole):
    upstream = make_git_repo("upstream", {"src/a.py": module("a")})
    config = write_config(tmp_path, [{"name": "hung", "url": black_hole}, {"name": "good", "url": str(upstream)}],
                          ingest={"fetch_workers": 2, "fetch_timeout_s": 4, "tick_wait_s": 2,
                                  "backoff_base_s": 30, "backoff_max_s": 60})
    sensor = Sensor(config, instance)
    start = time.monotonic()
    first = sensor.tick()
    assert time.monotonic() - start < 3.5, "the tick waited for the hung fetch"
    assert [r.partition_key for r in first.run_requests] == ["good"]
    assert sensor.state("hung")["seen"] is None and sensor.state("hung")["failures"] == 0   # still in flight
    time.sleep(3)   # past the fetch timeout: the hung clone was killed
    sensor.tick()
    hung = sensor.state("hung")
    assert hung["failures"] == 1 and "did not finish in 4 s" in hung["error"]
    assert hung["retry_at"] - time.time() > 20, "the next poll of a failing repo waits for its backoff"
    assert not list((tmp_path / "home" / "mirrors").glob(".hung*")), "the half-made clone was left behind"


def test_backoff_grows_and_resets_on_success(tmp_path, make_git_repo, instance):
    remote = tmp_path / "later"   # does not exist yet: every clone fails
    config = write_config(tmp_path, [{"name": "flaky", "url": str(remote)}],
                          ingest={"backoff_base_s": 1, "backoff_max_s": 8, "tick_wait_s": 30})
    sensor = Sensor(config, instance)

    def tick_when_due() -> dict:
        time.sleep(max(0.0, sensor.state("flaky")["retry_at"] - time.time()) + 0.05)
        sensor.tick()
        return sensor.state("flaky")

    assert sensor.tick().run_requests == []
    s1 = sensor.state("flaky")
    assert s1["failures"] == 1 and s1["retry_at"] - s1["polled_at"] == pytest.approx(1, abs=0.5)
    sensor.tick()   # backoff not over: not polled again
    assert sensor.state("flaky")["polled_at"] == s1["polled_at"] and sensor.state("flaky")["failures"] == 1
    s2 = tick_when_due()
    assert s2["failures"] == 2 and s2["retry_at"] - s2["polled_at"] == pytest.approx(2, abs=0.5)
    s3 = tick_when_due()
    assert s3["failures"] == 3 and s3["retry_at"] - s3["polled_at"] == pytest.approx(4, abs=0.5)
    make_git_repo("later", {"src/a.py": module("a")})
    time.sleep(max(0.0, s3["retry_at"] - time.time()) + 0.05)
    result = sensor.tick()
    ok = sensor.state("flaky")
    assert ok["failures"] == 0 and ok["retry_at"] == 0 and ok["error"] is None and ok["seen"]
    assert [r.partition_key for r in result.run_requests] == ["flaky"]


def test_the_old_cursor_reads_as_heads_done(tmp_path, make_git_repo, instance):
    repo = make_git_repo("alpha", {"src/a.py": module("a")})
    sensor = Sensor(write_config(tmp_path, [{"name": "alpha", "path": str(repo), "branches": ["main"]}]), instance)
    _one(sensor.tick())
    heads = sensor.state("alpha")["seen"]
    sensor.cursor = json.dumps({"alpha": heads})   # what the sensor stored before retries were tracked
    assert sensor.tick().run_requests == []
    commit_files(repo, {"src/b.py": module("b")}, "moves")
    assert _one(sensor.tick()).tags["codellm/reason"] == "branch moved"


def test_git_heads_observation_reads_every_repo_and_skips_a_broken_one(tmp_path, make_git_repo, instance):
    from codellm_assets.defs.shared import latest_data_version

    repos = {n: make_git_repo(n, {"src/a.py": module(n)}) for n in ("r1", "r2", "r3")}
    config = write_config(tmp_path, [*({"name": n, "path": str(p), "branches": ["main"]} for n, p in repos.items()),
                                     {"name": "gone", "path": str(tmp_path / "nope"), "branches": ["main"]}],
                          ingest={"fetch_workers": 2})
    instance.add_dynamic_partitions("repos", [*repos, "gone"])
    defs = dg.Definitions(assets=[ingest.git_heads, *PER_REPO[:3]], resources=resources_for(config))
    job = defs.resolve_implicit_global_asset_job_def()   # what `codellm run` observes the sources with
    assert job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("git_heads")]).success
    for name, path in repos.items():
        observed = latest_data_version(instance, "git_heads", partition=name, observed=True)
        assert observed is not None and json.loads(observed) == {"main": _head(path)}
    assert latest_data_version(instance, "git_heads", partition="gone", observed=True) is None


def _head(repo) -> str:
    from codellm_assets_tests.conftest import git

    return git(repo, "rev-parse", "HEAD")
