"""Data-quality asset checks (great-expectations inside @asset_check). Blocking ones stop bad data flowing on.

Each check on a per-repo asset carries the asset's partitions_def: without it Dagster would load
every partition into the check.
"""

from collections import Counter

import dagster as dg
import polars as pl

from codellm_assets.core.data.gx_checks import validate_dataframe
from codellm_assets.core.data.languages import KNOWN_LANGUAGES
from codellm_assets.core.data.scrub.leftovers import LeftoverPolicy, find_leftovers
from codellm_assets.core.evaluation import gate
from codellm_assets.defs.shared import consumed_eval_scores, markdown_table, repos_partitions, sources_partitions
from codellm_assets.resources import SettingsResource


def _gxe():
    """great_expectations costs seconds to import: only checks that run pay for it, not every process
    that loads the code location."""
    import great_expectations.expectations as gxe

    return gxe


def _result(report, *, severity=dg.AssetCheckSeverity.ERROR, extra: dict | None = None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=report.success, severity=severity,
        metadata={"gx": dg.MetadataValue.json(report.as_metadata()), "rows": report.rows,
                  "failed_expectations": len(report.failed), **(extra or {})})


def _schema_expectations(max_bytes: int, min_bytes: int = 0) -> list:
    gxe = _gxe()
    return [
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("repo", "path", "content", "blob_sha", "commit")],
        gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=min_bytes, max_value=max_bytes),
        gxe.ExpectColumnValuesToBeInSet(column="language", value_set=sorted(KNOWN_LANGUAGES)),
    ]


@dg.asset_check(asset="repo_snapshots", partitions_def=repos_partitions,
                description="Schema, no nulls, sizes under the cap (empty files allowed), known languages.")
def repo_snapshots_schema(settings: SettingsResource, repo_snapshots: pl.DataFrame) -> dg.AssetCheckResult:
    return _result(validate_dataframe(repo_snapshots, _schema_expectations(settings.get().quality.max_file_bytes)))


@dg.asset_check(asset="clean_files", partitions_def=repos_partitions,
                description="Cleaned files respect the quality rules: lengths in range, no nulls.")
def clean_files_in_range(settings: SettingsResource, clean_files: pl.DataFrame) -> dg.AssetCheckResult:
    gxe = _gxe()
    q = settings.get().quality
    frame = clean_files.with_columns(
        (pl.col("content").str.count_matches("\n") + 1).alias("lines"),
        pl.col("content").str.split("\n").list.eval(pl.element().str.len_chars()).list.max().alias("longest_line"))
    exps = [*_schema_expectations(q.max_file_bytes, min_bytes=1),   # an empty file is no training data
            gxe.ExpectColumnValuesToBeBetween(column="lines", min_value=q.min_lines, max_value=q.max_lines + 1),
            gxe.ExpectColumnValuesToBeBetween(column="longest_line", max_value=q.max_line_length)]
    return _result(validate_dataframe(frame, exps))


def _leftover_result(settings: SettingsResource, frame: pl.DataFrame) -> dg.AssetCheckResult:
    gxe = _gxe()
    policy = LeftoverPolicy.from_scrub_settings(settings.get().scrub)
    findings = []
    counts = []
    for row in frame.select("path", "content").iter_rows(named=True):
        found = find_leftovers(row["content"], policy)
        counts.append(len(found))
        findings.extend({"path": row["path"], "type": f.type, "line": f.line, "excerpt": f.excerpt}
                        for f in found[:3])
    leftovers = frame.select("path").with_columns(pl.Series("leftovers", counts, dtype=pl.Int64))
    report = validate_dataframe(leftovers, [gxe.ExpectColumnValuesToBeBetween(column="leftovers", min_value=0,
                                                                              max_value=0)])
    by_type = dict(Counter(f["type"] for f in findings))
    return _result(report, extra={"leftovers": sum(counts), "examples": dg.MetadataValue.json(findings[:10]),
                                  "files_with_leftovers": sum(1 for c in counts if c),
                                  "example_types": dg.MetadataValue.json(by_type)})


@dg.asset_check(asset="scrubbed_corpus", partitions_def=repos_partitions, blocking=True,
                description="Re-scans the scrubbed output with an INDEPENDENT method (detect-secrets' plugins, a "
                            "keyword/entropy scan, e-mails / private IPs / internal hosts; none of the scrubber's "
                            "rules); any leftover fails the check, and deduped_corpus leaves the partition out.")
def no_leftover_secrets(settings: SettingsResource, scrubbed_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    return _leftover_result(settings, scrubbed_corpus)


@dg.asset_check(asset="source_corpus", name="no_leftover_secrets", partitions_def=sources_partitions,
                blocking=True, description="The same independent re-scan as scrubbed_corpus's, on a source's "
                "scrubbed documents; a leftover fails it, and deduped_corpus leaves the source out.")
def source_no_leftover_secrets(settings: SettingsResource, source_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    return _leftover_result(settings, source_corpus)


@dg.asset_check(asset="deduped_corpus", description="Schema, a sane dedup ratio and a language mix we know.")
def deduped_corpus_sane(context: dg.AssetCheckExecutionContext, deduped_corpus: pl.DataFrame) -> dg.AssetCheckResult:
    gxe = _gxe()
    mat = context.instance.get_latest_materialization_event(dg.AssetKey("deduped_corpus"))
    meta = mat.asset_materialization.metadata if mat and mat.asset_materialization else {}
    ratio = float(meta["dedup_ratio"].value) if "dedup_ratio" in meta else 0.0
    exps = [*_schema_expectations(10**9), gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    report = validate_dataframe(deduped_corpus, exps)
    mix = dict(deduped_corpus.group_by("language").len().iter_rows()) if len(deduped_corpus) else {}
    # Above 90 % removed, something upstream (a vendored tree, a mirror of a mirror) is badly wrong.
    ratio_ok = 0.0 <= ratio <= 0.9
    return dg.AssetCheckResult(
        passed=report.success and ratio_ok, severity=dg.AssetCheckSeverity.WARN,
        metadata={"dedup_ratio": ratio, "dedup_ratio_ok": ratio_ok, "language_mix": dg.MetadataValue.json(mix),
                  "gx": dg.MetadataValue.json(report.as_metadata())})


@dg.asset_check(asset="training_dataset", blocking=True,
                description="No file (by normalized content hash) in more than one of train / validation / "
                            "held-out: validation loss and the company benchmark must measure unseen code.")
def no_split_overlap(training_dataset: dict) -> dg.AssetCheckResult:
    gxe = _gxe()
    import json
    from pathlib import Path

    manifest = json.loads((Path(training_dataset["dir"]) / "manifest.json").read_text())
    splits = manifest["split_file_hashes"]
    rows = [{"split": name, "hash": h} for name, hashes in splits.items() for h in hashes]
    frame = pl.DataFrame(rows, schema={"split": pl.String, "hash": pl.String})
    overlap = frame.group_by("hash").agg(pl.col("split").n_unique().alias("splits")).filter(pl.col("splits") > 1)
    report = validate_dataframe(frame, [gxe.ExpectColumnValuesToNotBeNull(column="hash")])
    return dg.AssetCheckResult(
        passed=report.success and overlap.height == 0,
        metadata={"files_per_split": dg.MetadataValue.json({k: len(v) for k, v in splits.items()}),
                  "overlapping_files": overlap.height,
                  "examples": dg.MetadataValue.json(overlap["hash"].head(5).to_list())})


@dg.asset_check(asset="eval_scores", blocking=True,
                description="The challenger vs the champion (or the base), re-scored on the same tasks in the "
                            "same run: a paired bootstrap per gated metric; passes only if the worse end of the "
                            "interval is within eval.gate_margin. A missing metric, too few tasks, or a stored "
                            "value that is not this materialization's fails.")
def eval_gate(context: dg.AssetCheckExecutionContext, settings: SettingsResource,
              eval_scores: dict) -> dg.AssetCheckResult:
    ev = settings.get().eval
    consumed = consumed_eval_scores(context)
    run_id, data_version = (consumed[1], consumed[2]) if consumed else (None, None)
    problems = gate.identity_problems(eval_scores, run_id=run_id, data_version=data_version)
    verdict = gate.decide_scores(eval_scores, ev)
    cols = ["metric", "n", "challenger", "reference", "delta", "ci_low", "ci_high", "bound", "ok", "note"]
    return dg.AssetCheckResult(passed=verdict.passed and not problems, metadata={
        "reference": verdict.reference, "margin": ev.gate_margin, "confidence": ev.gate_confidence,
        "bootstrap_samples": ev.gate_bootstrap_samples, "min_tasks": ev.gate_min_tasks,
        "comparison": dg.MetadataValue.md(markdown_table(verdict.rows, cols)),
        "intervals": dg.MetadataValue.json({r["metric"]: [r.get("ci_low"), r.get("ci_high")] for r in verdict.rows}),
        "identity_problems": dg.MetadataValue.json(problems),
        "eval_run_id": str(run_id), "eval_data_version": str(data_version),
        **{f"{r['metric']}_ok": bool(r["ok"]) for r in verdict.rows if r["ok"] is not None}})
