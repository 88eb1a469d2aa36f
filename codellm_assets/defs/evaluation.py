"""Evaluation: the company benchmark (held-out files + hand-written tasks), eval scores of the
challenger vs the champion (or the base), and the blocking gate."""


import json
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.evaluation import company_bench, evaluate, review
from codellm_assets.core.evaluation.remote_generate import OpenAICompletions, vllm_challenger
from codellm_assets.core.fsutil import atomic_write_bytes
from codellm_assets.core.serving.client import gateway_serves
from codellm_assets.core.training import registry
from codellm_assets.defs.shared import EVAL_METRICS_TAG, RETRAIN_CHAIN, markdown_table
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import GatewayResource, MetricsStoreResource, SettingsResource
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


def champion_reference(s: Settings) -> tuple[str, str, dict] | None:
    """(label, served version name, metrics recorded at its registration) of the champion, if any."""
    info = registry.get_alias(s.mlflow_tracking_uri, s.registry.model_name, "champion")
    if info is None:
        return None
    raw = (info.tags or {}).get(EVAL_METRICS_TAG)
    return f"champion v{info.version}", f"{info.name}/{info.version}", json.loads(raw) if raw else {}


def eval_api_key(s: Settings, store_resource: MetricsStoreResource) -> str:
    """The evaluation's own gateway key (team `codellm-eval`), created once and kept under home (0600)."""
    path = s.home_dir / "eval.key"
    if path.exists():
        return path.read_text().strip()
    with store_resource.open() as store:
        key = store.create_api_key("codellm-eval")
    atomic_write_bytes(path, key.encode())
    path.chmod(0o600)
    return key


def _reference_scores(context, s: Settings, gateway: GatewayResource, store: MetricsStoreResource,
                      lora_adapter: dict, common: dict) -> tuple[str, dict]:
    """Champion through the live gateway when it serves it; else its recorded scores; else the base model."""
    from codellm_assets.core.training.inference import load_for_inference

    champion = champion_reference(s)
    if champion is not None:
        label, version, recorded = champion
        live, detail = gateway_serves(gateway.base_url(), version, timeout_s=2)
        if s.eval.reference_via_gateway and live:
            remote = OpenAICompletions(gateway.base_url(), version, api_key=eval_api_key(s, store))
            try:
                scores = evaluate.evaluate_model(None, None, label=label, generate=remote.generate, **common)
            finally:
                remote.close()
            # Perplexity needs the weights: the value measured when the champion was registered.
            scores.metrics["holdout_perplexity"] = recorded.get("holdout_perplexity")
            return f"{label} (via gateway)", scores.metrics
        context.log.info(f"champion {version} not scored live (gateway: {detail}); using its recorded scores")
        if recorded:
            return label, recorded
    base, base_tok = load_for_inference(lora_adapter["base_model_dir"])
    return "base", evaluate.evaluate_model(base, base_tok, label="base", **common).metrics


@dg.asset(op_tags=k8s_tags_for("eval_scores"), automation_condition=RETRAIN_CHAIN, group_name="evaluation",
          description="HumanEval pass@k (sandboxed), company benchmark, syntax-error / lint rates and held-out "
                      "perplexity of the challenger, side by side with the champion (or the base model).")
def eval_scores(context: dg.AssetExecutionContext, settings: SettingsResource, gateway: GatewayResource,
                metrics_store: MetricsStoreResource, lora_adapter: dict, company_benchmark: dict,
                training_dataset: dict) -> dg.Output[dict]:
    from codellm_assets.core.training.inference import load_for_inference

    s = settings.get()
    tasks = load_tasks(company_benchmark["tasks_path"])
    holdout = pl.read_parquet(training_dataset["holdout_path"])["content"].to_list()
    common = dict(settings=s.eval, company_tasks=tasks, holdout_texts=holdout, log=context.log.info)
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
    ref_label, ref_metrics = _reference_scores(context, s, gateway, metrics_store, lora_adapter, common)
    out_dir = s.data_dir / "eval_scores"
    atomic_write_bytes(out_dir / "humaneval_results.jsonl",
                       "".join(json.dumps(r) + "\n" for r in challenger.humaneval_results).encode())
    atomic_write_bytes(out_dir / "company_results.jsonl",
                       "".join(json.dumps(r) + "\n" for r in challenger.company_results).encode())
    reviews = review.ReviewQueue(s.store_url).aggregate()
    value = {"challenger": challenger.metrics, "reference_label": ref_label, "reference": ref_metrics,
             "adapter_dir": lora_adapter["adapter_dir"], "base_model_dir": lora_adapter["base_model_dir"],
             "mlflow_run_id": lora_adapter.get("mlflow_run_id"), "isolation": challenger.isolation,
             "results_dir": str(out_dir), "human_review": reviews}
    table = [{"metric": k, "challenger": challenger.metrics.get(k), ref_label: ref_metrics.get(k)}
             for k in challenger.metrics]
    return dg.Output(value, metadata={
        **{k: round(float(v), 4) for k, v in challenger.metrics.items() if isinstance(v, (int, float))},
        "reference": ref_label,
        "side_by_side": dg.MetadataValue.md(markdown_table(table, ["metric", "challenger", ref_label])),
        "sandbox_isolation": challenger.isolation, "eval_seconds": round(challenger.seconds, 1),
        "human_review": dg.MetadataValue.json(reviews),
    })
