"""Stage 1: repo snapshots from git, incremental per repo (one dynamic partition per configured repo)."""


import json
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data import git_scan
from codellm_assets.core.data.samples import SampleError, ensure_sample_repo
from codellm_assets.defs.shared import SNAPSHOT_SCHEMA, latest_data_version, repo_git_dir, repos_partitions
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource, asset_storage_path
from codellm_assets.settings import RepoSettings, Settings


def local_repo_path(settings: Settings, repo: RepoSettings) -> Path:
    """The local git directory for a configured repo: its path, a sample built on first use, or a mirror."""
    if repo.url:
        return git_scan.ensure_mirror(repo.url, repo_git_dir(settings, repo.name))
    path = settings.resolve(repo.path or "")
    if not path.exists() and repo.seed_from_package:
        ensure_sample_repo(path, repo.seed_from_package)
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
    versions = {}
    for repo in s.repos:
        if repo.name not in known:
            continue
        try:
            versions[repo.name] = json.dumps(repo_heads(s, repo), sort_keys=True)
        except (git_scan.RepoError, SampleError) as e:   # repo_snapshots fails that partition with it
            context.log.warning(str(e))
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


def same_heads(snapshot_version: str | None, heads: str) -> bool:
    """Whether a recorded {branch: sha} (a cursor entry or repo_snapshots' data version, which writes an empty
    repository's commit as "") names the same commits as `heads`."""
    if snapshot_version is None:
        return False
    try:
        recorded = json.loads(snapshot_version)
    except ValueError:
        return False
    if not isinstance(recorded, dict):
        return False
    return {b: sha or git_scan.NULL_SHA for b, sha in recorded.items()} == json.loads(heads)


PER_REPO_SELECTION = dg.AssetSelection.assets("repo_snapshots", "clean_files", "scrubbed_corpus")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=PER_REPO_SELECTION,
           description="Adds a partition per configured repo and re-snapshots a repo only when a branch moved.")
def git_heads_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource) -> dg.SensorResult:
    s = settings.get()
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(repos_partitions.name))
    new = [r.name for r in s.repos if r.name not in known]
    run_requests = []
    for repo in s.repos:
        try:
            heads = json.dumps(repo_heads(s, repo), sort_keys=True)
        except (git_scan.RepoError, SampleError) as e:
            context.log.warning(str(e))
            continue
        # A repo this sensor has not seen yet may have been snapshotted already (by `codellm run`, or before the
        # sensor's cursor was reset): start from the commits of its latest stored snapshot, not from nothing.
        last = cursor.get(repo.name)
        if last is None and repo.name in known:
            last = latest_data_version(context.instance, "repo_snapshots", partition=repo.name)
        if not same_heads(last, heads):
            # No run_key: the cursor already de-duplicates, and a branch reverted to an earlier sha must
            # re-snapshot (a run key seen before would be skipped by the daemon).
            run_requests.append(dg.RunRequest(
                partition_key=repo.name,
                tags={"codellm/reason": "branch moved" if last is not None else "new repo"}))
        cursor[repo.name] = heads
    return dg.SensorResult(
        run_requests=run_requests, cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[repos_partitions.build_add_request(new)] if new else [])
