"""Evaluation: the company benchmark (FIM tasks from held-out files + hand-written tasks with tests), and eval
scores of the challenger, of the base and of the champion (when there is one) on the same tasks; the blocking
gate is in checks.py."""


import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data.corpus_dedup import seen_in
from codellm_assets.core.data.tokenization import normalized_content_hash
from codellm_assets.core.evaluation import company_bench, company_fim, evaluate, gate, review
from codellm_assets.core.evaluation.remote_generate import vllm_challenger
from codellm_assets.core.fsutil import atomic_write_bytes
from codellm_assets.core.training import registry
from codellm_assets.core.training.base_model import get_preset, pretraining_texts
from codellm_assets.core.training.checkpoints import base_model_fingerprint
from codellm_assets.defs.shared import FEEDBACK_REPO, RETRAIN_CHAIN, markdown_table
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource
from codellm_assets.settings import Settings


def _bench_dir(settings: Settings) -> Path:
    return settings.data_dir / "company_benchmark"


def load_tasks(path: str | Path) -> list[company_bench.BenchTask]:
    return [company_bench.BenchTask(**json.loads(line)) for line in Path(path).read_text().splitlines() if line]


def _handwritten(s: Settings) -> list[company_bench.BenchTask]:
    if not s.eval.company_tasks_file:
        return []
    path = s.resolve(s.eval.company_tasks_file)
    if not path.exists():
        raise dg.Failure(f"eval.company_tasks_file {path} does not exist: fix the path in codellm.yaml "
                         f"or set it to null")
    return company_bench.load_handwritten_tasks(path)


def _split_files(training_dataset: dict, deduped_corpus: pl.DataFrame, feedback_dataset: pl.DataFrame | None
                 ) -> tuple[list[dict], list[dict], list[dict]]:
    """(all corpus files, the held-out files, the files in train or validation): the last by the manifest's
    content hashes, so train copies of held-out files that training_dataset dropped are not among them; it
    holds the feedback examples trained on too."""
    manifest = json.loads((Path(training_dataset["dir"]) / "manifest.json").read_text())
    seen = set(manifest["split_file_hashes"]["train"]) | set(manifest["split_file_hashes"]["validation"])
    held = list(pl.read_parquet(training_dataset["holdout_path"]).iter_rows(named=True))
    corpus = list(deduped_corpus.iter_rows(named=True))
    known = [r for r in corpus if isinstance(r["content"], str) and normalized_content_hash(r["content"]) in seen]
    feedback = [] if feedback_dataset is None else [
        r for r in feedback_dataset.iter_rows(named=True)
        if isinstance(r["content"], str) and normalized_content_hash(r["content"]) in seen]
    return corpus, held, known + feedback


def _unseen_by_base(s: Settings, held: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """The held-out files minus those the base was pre-trained on (the tiny base's public packages: a sample
    repo built from one has them, scrubbed), and how many each repo lost: a task on a file the base has read
    measures its memory, not what fine-tuning taught."""
    seen = seen_in(held, pretraining_texts(s.model), s.dedup)
    kept = [f for i, f in enumerate(held) if i not in seen]
    return kept, dict(sorted(Counter(str(held[i]["repo"]) for i in seen).items()))


def build_repo_indexes(files: list[dict], file_cache: Path | None = None) -> dict:
    """The repository context of the 'with context' score: one BM25 index per repo over the files the model
    trained on (the code_index asset's, once eval reads it)."""
    return company_fim.build_indexes((f for f in files if f["repo"] != FEEDBACK_REPO), file_cache=file_cache)


@dg.asset(op_tags=k8s_tags_for("company_benchmark"), automation_condition=RETRAIN_CHAIN, group_name="evaluation",
          description="Fill-in-the-middle tasks (single line, multi-line, call arguments, condition, function "
                      "body; cross-file or in-file) mined with tree-sitter from the held-out files (the newest "
                      "commits, never trained on), minus tasks whose answer appears verbatim in training files, "
                      "drawn per stratum; the repository-context index; and the hand-written tasks with tests.")
def company_benchmark(context: dg.AssetExecutionContext, settings: SettingsResource, training_dataset: dict,
                      deduped_corpus: pl.DataFrame, feedback_dataset: pl.DataFrame) -> dg.Output[dict]:
    s = settings.get()
    corpus, held, trained = _split_files(training_dataset, deduped_corpus, feedback_dataset)
    held, seen_by_base = _unseen_by_base(s, held)
    tasks, account = company_fim.build_tasks(corpus, held, (f["content"] for f in trained),
                                             per_stratum=s.eval.company_per_stratum, seed=s.eval.company_seed,
                                             max_tasks=s.eval.company_max_tasks)
    handwritten = _handwritten(s)
    out = _bench_dir(s)
    atomic_write_bytes(out / "fim_tasks.jsonl", "".join(json.dumps(t.to_json()) + "\n" for t in tasks).encode())
    atomic_write_bytes(out / "tasks.jsonl", "".join(json.dumps(t.to_json()) + "\n" for t in handwritten).encode())
    indexes = build_repo_indexes(trained, s.blob_cache_dir)
    company_fim.save_indexes(indexes, out / "index")
    counts = company_fim.task_counts(tasks)
    with_tests = sum(1 for t in handwritten if t.test_cases)
    context.log.info(f"{len(tasks)} FIM tasks of {account['mined']} mined ({account['dropped_verbatim_in_training']} "
                     f"verbatim in training), {len(handwritten)} hand-written ({with_tests} with tests)")
    examples = [{"task_id": t.task_id, "kind": t.kind, "cross_file": t.cross_file, "at": f"{t.repo}:{t.path}:{t.line}",
                 "reference": t.reference[:120]} for t in tasks[:8]]
    value = {"fim_tasks_path": str(out / "fim_tasks.jsonl"), "tasks_path": str(out / "tasks.jsonl"),
             "index_dir": str(out / "index"), "fim_tasks": len(tasks), "tasks": len(handwritten)}
    return dg.Output(value, metadata={
        "fim_tasks": len(tasks), "fim_tasks_by_kind": dg.MetadataValue.json(counts["by_kind"]),
        "languages": dg.MetadataValue.json(counts["by_language"]), "mined": account["mined"],
        "checked_verbatim": account["checked_verbatim"],
        "dropped_verbatim_in_training": account["dropped_verbatim_in_training"],
        "dropped_verbatim_by_kind": dg.MetadataValue.json(account["dropped_verbatim_by_kind"]),
        "dropped_examples": dg.MetadataValue.json(account["dropped_examples"]),
        "holdout_files": len(held), "holdout_files_seen_by_base": dg.MetadataValue.json(seen_by_base),
        "examples": dg.MetadataValue.json(examples),
        "handwritten": len(handwritten), "with_tests": with_tests,
        "index_repos": dg.MetadataValue.json({r: len(i.chunks) for r, i in indexes.items()})})


@dataclass
class Reference:
    """What the challenger is compared with: the champion (its own base, adapter and tokenizer) or the base."""

    label: str
    identity: dict
    base_dir: str | None
    adapter_dir: str | None = None
    error: str | None = None   # why it cannot be scored: the gate then fails closed with this reason


def base_reference(lora_adapter: dict) -> Reference:
    base = lora_adapter["base_model_dir"]
    return Reference("base", {"kind": "base", "base_fingerprint": base_model_fingerprint(base)}, base)


def reference_for(s: Settings, lora_adapter: dict) -> Reference:
    info = registry.get_alias(s.mlflow_tracking_uri, s.registry.model_name, "champion")
    if info is None:
        return base_reference(lora_adapter)
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


def fim_bench(s: Settings, company_benchmark: dict) -> company_fim.FimBench:
    """The FIM tasks with the base model's FIM tokens (presets.yaml) and the prompt limits of the settings."""
    fim = get_preset(s.model.preset).fim
    return company_fim.FimBench(company_fim.load_tasks(company_benchmark["fim_tasks_path"]), fim=fim,
                                prefix_chars=s.eval.company_prefix_chars, suffix_chars=s.eval.company_suffix_chars,
                                context_chars=s.eval.company_context_chars,
                                max_new_tokens=s.eval.company_max_new_tokens, heal=s.serving.token_healing)


def repo_indexes(company_benchmark: dict) -> dict:
    """repo -> CodeIndex the challenger is scored with again (company_benchmark built them; see
    build_repo_indexes)."""
    return company_fim.load_indexes(company_benchmark["index_dir"])


def _write_results(out_dir: Path, **tables: list[dict]) -> None:
    for name, rows in tables.items():
        atomic_write_bytes(out_dir / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


@dg.asset(op_tags=k8s_tags_for("eval_scores"), automation_condition=RETRAIN_CHAIN, group_name="evaluation",
          description="HumanEval pass@k (sandboxed), the company benchmark (FIM tasks from held-out files: EM / "
                      "edit similarity per kind, base vs adapter, with and without repository context; plus "
                      "the hand-written tasks' sandboxed pass rate), syntax-error / lint rates and held-out "
                      "likelihood of the challenger AND of the champion (or the base) on the same tasks, with "
                      "the per-task results the eval_gate check pairs. Data version: the scores' fingerprint.")
def eval_scores(context: dg.AssetExecutionContext, settings: SettingsResource, lora_adapter: dict,
                company_benchmark: dict, training_dataset: dict) -> dg.Output[dict]:
    from codellm_assets.core.training.inference import load_for_inference

    s = settings.get()
    tasks = load_tasks(company_benchmark["tasks_path"])
    fim = fim_bench(s, company_benchmark)
    holdout = pl.read_parquet(training_dataset["holdout_path"])["content"].to_list()
    common = dict(settings=s.eval, company_tasks=tasks, holdout_texts=holdout, log=context.log.info, fim_bench=fim)
    bench = evaluate.benchmark_hash(s.eval, [*tasks, *fim.tasks], holdout, extra=fim.identity())
    adapter_sha = _adapter_sha(lora_adapter)
    model, tok = load_for_inference(lora_adapter["base_model_dir"], lora_adapter["adapter_dir"])
    # serving on vLLM: HumanEval / company generation as batched requests to it (the weights still give the
    # held-out perplexity); None when vLLM is absent or serves another base -> transformers generate.
    remote = vllm_challenger(s.serving.vllm_url, lora_adapter["base_model_dir"], lora_adapter["adapter_dir"],
                             log=context.log.info) if s.serving.backend == "vllm" else None
    try:
        challenger = evaluate.evaluate_model(model, tok, label="challenger", indexes=repo_indexes(company_benchmark),
                                             generate=remote.generate if remote else None, **common)
    finally:
        if remote is not None:
            remote.close()
    del model
    if _adapter_sha(lora_adapter) != adapter_sha:
        raise dg.Failure(description="lora_adapter changed while it was being evaluated: re-run eval_scores")
    ref = reference_for(s, lora_adapter)
    ref_record, cached = reference_scores(context, s, ref, bench, common)
    base = base_reference(lora_adapter)   # base vs adapter on the same tasks, whatever the gate compares with
    base_record, base_cached = (ref_record, cached) if ref.identity == base.identity else \
        reference_scores(context, s, base, bench, common)
    ref_metrics = ref_record.get("metrics", {})
    out_dir = s.data_dir / "eval_scores"
    _write_results(out_dir, humaneval_results=challenger.humaneval_results, company_results=challenger.company_results,
                   fim_results=challenger.fim_results, fim_context_results=challenger.fim_context_results)
    company = company_report(fim.tasks, base_record.get("company") or [], challenger)
    reviews = review.ReviewQueue(s.store_url).aggregate()
    value = gate.seal({
        "challenger": challenger.metrics, "reference_label": ref.label, "reference": ref_metrics,
        "reference_identity": ref.identity, "reference_error": ref.error, "benchmark_hash": bench,
        "paired": {"challenger": evaluate.paired_record(challenger), "reference": ref_record},
        "company": {k: v for k, v in company.items() if k not in ("company_table", "company_chart")},
        "adapter_dir": lora_adapter["adapter_dir"], "base_model_dir": lora_adapter["base_model_dir"],
        "adapter_sha256": adapter_sha, "mlflow_run_id": lora_adapter.get("mlflow_run_id"),
        "isolation": challenger.isolation, "results_dir": str(out_dir), "human_review": reviews}, context.run_id)
    table = [{"metric": k, "challenger": challenger.metrics.get(k), ref.label: ref_metrics.get(k)}
             for k in challenger.metrics]
    return dg.Output(value, data_version=dg.DataVersion(value["fingerprint"]), metadata={
        **{k: round(float(v), 4) for k, v in challenger.metrics.items() if isinstance(v, (int, float))},
        **company_metadata(company), "base_cached": base_cached,
        "reference": ref.label, "reference_cached": cached, "reference_error": str(ref.error or ""),
        "benchmark_hash": bench, "adapter_sha256": adapter_sha,
        "side_by_side": dg.MetadataValue.md(markdown_table(table, ["metric", "challenger", ref.label])),
        "sandbox_isolation": challenger.isolation, "eval_seconds": round(challenger.seconds, 1),
        "human_review": dg.MetadataValue.json(reviews),
    })


def company_report(tasks: list, base_rows: list[dict], challenger: evaluate.ModelScores) -> dict:
    """company_fim.report of base vs challenger (+ context); {} with a note when a side has no FIM rows."""
    if not tasks or not challenger.fim_results or len(base_rows) != len(challenger.fim_results):
        return {"company_note": f"no paired FIM scores ({len(tasks)} tasks, {len(challenger.fim_results)} "
                                f"challenger rows, {len(base_rows)} base rows): company_score fails the gate closed"}
    return company_fim.report(tasks, base_rows, challenger.fim_results, challenger.fim_context_results)


def company_metadata(company: dict) -> dict:
    """The company report as Dagster metadata: markdown for the tables, JSON for dicts and lists."""
    out = {}
    for k, v in company.items():
        if k in ("company_table", "company_chart"):
            out[k] = dg.MetadataValue.md(v)
        elif isinstance(v, (dict, list)):
            out[k] = dg.MetadataValue.json(v)
        elif v is None:
            out[k] = dg.MetadataValue.null()
        else:
            out[k] = v
    return out
