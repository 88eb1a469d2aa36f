"""Stage 1: repo snapshots from git, incremental per repo (one dynamic partition per configured repo)."""


import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data import git_scan, repo_poll
from codellm_assets.core.data.company_sample import ensure_company_repo
from codellm_assets.core.data.repo_poll import same_heads  # noqa: F401  (re-exported: older imports)
from codellm_assets.core.data.samples import SampleError, ensure_sample_repo
from codellm_assets.defs.shared import SNAPSHOT_SCHEMA, latest_data_version, repo_git_dir, repos_partitions
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource, asset_storage_path
from codellm_assets.settings import RepoSettings, Settings


def local_repo_path(settings: Settings, repo: RepoSettings) -> Path:
    """The local git directory for a configured repo: its path, a sample built on first use, or a mirror."""
    if repo.url:
        return git_scan.ensure_mirror(repo.url, repo_git_dir(settings, repo.name), repo_name=repo.name,
                                      timeout_s=settings.ingest.fetch_timeout_s)
    path = settings.resolve(repo.path or "")
    if not path.exists() and repo.seed_from_package:
        ensure_sample_repo(path, repo.seed_from_package)
    elif not path.exists() and repo.seed_company_demo is not None:
        ensure_company_repo(path, services=repo.seed_company_demo.services, seed=repo.seed_company_demo.seed)
    return path


def repo_heads(settings: Settings, repo: RepoSettings) -> dict[str, str]:
    """{branch: HEAD sha} for one repo; raises git_scan.RepoError with a clear message."""
    path = local_repo_path(settings, repo)
    return {b: git_scan.resolve_head(path, b) for b in repo.branches}


def _previous_records(settings: Settings, repo_name: str) -> list[dict]:
    """The last stored snapshot of this partition (any branch): its blobs are reused, not read again."""
    path = asset_storage_path(settings.data_dir, dg.AssetKey("repo_snapshots"), repo_name, ".parquet")
    return pl.read_parquet(path).to_dicts() if path.exists() else []


@dg.observable_source_asset(op_tags=k8s_tags_for("git_heads"),
    partitions_def=repos_partitions, group_name="data",
    description="HEAD sha of each configured branch, per repo: its data version moves when a branch moves.",
)
def git_heads(context, settings: SettingsResource) -> dg.DataVersionsByPartition:
    s = settings.get()
    known = set(context.instance.get_dynamic_partitions(repos_partitions.name))
    repos = [r for r in s.repos if r.name in known]

    def heads(repo: RepoSettings) -> str | Exception:
        try:
            return json.dumps(repo_heads(s, repo), sort_keys=True)
        except (git_scan.RepoError, SampleError) as e:   # repo_snapshots fails that partition with it
            return e

    versions = {}
    # Fetched ingest.fetch_workers at a time (each killed after ingest.fetch_timeout_s), not one after another.
    with ThreadPoolExecutor(max_workers=s.ingest.fetch_workers) as pool:
        for repo, version in zip(repos, pool.map(heads, repos), strict=True):
            if isinstance(version, Exception):
                context.log.warning(str(version))
            else:
                versions[repo.name] = version
    return dg.DataVersionsByPartition(versions)


@dg.asset(op_tags=k8s_tags_for("repo_snapshots"),
    partitions_def=repos_partitions, group_name="data", deps=[git_heads],
    description="Files at the configured branches' HEAD: repo, branch, commit, path, language, bytes, "
                "content, blob sha. Incremental: unchanged blobs are reused from the previous snapshot.",
)
def repo_snapshots(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    repo = s.repo(context.partition_key)
    try:
        path = local_repo_path(s, repo)
    except (git_scan.RepoError, SampleError) as e:
        raise dg.Failure(description=str(e)) from e
    try:
        scan = git_scan.scan_repo(path, repo_name=repo.name, branches=repo.branches, languages=repo.languages,
                                  max_file_bytes=s.quality.max_file_bytes,
                                  previous_records=_previous_records(s, repo.name))
    except (git_scan.RepoError, ValueError) as e:   # ValueError: an unknown language in repos[].languages
        raise dg.Failure(description=str(e)) from e
    for result in scan.results:
        context.log.info(f"{repo.name}@{result.branch} {(result.commit or 'empty')[:10]}: "
                         f"{len(result.records)} files, {result.blobs_read} blobs read, {result.blobs_reused} reused")
    records, skipped, blobs_read, blobs_reused = scan.records, scan.skipped, scan.blobs_read, scan.blobs_reused
    commits = {branch: sha or "" for branch, sha in scan.commits.items()}
    df = pl.DataFrame(records, schema=SNAPSHOT_SCHEMA)
    langs = df.group_by("language").len().sort("len", descending=True) if len(df) else None
    return dg.Output(
        df,
        data_version=dg.DataVersion(json.dumps(commits, sort_keys=True)),
        metadata={
            "files": len(df),
            "bytes": int(df["bytes"].sum()) if len(df) else 0,
            "commits": dg.MetadataValue.json(commits),
            "blobs_read": blobs_read,
            "blobs_reused": blobs_reused,
            "skipped": dg.MetadataValue.json(dict(skipped)),
            "skipped_total": sum(skipped.values()),
            "languages": dg.MetadataValue.json(dict(langs.iter_rows()) if langs is not None else {}),
            "dagster/row_count": len(df),
        },
    )


PER_REPO_ASSETS = ("repo_snapshots", "clean_files", "scrubbed_corpus")
PER_REPO_SELECTION = dg.AssetSelection.assets(*PER_REPO_ASSETS)
REQUEST_TAG = "codellm/heads_request"   # the id of the request a run came from: how the sensor finds it again
_RUN_STATUS: dict[dg.DagsterRunStatus, repo_poll.RunStatus] = {
    dg.DagsterRunStatus.SUCCESS: "success", dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "failed"}


def _poll_heads(settings: Settings, repo: RepoSettings) -> str:
    """Fetch (a `url:` repo) and read the heads: runs on a FetchPool thread, bounded by ingest.fetch_timeout_s."""
    return json.dumps(repo_heads(settings, repo), sort_keys=True)


def _runs_for(instance: dg.DagsterInstance, request_ids: list[str]) -> dict[str, tuple[repo_poll.RunStatus, str]]:
    """{request id: (status, run id) of the newest run carrying it}: one query for every pending request."""
    if not request_ids:
        return {}
    found: dict[str, tuple[repo_poll.RunStatus, str]] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: request_ids})):  # newest first
        rid = run.tags.get(REQUEST_TAG)
        if rid in found:   # a re-execution copies the tag: the newest run is the one that counts
            continue
        status = _RUN_STATUS.get(run.status, "pending")
        if status == "failed" and _snapshotted(instance, run.run_id):
            status = "success"
        found[rid] = (status, run.run_id)
    return found


def _snapshotted(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether a failed run still materialized every per-repo asset: then only a check failed (a leftover secret
    fails the blocking check, and the run with it). Running it again would give the same verdict on the same
    commits; the stored verdict already keeps the partition out of deduped_corpus (fail closed), so the heads
    count as done and only a new commit re-snapshots."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    made = {r.event_log_entry.dagster_event.asset_key for r in records if r.event_log_entry.dagster_event}
    return {dg.AssetKey(k) for k in PER_REPO_ASSETS} <= made


def _states(context: dg.SensorEvaluationContext, settings: Settings,
            known: set[str]) -> dict[str, repo_poll.RepoState]:
    states = repo_poll.load_states(context.cursor)
    states = {r.name: states.get(r.name) or repo_poll.RepoState() for r in settings.repos}  # removed repos go
    for repo in settings.repos:
        state = states[repo.name]
        # A repo this sensor has not seen yet may have been snapshotted already (by `codellm run`, or before the
        # sensor's cursor was reset): start from the commits of its latest stored snapshot, not from nothing.
        if state.done is None and state.seen is None and repo.name in known:
            state.done = latest_data_version(context.instance, "repo_snapshots", partition=repo.name)
    return states


def _poll(context: dg.SensorEvaluationContext, settings: Settings, states: dict[str, repo_poll.RepoState]) -> None:
    """Collect finished polls, start the due ones, wait at most ingest.tick_wait_s, collect again."""
    ing = settings.ingest
    pool = repo_poll.fetch_pool(ing.fetch_workers)
    home = str(settings.home_dir)   # one process may serve several settings files (tests): keys per home

    def collect() -> None:
        for (_, name), polled in pool.take([(home, n) for n in states]).items():
            repo_poll.record_poll(states[name], polled, base_s=ing.backoff_base_s, max_s=ing.backoff_max_s)

    collect()
    now = time.time()
    started = repo_poll.due(states, [r.name for r in settings.repos], now=now, cap=ing.max_fetches_per_tick,
                            in_flight=lambda n: pool.in_flight((home, n)))
    for name in started:
        states[name].polled_at = now
        pool.submit((home, name), partial(_poll_heads, settings, settings.repo(name)))
    if not pool.wait([(home, n) for n in started], timeout=ing.tick_wait_s):
        context.log.info("some fetches are still running; a later tick picks them up")
    collect()


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=PER_REPO_SELECTION,
           description="Adds a partition per configured repo and re-snapshots a repo when a branch moved, polling "
                       "repos in a bounded background pool (per-repo timeout, backoff) and requesting a failed "
                       "snapshot run again (ingest.max_run_retries).")
def git_heads_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource) -> dg.SensorResult:
    # The cursor holds per repo what a run is KNOWN to have snapshotted (`done`), apart from the run asked for
    # (`request`, whose id the run carries as a tag): it moves only once that run succeeded, so a failed run
    # is requested again (core/data/repo_poll.py explains the states). No run_key: the request ids already
    # de-duplicate, and a branch reverted to an earlier sha must re-snapshot (a run key seen before would be
    # skipped by the daemon).
    s = settings.get()
    known = set(context.instance.get_dynamic_partitions(repos_partitions.name))
    new = [r.name for r in s.repos if r.name not in known]
    states = _states(context, s, known)
    _poll(context, s, states)
    runs = _runs_for(context.instance, [st.request.id for st in states.values() if st.request is not None])
    now = time.time()
    run_requests = []
    for repo in s.repos:
        state = states[repo.name]
        asked = repo_poll.decide(state, repo.name, runs.get(state.request.id) if state.request else None, now=now,
                                 max_run_retries=s.ingest.max_run_retries, grace_s=s.ingest.run_start_grace_s)
        for message in state.log:
            context.log.warning(f"repo '{repo.name}': {message}")
        if asked is not None:
            run_requests.append(dg.RunRequest(partition_key=repo.name,
                                              tags={"codellm/reason": asked.reason, REQUEST_TAG: asked.id}))
    return dg.SensorResult(
        run_requests=run_requests, cursor=repo_poll.dump_states(states),
        dynamic_partitions_requests=[repos_partitions.build_add_request(new)] if new else [])
