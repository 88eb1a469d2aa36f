"""Stages 2–4: quality filters, secret/PII scrubbing (per repo), then cross-repo dedup + decontamination."""


from collections import Counter

import dagster as dg
import polars as pl

from codellm_assets.core.data import dedup, filters
from codellm_assets.core.data.scrub import scrubber as scrub
from codellm_assets.defs.shared import (
    CORPUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    company_eval_items,
    frame_version,
    repos_partitions,
    stored_partitions,
)
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource


@dg.asset(op_tags=k8s_tags_for("clean_files"), partitions_def=repos_partitions, group_name="data",
          description="Files that pass the quality rules; every dropped file is counted by reason.")
def clean_files(context: dg.AssetExecutionContext, settings: SettingsResource,
                repo_snapshots: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    rules = settings.get().quality
    result = filters.apply_quality_rules(repo_snapshots.iter_rows(named=True), rules)
    df = pl.DataFrame(result.kept, schema=SNAPSHOT_SCHEMA).with_columns(pl.col("content").str.len_bytes().cast(pl.Int64)
                                                           .alias("bytes"))
    context.log.info(f"kept {len(df)}/{len(repo_snapshots)} files; dropped {dict(result.dropped)}")
    return dg.Output(df, metadata={
        "files_in": len(repo_snapshots), "files_kept": len(df), "dagster/row_count": len(df),
        "bytes": int(df["bytes"].sum()) if len(df) else 0,
        "truncated": result.truncated,
        "dropped_by_reason": dg.MetadataValue.json(dict(sorted(result.dropped.items()))),
        "dropped_total": sum(result.dropped.values()),
    })


@dg.asset(op_tags=k8s_tags_for("scrubbed_corpus"), partitions_def=repos_partitions, group_name="data",
          description="Files with secrets and PII replaced by typed placeholders (<SECRET:aws_access_key>, "
                      "<EMAIL>, <IP>, …); redaction counts by type.")
def scrubbed_corpus(context: dg.AssetExecutionContext, settings: SettingsResource,
                    clean_files: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    opts = settings.get().scrub
    totals: Counter[str] = Counter()
    rows = []
    for row in clean_files.iter_rows(named=True):
        res = scrub.scrub_text(row["content"], opts)
        totals.update(res.counts)
        rows.append({**row, "content": res.text, "bytes": len(res.text.encode()),
                     "redactions": sum(res.counts.values())})
    df = pl.DataFrame(rows, schema=CORPUS_SCHEMA)
    files_touched = int((df["redactions"] > 0).sum()) if len(df) else 0
    context.log.info(f"redacted {sum(totals.values())} items in {files_touched} files: {dict(totals)}")
    return dg.Output(df, metadata={
        "files": len(df), "dagster/row_count": len(df), "files_with_redactions": files_touched,
        "redactions_total": sum(totals.values()),
        "redactions_by_type": dg.MetadataValue.json(dict(sorted(totals.items()))),
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
          ins={"scrubbed_corpus": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
          deps=[dg.AssetDep("source_corpus", partition_mapping=dg.AllPartitionMapping())],
          description="Exact + near-duplicate removal across repos (MinHash LSH), decontaminated against "
                      "eval prompts. One file kept per cluster, chosen deterministically.")
def deduped_corpus(context: dg.AssetExecutionContext, settings: SettingsResource,
                   scrubbed_corpus: dict[str, pl.DataFrame]) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    configured = {r.name for r in s.repos}
    removed = sorted(p for p in scrubbed_corpus if p not in configured)
    if removed:  # a repo taken out of codellm.yaml (legal, compliance) must stop flowing into training
        context.log.warning(f"leaving out partitions no longer in the settings: {removed}")
    scrubbed_corpus = {p: df for p, df in scrubbed_corpus.items() if p in configured}
    blocked = blocked_partitions(context.instance, list(scrubbed_corpus))
    if blocked:
        context.log.warning(f"leaving out partitions without a passed leftover-secret check on their latest "
                            f"materialization: {blocked}")
    # non-code sources (defs/sources.py): the same rule, gated by their own no_leftover_secrets check
    sources = stored_partitions(s, "source_corpus", [c.name for c in s.sources.connectors])
    blocked_sources = blocked_partitions(context.instance, list(sources), SOURCE_LEFTOVER_CHECK)
    if blocked_sources:
        context.log.warning(f"leaving out sources without a passed leftover-secret check: {blocked_sources}")
    frames = [df for p, df in sorted(scrubbed_corpus.items()) if len(df) and p not in blocked]
    frames += [df for p, df in sorted(sources.items()) if len(df) and p not in blocked_sources]
    corpus = pl.concat(frames) if frames else pl.DataFrame(schema=CORPUS_SCHEMA)
    corpus = corpus.with_columns((pl.col("repo") + ":" + pl.col("branch") + ":" + pl.col("path")).alias("doc_id"))
    docs = [dedup.Doc(id=r["doc_id"], text=r["content"], repo=r["repo"], path=r["path"])
            for r in corpus.select("doc_id", "content", "repo", "path").iter_rows(named=True)]
    outcome = dedup.dedup_and_decontaminate(docs, s.dedup, extra_eval_items=company_eval_items(s),
                                            progress=context.log.info)
    result, hits, kept = outcome.dedup, outcome.decontam_hits, set(outcome.kept_ids)
    out = corpus.filter(pl.col("doc_id").is_in(sorted(kept))).drop("doc_id").sort(["repo", "branch", "path"])
    cluster_sizes = Counter(result.cluster_sizes)
    context.log.info(f"{len(corpus)} files -> {len(out)}: {len(result.exact_duplicates)} exact, "
                     f"{len(result.near_duplicates)} near duplicates, {len(hits)} decontaminated")
    return dg.Output(out, data_version=frame_version(out), metadata={
        "files_in": len(corpus), "files_kept": len(out), "dagster/row_count": len(out),
        "exact_duplicates": len(result.exact_duplicates),
        "near_duplicates": len(result.near_duplicates),
        "dedup_ratio": float(result.dedup_ratio),
        "cluster_size_histogram": dg.MetadataValue.json({str(k): v for k, v in sorted(cluster_sizes.items())}),
        "largest_cluster": max(result.cluster_sizes, default=1),
        "decontamination_hits": len(hits), "eval_items_checked": outcome.eval_items,
        "decontaminated_examples": dg.MetadataValue.json(dict(list(hits.items())[:10])),
        "bytes": int(out["bytes"].sum()) if len(out) else 0,
        "backend": s.dedup.backend,
        "repos": dg.MetadataValue.json(sorted(p for p in scrubbed_corpus if p not in blocked)),
        "blocked_partitions": dg.MetadataValue.json(blocked),    # {partition: why}
        "removed_repos_left_out": dg.MetadataValue.json(removed),
        "sources": dg.MetadataValue.json(sorted(p for p in sources if p not in blocked_sources)),
        "blocked_sources": dg.MetadataValue.json(blocked_sources),
    })
