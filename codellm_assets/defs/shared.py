"""What several defs modules share: partitions, frame schemas, tags, the automation policy, metadata helpers.

defs modules import from here (and from core, resources, settings), never from each other.
"""

import dagster as dg
import polars as pl

from codellm_assets.core.data import decontam
from codellm_assets.settings import Settings

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
