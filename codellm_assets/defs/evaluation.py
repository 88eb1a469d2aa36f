"""Evaluation: the company benchmark (held-out files + hand-written tasks), and eval scores of the
challenger and of the champion (or the base) on the same tasks; the blocking gate is in checks.py."""


import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.evaluation import company_bench, evaluate, gate, review
from codellm_assets.core.evaluation.remote_generate import vllm_challenger
from codellm_assets.core.fsutil import atomic_write_bytes
from codellm_assets.core.training import registry
from codellm_assets.core.training.checkpoints import base_model_fingerprint
from codellm_assets.defs.shared import RETRAIN_CHAIN, markdown_table
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource
from codellm_assets.settings import Settings


def _tasks_path(settings: Settings) -> Path:
    return settings.data_dir / "company_benchmark" / "tasks.jsonl"


def load_tasks(path: str | Path) -> list[company_bench.BenchTask]:
    return [company_bench.BenchTask(**json.loads(line)) for line in Path(path).read_text().splitlines() if line]


@dg.asset(op_tags=k8s_tags_for("company_benchmark"), automation_condition=RETRAIN_CHAIN, group_name="evaluation",
          description="Function-body completion tasks mined with `ast` from the held-out split (files never "
                      "trained on) plus the hand-written tasks named in settings.")
def company_benchmark(context: dg.AssetExecutionContext, settings: SettingsResource,
                      training_dataset: dict) -> dg.Output[dict]:
    s = settings.get()
    holdout = pl.read_parquet(training_dataset["holdout_path"])
    mined = company_bench.mine_tasks(holdout.iter_rows(named=True), max_tasks=s.eval.company_max_tasks)
    handwritten = []
    if s.eval.company_tasks_file:
        path = s.resolve(s.eval.company_tasks_file)
        if not path.exists():
            raise dg.Failure(f"eval.company_tasks_file {path} does not exist: fix the path in codellm.yaml "
                             f"or set it to null")
        handwritten = company_bench.load_handwritten_tasks(path)
    tasks = mined + handwritten
    out = _tasks_path(s)
    atomic_write_bytes(out, "".join(json.dumps(t.to_json()) + "\n" for t in tasks).encode())
    with_tests = sum(1 for t in tasks if t.test_cases)
    context.log.info(f"{len(mined)} mined + {len(handwritten)} hand-written tasks ({with_tests} with tests)")
    return dg.Output({"tasks_path": str(out), "tasks": len(tasks)}, metadata={
        "tasks": len(tasks), "mined": len(mined), "handwritten": len(handwritten), "with_tests": with_tests,
        "holdout_files": len(holdout), "examples": dg.MetadataValue.json([t.task_id for t in tasks[:10]])})


@dataclass
class Reference:
    """What the challenger is compared with: the champion (its own base, adapter and tokenizer) or the base."""

    label: str
    identity: dict
    base_dir: str | None
    adapter_dir: str | None = None
    error: str | None = None   # why it cannot be scored: the gate then fails closed with this reason


def reference_for(s: Settings, lora_adapter: dict) -> Reference:
    info = registry.get_alias(s.mlflow_tracking_uri, s.registry.model_name, "champion")
    if info is None:
        base = lora_adapter["base_model_dir"]
        return Reference("base", {"kind": "base", "base_fingerprint": base_model_fingerprint(base)}, base)
    tags = info.tags or {}
    label = f"champion v{info.version}"
    identity = {"kind": "champion", "version": f"{info.name}/{info.version}",
                "adapter_sha256": tags.get("codellm.adapter_sha256"),
                "base_fingerprint": tags.get("codellm.base_fingerprint")}
    base = tags.get("codellm.base_model", "")
    if not (Path(base) / "config.json").is_file() or base_model_fingerprint(base) != identity["base_fingerprint"]:
        return Reference(label, identity, None, error=f"{label}'s base model {base or '(untagged)'} is gone or "
                         "changed: it cannot be re-scored on these tasks; rebuild that base or promote another")
    adapter = registry.download_adapter(s.mlflow_tracking_uri, info.name, info.version,
                                        s.models_dir / "adapters" / f"{info.name}-v{info.version}")
    try:
        sha = registry.validate_adapter(adapter, base).sha256
    except registry.AdapterValidationError as e:
        sha = f"invalid ({e})"
    if sha != identity["adapter_sha256"]:
        return Reference(label, identity, None, error=f"{label}'s downloaded adapter ({sha}) is not the one it "
                         "was registered with (codellm.adapter_sha256): fix the registry's artifacts")
    return Reference(label, identity, base, str(adapter))


def reference_scores(context, s: Settings, ref: Reference, bench: str, common: dict) -> tuple[dict, bool]:
    """(paired record, from cache) of the reference on THIS run's tasks; cached by reference identity +
    benchmark hash (a champion is scored once per benchmark, not on every retrain)."""
    from codellm_assets.core.training.inference import load_for_inference

    if ref.error:
        return {"metrics": {}, "error": ref.error}, False
    key = hashlib.sha256(json.dumps({**ref.identity, "benchmark": bench}, sort_keys=True).encode()).hexdigest()[:32]
    cache = s.data_dir / "eval_cache" / f"{key}.json"
    if cache.is_file():
        context.log.info(f"{ref.label}: scores on benchmark {bench} from cache {cache}")
        return json.loads(cache.read_text()), True
    model, tok = load_for_inference(ref.base_dir, ref.adapter_dir)
    record = evaluate.paired_record(evaluate.evaluate_model(model, tok, label=ref.label, **common))
    atomic_write_bytes(cache, json.dumps(record, default=str).encode())
    return record, False


def _adapter_sha(lora_adapter: dict) -> str:
    try:
        return registry.validate_adapter(lora_adapter["adapter_dir"], lora_adapter["base_model_dir"]).sha256
    except registry.AdapterValidationError as e:
        raise dg.Failure(description=f"lora_adapter cannot be evaluated: {e}") from e


@dg.asset(op_tags=k8s_tags_for("eval_scores"), automation_condition=RETRAIN_CHAIN, group_name="evaluation",
          description="HumanEval pass@k (sandboxed), company benchmark, syntax-error / lint rates and held-out "
                      "likelihood of the challenger AND of the champion (or the base) on the same tasks, with "
                      "the per-task results the eval_gate check pairs. Data version: the scores' fingerprint.")
def eval_scores(context: dg.AssetExecutionContext, settings: SettingsResource, lora_adapter: dict,
                company_benchmark: dict, training_dataset: dict) -> dg.Output[dict]:
    from codellm_assets.core.training.inference import load_for_inference

    s = settings.get()
    tasks = load_tasks(company_benchmark["tasks_path"])
    holdout = pl.read_parquet(training_dataset["holdout_path"])["content"].to_list()
    common = dict(settings=s.eval, company_tasks=tasks, holdout_texts=holdout, log=context.log.info)
    bench = evaluate.benchmark_hash(s.eval, tasks, holdout)
    adapter_sha = _adapter_sha(lora_adapter)
    model, tok = load_for_inference(lora_adapter["base_model_dir"], lora_adapter["adapter_dir"])
    # serving on vLLM: HumanEval / company generation as batched requests to it (the weights still give the
    # held-out perplexity); None when vLLM is absent or serves another base -> transformers generate.
    remote = vllm_challenger(s.serving.vllm_url, lora_adapter["base_model_dir"], lora_adapter["adapter_dir"],
                             log=context.log.info) if s.serving.backend == "vllm" else None
    try:
        challenger = evaluate.evaluate_model(model, tok, label="challenger",
                                             generate=remote.generate if remote else None, **common)
    finally:
        if remote is not None:
            remote.close()
    del model
    if _adapter_sha(lora_adapter) != adapter_sha:
        raise dg.Failure(description="lora_adapter changed while it was being evaluated: re-run eval_scores")
    ref = reference_for(s, lora_adapter)
    ref_record, cached = reference_scores(context, s, ref, bench, common)
    ref_metrics = ref_record.get("metrics", {})
    out_dir = s.data_dir / "eval_scores"
    atomic_write_bytes(out_dir / "humaneval_results.jsonl",
                       "".join(json.dumps(r) + "\n" for r in challenger.humaneval_results).encode())
    atomic_write_bytes(out_dir / "company_results.jsonl",
                       "".join(json.dumps(r) + "\n" for r in challenger.company_results).encode())
    reviews = review.ReviewQueue(s.store_url).aggregate()
    value = gate.seal({
        "challenger": challenger.metrics, "reference_label": ref.label, "reference": ref_metrics,
        "reference_identity": ref.identity, "reference_error": ref.error, "benchmark_hash": bench,
        "paired": {"challenger": evaluate.paired_record(challenger), "reference": ref_record},
        "adapter_dir": lora_adapter["adapter_dir"], "base_model_dir": lora_adapter["base_model_dir"],
        "adapter_sha256": adapter_sha, "mlflow_run_id": lora_adapter.get("mlflow_run_id"),
        "isolation": challenger.isolation, "results_dir": str(out_dir), "human_review": reviews}, context.run_id)
    table = [{"metric": k, "challenger": challenger.metrics.get(k), ref.label: ref_metrics.get(k)}
             for k in challenger.metrics]
    return dg.Output(value, data_version=dg.DataVersion(value["fingerprint"]), metadata={
        **{k: round(float(v), 4) for k, v in challenger.metrics.items() if isinstance(v, (int, float))},
        "reference": ref.label, "reference_cached": cached, "reference_error": str(ref.error or ""),
        "benchmark_hash": bench, "adapter_sha256": adapter_sha,
        "side_by_side": dg.MetadataValue.md(markdown_table(table, ["metric", "challenger", ref.label])),
        "sandbox_isolation": challenger.isolation, "eval_seconds": round(challenger.seconds, 1),
        "human_review": dg.MetadataValue.json(reviews),
    })
