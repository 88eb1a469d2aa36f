"""What several defs modules share: partitions, frame schemas, tags, the automation policy, metadata helpers.

defs modules import from here (and from core, resources, settings), never from each other.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data import decontam
from codellm_assets.core.monitoring.alerts import Alert, deliver
from codellm_assets.resources import asset_storage_path
from codellm_assets.settings import Settings

# The chain's inputs: their content, once materialized, decides whether there is anything new to train on.
RETRAIN_INPUTS = ("deduped_corpus", "feedback_dataset")


def _deps_have_new_data() -> dg.AutomationCondition:
    """A parent's data VERSION changed since the previous tick (not merely re-materialized; a parent updated by
    the run that also updated this asset does not count), or a parent inside the chain is requested on this tick.
    An input merely requested does not count: more feedback volume may give the same examples (rejects, views),
    so training waits until the materialized feedback_dataset's version has changed."""
    AC = dg.AutomationCondition
    changed = AC.any_deps_match(
        (AC.data_version_changed() & ~AC.executed_with_root_target()).with_label("new data, not from own run"))
    requested = AC.any_deps_match(AC.will_be_requested()).ignore(dg.AssetSelection.assets(*RETRAIN_INPUTS))
    return (changed | requested).with_label("any_deps_have_new_data")


# training_dataset -> base_model -> lora_adapter -> company_benchmark -> eval_scores -> registered_model ->
# deployed_endpoint follow their parents: new feedback_dataset content (itself eager on feedback volume) flows all
# the way to a canary, gated by the blocking eval check. deduped_corpus is NOT eager: a commit to a repo refreshes
# the corpus only when someone (or a schedule) materializes it, not a retrain per push.
# eager() minus two triggers, because a retrain costs GPU hours: (1) a parent that was re-materialized with the
# same data version (deduped_corpus and feedback_dataset version their content) is not new input; (2) "newly
# missing" is not new input either: after `codellm run` stopped half-way (a failed gate leaves registered_model
# unmaterialized), starting the daemon must not pick the chain up again on its own.
RETRAIN_CHAIN = (
    _deps_have_new_data().since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("retrain_on_new_data")

repos_partitions = dg.DynamicPartitionsDefinition(name="repos")

SNAPSHOT_SCHEMA = {
    "repo": pl.String, "branch": pl.String, "commit": pl.String, "path": pl.String, "language": pl.String,
    "bytes": pl.Int64, "content": pl.String, "blob_sha": pl.String,
}
CORPUS_SCHEMA = {**SNAPSHOT_SCHEMA, "redactions": pl.Int64}

# Non-code sources (reviews, Confluence, Jira): one partition per sources.connectors entry. Their documents are
# file rows (repo = the source, path source://…, language markdown) plus what the incremental merge needs.
sources_partitions = dg.DynamicPartitionsDefinition(name="sources")
SOURCE_DOCUMENTS_SCHEMA = {
    **SNAPSHOT_SCHEMA, "doc_id": pl.String, "doc_key": pl.String, "doc": pl.String, "version": pl.String,
    "item": pl.String, "item_version": pl.String, "kind": pl.String, "title": pl.String, "url": pl.String,
    "updated_at": pl.String, "source": pl.String,
}

FEEDBACK_REPO = "ide-feedback"      # the pseudo-repo name feedback examples carry in the corpus

EVAL_METRICS_TAG = "eval.metrics"   # set on each registered version (defs/training.py)


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


def stored_partitions(settings: Settings, asset: str, partitions: list[str]) -> dict[str, pl.DataFrame]:
    """{partition: frame} as stored for a partitioned asset; partitions never materialized are absent. For an
    optional dependency (deduped_corpus reads source_corpus so: a graph without sources loads unchanged)."""
    paths = {p: asset_storage_path(settings.data_dir, dg.AssetKey(asset), p, ".parquet") for p in partitions}
    return {p: pl.read_parquet(path) for p, path in paths.items() if path.exists()}


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """A markdown table for the UI's metadata panel (floats to 4 places, None as a dash)."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def repo_git_dir(settings: Settings, repo_name: str) -> Path:
    """The local git directory repo_snapshots reads a configured repo from, without cloning or fetching (a
    mirror already holds every snapshotted commit): the mirror under home/mirrors for a url, else its path."""
    repo = settings.repo(repo_name)
    return settings.home_dir / "mirrors" / f"{repo.name}.git" if repo.url else settings.resolve(repo.path or "")


def company_eval_items(settings: Settings) -> list[tuple[str, str]]:
    """The hand-written company tasks (HumanEval is always included by the dedup stage itself)."""
    tasks_file = settings.eval.company_tasks_file
    if not tasks_file:
        return []
    path = settings.resolve(tasks_file)
    if not path.exists():   # fail here, before hours of training, not at the benchmark
        raise dg.Failure(f"eval.company_tasks_file {path} does not exist: fix the path (relative to the "
                         f"settings file) or set it to null")
    return decontam.load_eval_items(path)


def frame_version(df: pl.DataFrame) -> dg.DataVersion:
    """A content hash of a frame (schema + rows as CSV, in slices): re-materializing the same data gives the
    same data version, so RETRAIN_CHAIN does not retrain on it."""
    h = hashlib.sha256(repr(list(df.schema.items())).encode())
    for part in df.iter_slices(10_000):
        h.update(part.write_csv(include_header=False).encode())
    return dg.DataVersion(h.hexdigest())


def latest_data_version(instance: dg.DagsterInstance, key: str, *, partition: str | None = None,
                        observed: bool = False) -> str | None:
    """The data version the instance last recorded for an asset (partition): its latest materialization, or
    with `observed` its latest observation. Sensors start from it when their own cursor is empty."""
    from dagster._core.definitions.data_version import extract_data_version_from_entry

    record = instance.get_latest_data_version_record(dg.AssetKey(key), is_source=observed, partition_key=partition)
    version = extract_data_version_from_entry(record.event_log_entry) if record else None
    return version.value if version else None
# ---- the eval gate as data: which verdict the instance recorded for one eval_scores materialization -----

EVAL_SCORES = dg.AssetKey("eval_scores")
EVAL_GATE = dg.AssetCheckKey(EVAL_SCORES, "eval_gate")


@dataclass(frozen=True)
class RecordedVerdict:
    passed: bool
    check_run_id: str
    check_execution_id: int
    eval_storage_id: int
    eval_run_id: str


def consumed_eval_scores(context) -> tuple[int, str, str | None] | None:
    """(storage id, run id, data version) of the eval_scores materialization this step reads: the record
    Dagster resolved for the step's input (the one a check's target and the lineage name too)."""
    from dagster._core.events import DagsterEventType

    info = context.get_step_execution_context().maybe_fetch_and_get_input_asset_version_info(EVAL_SCORES)
    if info is None or info.event_type != DagsterEventType.ASSET_MATERIALIZATION:
        return None
    return info.storage_id, info.run_id, info.data_version.value if info.data_version else None


def recorded_gate_verdict(instance: dg.DagsterInstance, eval_storage_id: int) -> RecordedVerdict | None:
    """The latest completed eval_gate evaluation, executed in a run of this instance, that targets the
    eval_scores materialization ``eval_storage_id``; None if there is none (= not passed).

    Evaluations reported without a run (``report_runless_asset_event``) are ignored: anyone with the
    instance can report one, only the check's own code runs the gate."""
    from dagster._core.storage.asset_check_execution_record import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES

    cursor = None
    for _ in range(50):   # newest first; a materialization's verdicts come soon after it
        page = instance.event_log_storage.get_asset_check_execution_history(
            EVAL_GATE, limit=100, cursor=cursor, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
        for rec in page:
            ev = rec.evaluation
            target = ev.target_materialization_data if ev is not None else None
            if target is None or target.storage_id != eval_storage_id:
                continue
            if not rec.run_id or instance.get_run_by_id(rec.run_id) is None:
                continue
            return RecordedVerdict(bool(ev.passed), rec.run_id, rec.id, target.storage_id, target.run_id)
        if len(page) < 100:
            return None
        cursor = page[-1].id
    return None


def deliver_and_log(context, alert: Alert, alert_settings) -> None:
    """Send ``alert`` on every configured channel and log each delivery (a failed one as a warning)."""
    for d in deliver(alert, alert_settings):
        (context.log.info if d.ok else context.log.warning)(
            f"alert '{alert.title}' via {d.channel}: {'sent' if d.ok else 'FAILED'} ({d.detail})")
