"""The one Dagster code location: every asset, check, sensor, job and resource of codellm."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dagster as dg

from codellm_assets.defs import checks, corpus, dataset, deployment, evaluation, ingest, monitoring, training
from codellm_assets.defs import code_index as code_index_defs
from codellm_assets.defs import packaging as packaging_defs
from codellm_assets.defs import sources as source_defs
from codellm_assets.k8s_tags import GPU_RUN_TAGS, dagster_executor
from codellm_assets.resources import CodellmIOManager, GatewayResource, MetricsStoreResource, SettingsResource
from codellm_assets.settings import load_settings

ALL_ASSETS = [
    ingest.git_heads, ingest.repo_snapshots, corpus.clean_files, corpus.scrubbed_corpus, corpus.deduped_corpus,
    dataset.training_dataset, training.base_model, training.lora_adapter, evaluation.company_benchmark,
    evaluation.eval_scores, training.registered_model, deployment.deployed_endpoint,
    monitoring.feedback_events, monitoring.feedback_dataset,
]
ALL_ASSETS.append(packaging_defs.packaged_model)
ALL_ASSETS += [source_defs.source_documents, source_defs.source_corpus]
ALL_ASSETS.append(code_index_defs.code_index)

full_job = dg.define_asset_job("codellm_full", selection=dg.AssetSelection.all() - dg.AssetSelection.assets(
    "repo_snapshots", "clean_files", "scrubbed_corpus", "source_documents", "source_corpus"),
    description="Everything downstream of the per-repo and per-source stages (those run per partition, by "
                "git_heads_sensor and sources_sensor).",
    tags=GPU_RUN_TAGS)


def build_defs(config_path: str | None = None) -> dg.Definitions:
    """The code location for a settings file (default: $CODELLM_CONFIG, else the project's codellm.yaml)."""
    config_path = config_path if config_path is not None else os.environ.get("CODELLM_CONFIG", "")
    settings_resource = SettingsResource(config_path=str(config_path))
    settings = load_settings(config_path or None)
    gpus = settings.training.distributed.nproc_per_node
    assets = [training.lora_adapter_asset(gpus) if a is training.lora_adapter and gpus != 1 else a
              for a in ALL_ASSETS]
    return dg.Definitions(
        assets=assets,
        asset_checks=[checks.repo_snapshots_schema, checks.clean_files_in_range, checks.no_leftover_secrets,
                      checks.source_no_leftover_secrets,
                      checks.deduped_corpus_sane, checks.no_split_overlap, checks.eval_gate,
                      packaging_defs.merged_matches_adapter],
        jobs=[full_job, monitoring.retrain_job, monitoring.store_retention_job],
        schedules=[monitoring.store_retention_schedule],
        sensors=[ingest.git_heads_sensor, source_defs.sources_sensor, deployment.canary_guard,
                 monitoring.quality_monitor,
                 monitoring.check_alert_sensor, monitoring.run_failure_alert, monitoring.automation_sensor,
                 monitoring.feedback_observer],
        # One process per run on a laptop (each extra process re-imports torch & co. for seconds);
        # k8s_job_executor (a pod per step) when CODELLM_DAGSTER_EXECUTOR=k8s.
        executor=dagster_executor() or dg.in_process_executor,
        resources={
            "settings": settings_resource,
            "io_manager": CodellmIOManager(settings=settings_resource),
            "metrics_store": MetricsStoreResource(settings=settings_resource),
            "gateway": GatewayResource(settings=settings_resource),
            "mlflow": training.make_mlflow_resource(settings),
        },
    )


defs = build_defs()
