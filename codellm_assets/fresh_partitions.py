"""Which repo partitions `codellm run` may skip: nothing their per-repo steps read changed since their last good run.

A partition's fingerprint names what those steps read: the repo's heads as ``git_heads`` last observed them,
the repo's own settings and the settings sections the per-repo stages use, and this package's code. A
partition is up to date when its newest run of the same steps carries the same fingerprint, succeeded with
every check passing, is still the latest materialization of each step's asset and its stored files are still
there. Running it again would write the same files: the blob caches make that cheap, not free (~2 s per repo
of Dagster run, event writes and expectations), which a company's thousand repos multiply.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from codellm_assets.core.data import blob_cache
from codellm_assets.resources import asset_storage_path
from codellm_assets.settings import Settings

FINGERPRINT_TAG = "codellm/inputs_fingerprint"
# What the per-repo stages (snapshot, clean, scrub, their checks) read besides the repo's own entry; every other
# section feeds only later steps. test_fresh_partitions.py makes a new section choose a side.
PER_REPO_SECTIONS = ("ingest", "checks", "quality", "scrub", "dedup", "data")
DOWNSTREAM_SECTIONS = ("dataset", "model", "training", "registry", "eval", "serving", "packaging", "monitoring",
                       "alerts", "sources")
PACKAGE_DIR = Path(__file__).resolve().parent


@functools.cache
def code_version(package_dir: Path = PACKAGE_DIR) -> str:
    """A digest of the package's Python sources (any change re-runs every partition: conservative)."""
    return blob_cache.code_version(*package_dir.rglob("*.py"))


def observed_heads(instance: dg.DagsterInstance, partition: str) -> str | None:
    """The data version ``git_heads`` last recorded for ``partition`` (None: never observed, or it failed)."""
    record = instance.get_latest_data_version_record(dg.AssetKey("git_heads"), is_source=True,
                                                      partition_key=partition)
    observation = record.asset_observation if record is not None else None
    version = observation.data_version if observation is not None else None
    return str(version) if version else None


def partition_fingerprint(instance: dg.DagsterInstance, settings: Settings, partition: str,
                          names: Sequence[str]) -> str | None:
    """What the per-repo ``names`` read for ``partition``; None when the heads are unknown (never skip then)."""
    heads = observed_heads(instance, partition)
    if heads is None:
        return None
    parts = {"heads": heads, "repo": settings.repo(partition).model_dump(mode="json"),
             "sections": settings.section_hash(*PER_REPO_SECTIONS), "code": code_version(), "steps": list(names)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def up_to_date(instance: dg.DagsterInstance, settings: Settings, partition: str, names: Sequence[str],
               fingerprint: str | None) -> str | None:
    """The run id of the partition's last good run when it is still current for ``fingerprint``, else None."""
    if fingerprint is None:
        return None
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition, FINGERPRINT_TAG: fingerprint}),
                             limit=1)
    if not runs or runs[0].status != dg.DagsterRunStatus.SUCCESS:
        return None
    run_id = runs[0].run_id
    for name in names:
        key = dg.AssetKey(name)
        latest = _latest(instance, key, partition)
        if latest is None or latest.run_id != run_id:
            return None   # materialized since (another run, the UI) or never: not ours to vouch for
        if not asset_storage_path(settings.data_dir, key, partition, ".parquet").exists():
            return None   # the stored output is gone (a cleaned home): run it again
    if _failed_checks(instance, run_id):
        return None       # a failed check is reported again, not skipped
    return run_id


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str):
    result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                             limit=1)
    return result.records[0] if result.records else None


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return [e.check_name for e in evaluations if not e.passed]
