"""Non-code sources: review comments, Confluence pages, Jira issues; one dynamic partition per source.

source_documents (incremental fetch per source) -> source_corpus (the code's quality rules and scrubber)
[blocking check: no leftover secret] -> deduped_corpus, beside the repos' scrubbed_corpus. A source whose
token is refused fails its own partition with the error naming the source and the variable; the others and
the stored documents of the failed one are untouched.
"""

import json
import time
from collections import Counter

import dagster as dg
import polars as pl

from codellm_assets.core.data import filters
from codellm_assets.core.data import sources as connectors
from codellm_assets.core.data.scrub import scrubber as scrub
from codellm_assets.core.data.sources.documents import known_versions, merge_documents, parse_time
from codellm_assets.defs.shared import (
    CORPUS_SCHEMA,
    SNAPSHOT_SCHEMA,
    SOURCE_DOCUMENTS_SCHEMA,
    frame_version,
    sources_partitions,
)
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource, asset_storage_path
from codellm_assets.settings import Settings

SOURCE_DOCUMENTS = dg.AssetKey("source_documents")


def _stored_documents(settings: Settings, name: str) -> list[dict]:
    path = asset_storage_path(settings.data_dir, SOURCE_DOCUMENTS, name, ".parquet")
    return pl.read_parquet(path).to_dicts() if path.exists() else []


def stored_cursor(instance: dg.DagsterInstance, name: str) -> str | None:
    """The cursor the partition's latest materialization recorded: it is written only with the documents, so
    a failed run never moves it."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=SOURCE_DOCUMENTS, asset_partitions=[name]), limit=1).records
    if not records:
        return None
    meta = records[0].asset_materialization.metadata if records[0].asset_materialization else {}
    value = getattr(meta.get("cursor"), "value", None)
    return value or None


def _later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if parse_time(a) >= parse_time(b) else b


@dg.asset(op_tags=k8s_tags_for("source_documents"), partitions_def=sources_partitions, group_name="data",
          description="Documents of one non-code source (sources.connectors): review examples / commented diffs, "
                      "Confluence pages as Markdown, Jira issues with comments and linked commits. Incremental: "
                      "only items updated since the stored cursor are fetched; an edit replaces its document.")
def source_documents(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    cfg = s.source(context.partition_key)
    previous = _stored_documents(s, cfg.name)
    cursor = stored_cursor(context.instance, cfg.name)
    try:
        result, client = connectors.fetch_source(cfg, cursor=cursor, known=known_versions(previous))
    except connectors.SourceError as e:   # only this partition fails; nothing is stored, the cursor stays
        raise dg.Failure(description=str(e), metadata={
            "source": cfg.name, "kind": cfg.kind, "url": str(e.url), "token_env": cfg.token_env,
            "error": type(e).__name__}) from e
    new_cursor = cursor if result.truncated else _later(cursor, result.cursor)
    rows = merge_documents(previous, result, cfg.kind, snapshot=new_cursor or "")
    df = pl.DataFrame(rows, schema=SOURCE_DOCUMENTS_SCHEMA)
    kinds = dict(Counter(df["kind"].to_list())) if len(df) else {}
    context.log.info(f"{cfg.name}: {len(result.items)} changed items ({result.listed} listed, {result.unchanged} "
                     f"unchanged) -> {len(result.documents)} documents; {len(df)} stored; {client.requests} "
                     f"requests, {client.waited_s:.1f}s waited on rate limits")
    return dg.Output(df, data_version=frame_version(df), metadata={
        "cursor": new_cursor or "", "previous_cursor": cursor or "", "kind": cfg.kind,
        "changed_items": len(result.items), "listed_items": result.listed, "unchanged_items": result.unchanged,
        "documents_fetched": len(result.documents), "documents": len(df), "dagster/row_count": len(df),
        "documents_by_kind": dg.MetadataValue.json(kinds), "truncated": result.truncated,
        "requests": client.requests, "rate_limit_wait_s": round(client.waited_s, 2),
        "bytes": int(df["bytes"].sum()) if len(df) else 0,
    })


@dg.asset(op_tags=k8s_tags_for("source_corpus"), partitions_def=sources_partitions, group_name="data",
          description="A source's documents through the code's path: quality rules (sources.quality: limits for "
                      "prose), then the same scrubber (secrets / PII -> typed placeholders). Rows are corpus rows "
                      "(repo = the source, path source://…) that deduped_corpus takes beside the repos'.")
def source_corpus(context: dg.AssetExecutionContext, settings: SettingsResource,
                  source_documents: pl.DataFrame) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    records = source_documents.select(list(SNAPSHOT_SCHEMA)).iter_rows(named=True)
    kept = filters.apply_quality_rules(records, s.sources.quality)
    totals: Counter[str] = Counter()
    rows = []
    for row in kept.kept:
        res = scrub.scrub_text(row["content"], s.scrub)
        totals.update(res.counts)
        rows.append({**row, "content": res.text, "bytes": len(res.text.encode()),
                     "redactions": sum(res.counts.values())})
    df = pl.DataFrame(rows, schema=CORPUS_SCHEMA)
    context.log.info(f"kept {len(df)}/{len(source_documents)} documents; dropped {dict(kept.dropped)}; "
                     f"redacted {dict(totals)}")
    return dg.Output(df, data_version=frame_version(df), metadata={
        "documents_in": len(source_documents), "documents_kept": len(df), "dagster/row_count": len(df),
        "dropped_by_reason": dg.MetadataValue.json(dict(sorted(kept.dropped.items()))),
        "redactions_total": sum(totals.values()),
        "redactions_by_type": dg.MetadataValue.json(dict(sorted(totals.items()))),
        "bytes": int(df["bytes"].sum()) if len(df) else 0,
    })


PER_SOURCE_SELECTION = dg.AssetSelection.assets("source_documents", "source_corpus")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=PER_SOURCE_SELECTION,
           description="Adds a partition per configured source and asks each for changes every "
                       "sources.poll_minutes (the fetch itself is incremental).")
def sources_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource) -> dg.SensorResult:
    s = settings.get()
    cursor: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(sources_partitions.name))
    new = [c.name for c in s.sources.connectors if c.name not in known]
    now = time.time()
    due = [c.name for c in s.sources.connectors if now - cursor.get(c.name, 0.0) >= s.sources.poll_minutes * 60]
    for name in due:
        cursor[name] = now
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=n, tags={"codellm/reason": "source poll"}) for n in due],
        cursor=json.dumps(cursor, sort_keys=True),
        dynamic_partitions_requests=[sources_partitions.build_add_request(new)] if new else [])
