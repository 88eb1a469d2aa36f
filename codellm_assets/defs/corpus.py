"""Stages 2–4: quality filters, secret/PII scrubbing (per repo), then cross-repo dedup + decontamination."""


from collections import Counter

import dagster as dg
import polars as pl

from codellm_assets.core.data import corpus_dedup, file_stages
from codellm_assets.defs.shared import (
    CORPUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    company_eval_items,
    frame_version,
    repos_partitions,
)
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource, asset_storage_path


@dg.asset(op_tags=k8s_tags_for("clean_files"), partitions_def=repos_partitions, group_name="data",
          description="Files that pass the quality rules; every dropped file is counted by reason.")
def clean_files(context: dg.AssetExecutionContext, settings: SettingsResource,
                repo_snapshots: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    result, stats = file_stages.clean_partition(list(repo_snapshots.iter_rows(named=True)), s.quality,
                                                s.blob_cache_dir, context.partition_key, s.data.workers)
    df = pl.DataFrame(result.kept, schema=SNAPSHOT_SCHEMA).with_columns(pl.col("content").str.len_bytes().cast(pl.Int64)
                                                           .alias("bytes"))
    context.log.info(f"kept {len(df)}/{len(repo_snapshots)} files; dropped {dict(result.dropped)}; "
                     f"{stats.reused} verdicts reused, {stats.computed} computed")
    return dg.Output(df, metadata={
        "files_in": len(repo_snapshots), "files_kept": len(df), "dagster/row_count": len(df),
        "bytes": int(df["bytes"].sum()) if len(df) else 0,
        "truncated": result.truncated,
        "dropped_by_reason": dg.MetadataValue.json(dict(sorted(result.dropped.items()))),
        "dropped_total": sum(result.dropped.values()),
        "cache": dg.MetadataValue.json({"clean": stats.to_json()}),
    })


@dg.asset(op_tags=k8s_tags_for("scrubbed_corpus"), partitions_def=repos_partitions, group_name="data",
          description="Files with secrets and PII replaced by typed placeholders (<SECRET:aws_access_key>, "
                      "<EMAIL>, <IP>, …); redaction counts by type.")
def scrubbed_corpus(context: dg.AssetExecutionContext, settings: SettingsResource,
                    clean_files: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    root, partition, workers = s.blob_cache_dir, context.partition_key, s.data.workers
    rows, totals, scrub_stats = file_stages.scrub_partition(list(clean_files.iter_rows(named=True)), s.scrub,
                                                            root, partition, workers)
    df = pl.DataFrame(rows, schema=CORPUS_SCHEMA)
    # signatures now, per partition (one pod per repo on Kubernetes): deduped_corpus then reads only them
    _, sig_stats = file_stages.signatures_partition(rows, s.dedup, root, partition, workers)
    files_touched = int((df["redactions"] > 0).sum()) if len(df) else 0
    context.log.info(f"redacted {sum(totals.values())} items in {files_touched} files: {totals}; "
                     f"{scrub_stats.reused} files reused, {scrub_stats.computed} scrubbed")
    return dg.Output(df, metadata={
        "files": len(df), "dagster/row_count": len(df), "files_with_redactions": files_touched,
        "redactions_total": sum(totals.values()),
        "redactions_by_type": dg.MetadataValue.json(dict(sorted(totals.items()))),
        "cache": dg.MetadataValue.json({"scrub": scrub_stats.to_json(), "signature": sig_stats.to_json()}),
    })


LEFTOVER_CHECK = dg.AssetCheckKey(dg.AssetKey("scrubbed_corpus"), "no_leftover_secrets")
SOURCE_LEFTOVER_CHECK = dg.AssetCheckKey(dg.AssetKey("source_corpus"), "no_leftover_secrets")


def _latest_materialization(instance: dg.DagsterInstance, partition: str, key: dg.AssetKey):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    return records[0] if records else None


def block_reason(instance: dg.DagsterInstance, partition: str, check: dg.AssetCheckKey = LEFTOVER_CHECK) -> str | None:
    """Why a partition's scrubbed files may not flow on, or None when its LATEST materialization passed the
    leftover check. Fails closed: no evaluation, a failed one, one that never finished (the check crashed, or
    its run died) and one of an older materialization all block."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as St

    history = instance.event_log_storage.get_asset_check_execution_history(
        check, limit=1, partition_filter=PartitionKeyFilter(key=partition))
    if not history:
        return "no no_leftover_secrets evaluation"
    record = history[0]
    evaluation = record.evaluation
    if record.status == St.PLANNED or evaluation is None:
        return "no_leftover_secrets did not finish (crashed or still running)"
    if record.status != St.SUCCEEDED or not evaluation.passed:
        leftovers = evaluation.metadata.get("leftovers")
        return f"no_leftover_secrets failed ({getattr(leftovers, 'value', '?')} leftovers)"
    latest = _latest_materialization(instance, partition, check.asset_key)
    target = evaluation.target_materialization_data
    if latest is None:
        return "no materialization"
    if target is not None:
        if target.storage_id != latest.storage_id:
            return "no_leftover_secrets evaluated an older materialization"
    elif record.create_timestamp < latest.timestamp:
        return "no_leftover_secrets is older than the latest materialization"
    return None


def blocked_partitions(instance: dg.DagsterInstance, partitions: list[str],
                       check: dg.AssetCheckKey = LEFTOVER_CHECK) -> dict[str, str]:
    """{partition: reason} for the partitions whose data must not flow on (see ``block_reason``)."""
    reasons = {p: block_reason(instance, p, check) for p in sorted(partitions)}
    return {p: r for p, r in reasons.items() if r is not None}


@dg.asset(op_tags=k8s_tags_for("deduped_corpus"), group_name="data",
          deps=[dg.AssetDep("scrubbed_corpus", partition_mapping=dg.AllPartitionMapping()),
                dg.AssetDep("source_corpus", partition_mapping=dg.AllPartitionMapping())],
          description="Exact + near-duplicate removal across repos (MinHash LSH over the cached per-file "
                      "signatures; texts read only to verify candidate pairs), decontaminated against eval "
                      "prompts. One file kept per cluster, chosen deterministically.")
def deduped_corpus(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    stored = {p: asset_storage_path(s.data_dir, dg.AssetKey("scrubbed_corpus"), p, ".parquet")
              for p in context.instance.get_dynamic_partitions(repos_partitions.name)}
    missing = sorted(p for p, path in stored.items() if not path.exists())
    if missing:   # a repo that failed, or not yet materialized
        context.log.warning(f"scrubbed_corpus: partitions {missing} have no stored value; left out")
    stored = {p: path for p, path in stored.items() if path.exists()}
    configured = {r.name for r in s.repos}
    removed = sorted(p for p in stored if p not in configured)
    if removed:  # a repo taken out of codellm.yaml (legal, compliance) must stop flowing into training
        context.log.warning(f"leaving out partitions no longer in the settings: {removed}")
    stored = {p: path for p, path in stored.items() if p in configured}
    blocked = blocked_partitions(context.instance, list(stored))
    if blocked:
        context.log.warning(f"leaving out partitions without a passed leftover-secret check on their latest "
                            f"materialization: {blocked}")
    repos = {p: path for p, path in stored.items() if p not in blocked}
    # non-code sources (defs/sources.py): the same rule, gated by their own no_leftover_secrets check
    source_paths = {c.name: asset_storage_path(s.data_dir, dg.AssetKey("source_corpus"), c.name, ".parquet")
                    for c in s.sources.connectors}
    source_paths = {p: path for p, path in source_paths.items() if path.exists()}
    blocked_sources = blocked_partitions(context.instance, list(source_paths), SOURCE_LEFTOVER_CHECK)
    if blocked_sources:
        context.log.warning(f"leaving out sources without a passed leftover-secret check: {blocked_sources}")
    inputs = {**repos, **{f"source:{p}": path for p, path in source_paths.items() if p not in blocked_sources}}
    outcome = corpus_dedup.dedup_partitions(inputs, s.dedup, s.blob_cache_dir,
                                            extra_eval_items=company_eval_items(s), workers=s.data.workers,
                                            progress=context.log.info)
    result, hits = outcome.dedup, outcome.decontam_hits
    frames = [_kept_rows(path, outcome.kept[p]) for p, path in sorted(inputs.items())]
    frames = [f for f in frames if len(f)]
    out = (pl.concat(frames) if frames else pl.DataFrame(schema=CORPUS_SCHEMA)).sort(["repo", "branch", "path"])
    cluster_sizes = Counter(result.cluster_sizes)
    context.log.info(f"{outcome.files_in} files -> {len(out)}: {len(result.exact_duplicates)} exact, "
                     f"{len(result.near_duplicates)} near duplicates, {len(hits)} decontaminated")
    return dg.Output(out, data_version=frame_version(out), metadata={
        "files_in": outcome.files_in, "files_kept": len(out), "dagster/row_count": len(out),
        "exact_duplicates": len(result.exact_duplicates),
        "near_duplicates": len(result.near_duplicates),
        "dedup_ratio": float(result.dedup_ratio),
        "cluster_size_histogram": dg.MetadataValue.json({str(k): v for k, v in sorted(cluster_sizes.items())}),
        "largest_cluster": max(result.cluster_sizes, default=1),
        "decontamination_hits": len(hits), "eval_items_checked": outcome.eval_items,
        "decontaminated_examples": dg.MetadataValue.json(dict(list(hits.items())[:10])),
        "bytes": int(out["bytes"].sum()) if len(out) else 0,
        "backend": s.dedup.backend,
        "candidate_pairs": result.candidate_pairs, "texts_read_for_verify": outcome.texts_read_for_verify,
        "cache": dg.MetadataValue.json({"signature": outcome.signatures.to_json(),
                                        "decontamination": outcome.decontamination.to_json()}),
        "repos": dg.MetadataValue.json(sorted(repos)),
        "blocked_partitions": dg.MetadataValue.json(blocked),    # {partition: why}
        "removed_repos_left_out": dg.MetadataValue.json(removed),
        "sources": dg.MetadataValue.json(sorted(p for p in source_paths if p not in blocked_sources)),
        "blocked_sources": dg.MetadataValue.json(blocked_sources),
    })


def _kept_rows(path, kept_ids: set[str]) -> pl.DataFrame:
    """One partition's kept files (the keep-list applied per partition)."""
    df = pl.read_parquet(path)
    ids = pl.col("repo") + ":" + pl.col("branch") + ":" + pl.col("path")
    return df.filter(ids.is_in(sorted(kept_ids))).select(list(CORPUS_SCHEMA)).cast(CORPUS_SCHEMA)
