"""Training: the cached base model, the LoRA adapter (tracked in MLflow), the registered model version."""


import json
from pathlib import Path

import dagster as dg
from dagster_mlflow.resources import MlFlow

from codellm_assets.core.evaluation import gate
from codellm_assets.core.training import registry
from codellm_assets.core.training.base_model import get_preset, resolve_base_model
from codellm_assets.defs.shared import (
    EVAL_METRICS_TAG,
    RETRAIN_CHAIN,
    consumed_eval_scores,
    markdown_table,
    recorded_gate_verdict,
)
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource
from codellm_assets.settings import Settings


def make_mlflow_resource(settings: Settings) -> dg.ResourceDefinition:
    """dagster-mlflow's tracking resource, after making sure the experiment keeps its artifacts under
    the configured root (MLflow's default would be ./mlruns in whatever directory the run started)."""
    from dagster_mlflow import mlflow_tracking

    @dg.resource(config_schema=mlflow_tracking.config_schema,
                 description="MLflow tracking (dagster-mlflow) with an explicit artifact root")
    def codellm_mlflow(init_context):
        cfg = init_context.resource_config
        registry.ensure_experiment(cfg["mlflow_tracking_uri"], cfg["experiment_name"],
                                   str(settings.mlflow_artifact_root))
        return MlFlow(init_context)

    return codellm_mlflow.configured({"experiment_name": settings.registry.experiment,
                                      "mlflow_tracking_uri": settings.mlflow_tracking_uri})


@dg.asset(op_tags=k8s_tags_for("base_model"), automation_condition=RETRAIN_CHAIN, group_name="training",
          description="The configured base model: `tiny` is a Llama-architecture model built from a config "
                      "on the dataset's tokenizer and briefly pre-trained on the corpus (cached: rebuilt only "
                      "when its settings or tokenizer change); real presets resolve to a local path.")
def base_model(context: dg.AssetExecutionContext, settings: SettingsResource,
               training_dataset: dict) -> dg.Output[dict]:
    s = settings.get()
    path = resolve_base_model(s.model, tokenizer_dir=Path(training_dataset["tokenizer_dir"]),
                              dataset_dir=Path(training_dataset["dataset_dir"]), cache_dir=s.models_dir / "base",
                              base_dir=s.base_dir, seed=s.training.seed, threads=s.training.threads or 2)
    info_file = path / "base_info.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    losses = info.get("losses") or []
    context.log.info(f"base model at {path}: " + ", ".join(f"{k} {v}" for k, v in info.items() if k != "losses"))
    every = max(1, len(losses) // 50)   # the pre-training loss curve, ~50 points
    curve = {"pretrain_loss_curve": dg.MetadataValue.json([[i + 1, losses[i]] for i in range(0, len(losses), every)])
             } if losses else {}
    return dg.Output({"path": str(path), "preset": s.model.preset, "info": info}, metadata={
        "path": dg.MetadataValue.path(str(path)), "preset": s.model.preset, **curve,
        **{k: v for k, v in info.items() if isinstance(v, (int, float, str)) and k != "path"}})


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def champion_adapter_dir(s: Settings) -> Path | None:
    info = registry.get_alias(s.mlflow_tracking_uri, s.registry.model_name, "champion")
    if info is None:
        return None
    return registry.download_adapter(s.mlflow_tracking_uri, s.registry.model_name, str(info.version),
                                     s.models_dir / "adapters" / f"{s.registry.model_name}-v{info.version}")


def lora_adapter_asset(gpus: int = 1) -> dg.AssetsDefinition:
    """``lora_adapter`` whose Kubernetes step pod holds ``gpus`` GPUs (build_defs passes
    ``training.distributed.nproc_per_node``: torchrun starts that many ranks in the pod)."""
    return dg.asset(
        name="lora_adapter", op_tags=k8s_tags_for("lora_adapter", gpus=gpus), automation_condition=RETRAIN_CHAIN,
        group_name="training",
        description="A peft LoRA adapter (QLoRA on GPUs) trained on the dataset; resumable from checkpoints; "
                    "incremental from the champion when asked. Loss curve, validation loss of adapter and "
                    "base, tokens/s and the MLflow run in metadata.")(_train_lora_adapter)


def _train_lora_adapter(context: dg.AssetExecutionContext, settings: SettingsResource,
                        mlflow: dg.ResourceParam[MlFlow], base_model: dict, training_dataset: dict) -> dg.Output[dict]:
    # torch comes with these: imported when a step trains, not whenever the definitions load (~2 s)
    from codellm_assets.core.training import distributed
    from codellm_assets.core.training.lora import TrainingError, train_lora

    s = settings.get()
    preset = get_preset(s.model.preset)
    incremental = s.training.from_champion or context.run.tags.get("codellm/incremental") == "true"
    init = champion_adapter_dir(s) if incremental else None
    out_dir = s.models_dir / "lora_adapter"
    context.log.info(f"training LoRA on {base_model['path']} ({'from champion ' + str(init) if init else 'fresh'})")

    def on_log(record: dict) -> None:
        context.log.info(json.dumps(record))
        if "loss" in record and "step" in record:
            mlflow.log_metric("train_loss", record["loss"], step=record["step"])
        if "eval_loss" in record:
            mlflow.log_metric("val_loss", record["eval_loss"], step=record["step"])

    try:
        kwargs = dict(base_model_dir=base_model["path"], dataset_dir=training_dataset["dataset_dir"],
                      out_dir=out_dir, training=s.training, target_modules=list(preset.lora_target_modules),
                      r=preset.lora_r, alpha=preset.lora_alpha,
                      init_adapter_dir=str(init) if init else None, on_log=on_log)
        if s.training.distributed.world_size > 1:  # torchrun subprocess; rank 0's result is read back
            context.log.info(f"distributed training: {s.training.distributed.model_dump(mode='json')}")
            result = distributed.launch(**kwargs)
        else:
            result = train_lora(**kwargs)
    except (TrainingError, distributed.DistributedTrainingError) as e:
        raise dg.Failure(description=str(e)) from e
    run_id = registry.log_training_run(
        result, params={**s.training.model_dump(mode="json"), "preset": s.model.preset,
                        "base_model": base_model["path"], "incremental": bool(init)},
        tags={"dataset_manifest_hash": training_dataset["manifest_hash"], "dagster_run_id": context.run_id,
              **{f"commit.{k}": v for k, v in training_dataset["commits"].items()}},
        artifacts_dirs={"adapter": result.adapter_dir, "tokenizer": training_dataset["tokenizer_dir"]})
    mlflow.end_run()  # under dg.materialize no hook ends it
    exp = mlflow.get_experiment_by_name(s.registry.experiment)
    url = registry.mlflow_ui_url(s.registry.ui_url, exp.experiment_id if exp else "0", run_id)
    value = {"adapter_dir": result.adapter_dir, "base_model_dir": base_model["path"], "mlflow_run_id": run_id,
             "val_loss_adapter": result.val_loss_adapter, "val_loss_base": result.val_loss_base,
             "manifest_hash": training_dataset["manifest_hash"], "commits": training_dataset["commits"],
             "tokenizer_dir": training_dataset["tokenizer_dir"],
             "incremental_from": str(init) if init else None}
    return dg.Output(value, metadata={
        "val_loss_adapter": _round(result.val_loss_adapter), "val_loss_base": _round(result.val_loss_base),
        "adapter_beats_base": result.beats_base, "steps": result.steps, "resumed_from_step": result.resumed_from_step,
        "tokens_per_s": round(result.tokens_per_s, 1), "train_tokens": result.train_tokens,
        "trainable_params": result.trainable_params, "total_params": result.total_params,
        "adapter_bytes": result.adapter_bytes, "precision": result.precision, "qlora": result.qlora,
        "world_size": s.training.distributed.world_size, "strategy": s.training.distributed.strategy,
        "loss_curve": dg.MetadataValue.md(markdown_table([{"step": st, "loss": loss} for st, loss in result.loss_curve],
                                                             ["step", "loss"])),
        "mlflow_run": dg.MetadataValue.url(url), "mlflow_run_id": run_id,
        "incremental_from_champion": bool(init)})


lora_adapter = lora_adapter_asset()


def _refuse(reason: str, **metadata) -> dg.Failure:
    return dg.Failure(description=f"not registered, no version created: {reason}",
                      metadata={k: str(v) for k, v in metadata.items()})


def passed_gate(context: dg.AssetExecutionContext, s: Settings, eval_scores: dict,
                adapter_sha256: str) -> registry.GateRecord:
    """The passed eval gate of the exact eval_scores materialization this step consumes, or a Failure.

    Passed means: the stored value is that materialization's (run id, data version, fingerprint); the
    instance holds an eval_gate evaluation from a run that targets it and passed; the verdict re-derived
    from the stored per-task results under the current settings passes too; and it evaluated this adapter."""
    consumed = consumed_eval_scores(context)
    if consumed is None:
        raise _refuse("eval_scores has no materialization to read a gate verdict for")
    storage_id, run_id, data_version = consumed
    where = dict(eval_storage_id=storage_id, eval_run_id=run_id or "(no run)")
    problems = gate.identity_problems(eval_scores, run_id=run_id, data_version=data_version)
    if problems:
        raise _refuse("; ".join(problems), **where)
    recorded = recorded_gate_verdict(context.instance, storage_id)
    if recorded is None:
        raise _refuse(f"no eval_gate verdict for eval_scores materialization {storage_id} (run {run_id}): a missing "
                      "verdict is not a pass; run the eval_gate check on it (materialize eval_scores with its checks)",
                      **where)
    verdict = gate.decide_scores(eval_scores, s.eval)
    failed = [f"{r['metric']}: {r.get('note')}" for r in verdict.rows if r["ok"] is False]
    if not recorded.passed:
        raise _refuse(f"eval_gate FAILED for eval_scores materialization {storage_id} (run {run_id}, check run "
                      f"{recorded.check_run_id}): {'; '.join(failed) or 'see the check'}", **where)
    if not verdict.passed:
        raise _refuse(f"the verdict re-derived from the stored per-task results fails under the current settings "
                      f"({'; '.join(failed)}): re-run the eval_gate check", **where)
    if eval_scores.get("adapter_sha256") != adapter_sha256:
        raise _refuse(f"eval_scores evaluated adapter {str(eval_scores.get('adapter_sha256'))[:12]}, lora_adapter "
                      f"now holds {adapter_sha256[:12]}: evaluate this adapter first", **where)
    return registry.GateRecord(
        verdict="passed", eval_run_id=run_id, eval_storage_id=storage_id, eval_data_version=str(data_version),
        check_run_id=recorded.check_run_id, check_execution_id=recorded.check_execution_id,
        adapter_sha256=adapter_sha256, summary=json.dumps(verdict.summary(), default=str))


@dg.asset(op_tags=k8s_tags_for("registered_model"), automation_condition=RETRAIN_CHAIN, group_name="training",
          description="The adapter registered as a new MLflow model version (with its base, dataset and the passed "
                      "eval gate it was registered under), alias `challenger`. Refused, no version created, unless "
                      "eval_gate passed for the exact eval_scores materialization consumed, on this adapter.")
def registered_model(context: dg.AssetExecutionContext, settings: SettingsResource, lora_adapter: dict,
                     eval_scores: dict) -> dg.Output[dict]:
    s = settings.get()
    try:
        adapter = registry.validate_adapter(lora_adapter["adapter_dir"], lora_adapter["base_model_dir"])
    except registry.AdapterValidationError as e:
        raise dg.Failure(description=f"adapter refused, no version created: {e}") from e
    gate_record = passed_gate(context, s, eval_scores, adapter.sha256)
    manifest = {"manifest_hash": lora_adapter["manifest_hash"], "commits": lora_adapter["commits"]}
    try:
        info = registry.register_adapter(
            tracking_uri=s.mlflow_tracking_uri, model_name=s.registry.model_name,
            adapter_dir=lora_adapter["adapter_dir"], base_model_dir=lora_adapter["base_model_dir"],
            run_id=lora_adapter["mlflow_run_id"], dataset_manifest=manifest, alias="challenger",
            tokenizer_dir=lora_adapter.get("tokenizer_dir"), lock_url=s.registry.lock_url, gate=gate_record,
            extra_tags={EVAL_METRICS_TAG: json.dumps(eval_scores["challenger"]),
                        "eval.reference": eval_scores["reference_label"]})
    except registry.AdapterValidationError as e:
        raise dg.Failure(description=f"adapter refused, no version created: {e}") from e
    context.log.info(f"registered {info.name} v{info.version} as challenger (gate passed on eval_scores "
                     f"{gate_record.eval_storage_id}, run {gate_record.eval_run_id})")
    return dg.Output({"name": info.name, "version": str(info.version), "run_id": info.run_id,
                      "base_model_dir": lora_adapter["base_model_dir"], "adapter_dir": lora_adapter["adapter_dir"]},
                     metadata={"model": info.name, "version": str(info.version),
                               "aliases": dg.MetadataValue.json(list(info.aliases)),
                               "source": str(info.source), "mlflow_run_id": info.run_id,
                               "gate_eval_run_id": gate_record.eval_run_id,
                               "gate_eval_storage_id": gate_record.eval_storage_id,
                               "gate_check_run_id": gate_record.check_run_id})
