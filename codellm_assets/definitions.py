"""The one Dagster code location: every asset, check, sensor, job and resource of codellm."""

from __future__ import annotations

import os

import dagster as dg

from codellm_assets.defs import checks, corpus, ingest
from codellm_assets.resources import (CodellmIOManager, GatewayResource, MetricsStoreResource,
                                      SettingsResource)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

settings_resource = SettingsResource(config_path=os.environ.get("CODELLM_CONFIG", ""))

defs = dg.Definitions(
    assets=[ingest.git_heads, ingest.repo_snapshots, corpus.clean_files, corpus.scrubbed_corpus,
            corpus.deduped_corpus],
    asset_checks=[checks.repo_snapshots_schema, checks.clean_files_in_range, checks.no_leftover_secrets,
                  checks.deduped_corpus_sane],
    sensors=[ingest.git_heads_sensor],
    resources={
        "settings": settings_resource,
        "io_manager": CodellmIOManager(settings=settings_resource),
        "metrics_store": MetricsStoreResource(settings=settings_resource),
        "gateway": GatewayResource(settings=settings_resource),
    },
)
