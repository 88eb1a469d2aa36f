"""What several defs modules share: partitions, frame schemas, tags, the automation policy, metadata helpers.

defs modules import from here (and from core, resources, settings), never from each other.
"""

from dataclasses import dataclass

import dagster as dg
import polars as pl

# training_dataset -> base_model -> lora_adapter -> company_benchmark -> eval_scores -> registered_model ->
# deployed_endpoint follow their parents: a new feedback_dataset (itself eager on feedback volume) flows all the
# way to a canary, gated by the blocking eval check. deduped_corpus is NOT eager: a commit to a repo refreshes
# the corpus only when someone (or a schedule) materializes it, not a retrain per push.
RETRAIN_CHAIN = dg.AutomationCondition.eager()

repos_partitions = dg.DynamicPartitionsDefinition(name="repos")

SNAPSHOT_SCHEMA = {
    "repo": pl.String, "branch": pl.String, "commit": pl.String, "path": pl.String, "language": pl.String,
    "bytes": pl.Int64, "content": pl.String, "blob_sha": pl.String,
}
CORPUS_SCHEMA = {**SNAPSHOT_SCHEMA, "redactions": pl.Int64}

FEEDBACK_REPO = "ide-feedback"      # the pseudo-repo name feedback examples carry in the corpus

EVAL_METRICS_TAG = "eval.metrics"   # set on each registered version (defs/training.py)


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


def markdown_table(rows: list[dict], cols: list[str]) -> str:
    """A markdown table for the UI's metadata panel (floats to 4 places, None as a dash)."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


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
