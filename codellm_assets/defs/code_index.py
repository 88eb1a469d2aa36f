"""The repository context: a BM25 code index per repo over the deduplicated, scrubbed corpus, which the
gateway puts before IDE completions and the repo-level benchmark measures with and without."""

import hashlib

import dagster as dg
import polars as pl

from codellm_assets.core.data.code_index_store import build_repo_indexes
from codellm_assets.defs.shared import RETRAIN_CHAIN, markdown_table
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource


# RETRAIN_CHAIN: rebuilt when deduped_corpus has new content (not on a re-materialization of the same
# content). Nothing trains on it: no training asset depends on it, so a new index never starts a retrain.
@dg.asset(op_tags=k8s_tags_for("code_index"), automation_condition=RETRAIN_CHAIN, group_name="data",
          description="A BM25 index of code chunks per repo (core/data/code_index.py) over deduped_corpus, "
                      "under <home>/data/code_index/<repo>/<content hash>/ with current.json pointing at "
                      "each repo's index; an unchanged repo keeps its index. The gateway reads it to add "
                      "repository context to completions.")
def code_index(context: dg.AssetExecutionContext, settings: SettingsResource,
               deduped_corpus: pl.LazyFrame) -> dg.Output[dict]:
    s = settings.get()
    root = s.code_index_dir
    records = deduped_corpus.lazy().select("repo", "branch", "commit", "path", "language", "content").collect() \
        .iter_rows(named=True)
    # every file's definitions kept in the blob cache: the training sampler and the benchmark read them again
    summary = build_repo_indexes(records, root, file_cache=s.blob_cache_dir, compact_cache=True)
    rows = [{"repo": r.repo, "commit": r.commit[:12], "files": r.files, "chunks": r.chunks, "bytes": r.bytes,
             "seconds": r.seconds, "rebuilt": r.rebuilt,
             "shards rebuilt": f"{r.shards - r.reused_shards}/{r.shards}" if r.rebuilt else "-"}
            for r in summary.repos]
    context.log.info(f"{len(rows)} repo indexes, {summary.chunks} chunks: {summary.rebuilt} rebuilt, "
                     f"{summary.reused} reused, in {summary.seconds}s; removed {summary.removed_dirs}")
    value = {"root": str(root), "repos": {r.repo: r.dir for r in summary.repos}}
    # The content hashes are the data version: the same corpus gives the same version.
    version = hashlib.sha256("".join(f"{r.repo}={r.content_hash};" for r in summary.repos).encode()).hexdigest()
    return dg.Output(value, data_version=dg.DataVersion(version), metadata={
        "repos": len(rows), "chunks": summary.chunks, "rebuilt": summary.rebuilt, "reused": summary.reused,
        "bytes": sum(r.bytes for r in summary.repos), "build_seconds": summary.seconds,
        "chunks_by_repo": dg.MetadataValue.json({r.repo: r.chunks for r in summary.repos}),
        "per_repo": dg.MetadataValue.md(markdown_table(rows, list(rows[0]) if rows else ["repo"])),
        "removed_dirs": dg.MetadataValue.json(summary.removed_dirs),
        "root": dg.MetadataValue.path(str(root)),
    })
