"""Stage 5: the tokenized, packed training dataset (HF `datasets` on disk) with its lineage manifest."""


import json
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data import dataset_splits, holdout
from codellm_assets.core.data import tokenization as tokenize
from codellm_assets.core.data.git_scan import RepoError
from codellm_assets.core.training.base_model import dataset_tokenizer_args, fim_spm_rate
from codellm_assets.defs.shared import FEEDBACK_REPO, RETRAIN_CHAIN, repo_git_dir
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource
from codellm_assets.settings import Settings, SettingsError


def dataset_dir(settings: Settings) -> Path:
    return settings.data_dir / "training_dataset"


def _training_records(deduped_corpus: pl.LazyFrame | pl.DataFrame, feedback_dataset: pl.DataFrame | None) -> list[dict]:
    """Every row as a dict; the DataFrame read for them is dropped before the build (one copy of the text)."""
    frame = deduped_corpus.collect() if isinstance(deduped_corpus, pl.LazyFrame) else deduped_corpus
    records = list(frame.iter_rows(named=True))
    del frame
    if feedback_dataset is not None and len(feedback_dataset):
        records.extend(feedback_dataset.iter_rows(named=True))
    return records


def _file_dates(s: Settings, deduped_corpus: pl.LazyFrame | pl.DataFrame) -> dict | None:
    """Last commit date per (repo, path) from the repos' git; None for the hash split (it needs none)."""
    if s.dataset.holdout_split != "time":
        return None
    try:
        return holdout.corpus_dates(deduped_corpus.lazy().select("repo", "commit").unique().collect()
                                    .iter_rows(named=True),
                                    lambda repo: repo_git_dir(s, repo))
    except (RepoError, SettingsError) as e:
        raise dg.Failure(description=f"the time holdout split needs each repo's git history: {e}; fix the repo "
                                     "or set dataset.holdout_split: hash") from e


def _splitter(s: Settings, dates: dict | None):
    """build_training_dataset's split: held out per repo by time (or hash), feedback to train, copies of
    held-out files out of train, validation by content hash (core/data/dataset_splits.py)."""
    def split(records: list[dict]):
        feedback = [r for r in records if r["repo"] == FEEDBACK_REPO]
        corpus = [r for r in records if r["repo"] != FEEDBACK_REPO]
        plan = dataset_splits.plan_splits(
            corpus, feedback, holdout_split=s.dataset.holdout_split, holdout_fraction=s.dataset.holdout_fraction,
            validation_fraction=s.dataset.validation_fraction, dates=dates, since=s.dataset.holdout_since,
            dedup=s.dedup, cache_dir=s.blob_cache_dir)
        return plan.splits, plan.info
    return split


@dg.asset(op_tags=k8s_tags_for("training_dataset"), automation_condition=RETRAIN_CHAIN, group_name="data",
          description="Tokenized with the base model's tokenizer (tiny: a byte-level BPE trained on the "
                      "corpus), packed into fixed-length sequences with EOS separators. Held out per repo: the "
                      "files of the newest commits (dataset.holdout_split time; or by hash), never trained on, "
                      "and train copies of them dropped; validation by content hash; feedback always trains. "
                      "Saved as an HF `datasets` dataset with a manifest of every source commit.")
def training_dataset(context: dg.AssetExecutionContext, settings: SettingsResource,
                     deduped_corpus: pl.LazyFrame, feedback_dataset: pl.DataFrame) -> dg.Output[dict]:
    s = settings.get()
    feedback = feedback_dataset
    records = _training_records(deduped_corpus, feedback)
    out = dataset_dir(s)
    summary = tokenize.build_training_dataset(
        records, out, seq_len=s.dataset.seq_len,
        validation_fraction=s.dataset.validation_fraction, holdout_fraction=s.dataset.holdout_fraction,
        fim_rate=s.dataset.fim_rate, seed=s.dataset.seed, vocab_size=s.dataset.tokenizer_vocab_size,
        fim_spm_rate=fim_spm_rate(s.model, s.dataset.fim_spm_rate),
        settings_hash=s.section_hash("dataset", "model", "dedup"), cache_dir=s.blob_cache_dir,
        split=_splitter(s, _file_dates(s, deduped_corpus)),
        repo_weights={r.name: r.train_weight for r in s.repos if r.train_weight != 1.0},
        context_rate=s.dataset.context_rate, context_tokens=s.dataset.context_tokens,
        context_repos=[r.name for r in s.repos],
        **dataset_tokenizer_args(s.model, base_dir=s.base_dir, vocab_size=s.dataset.tokenizer_vocab_size))
    manifest = json.loads((out / "manifest.json").read_text())
    context.log.info(f"{summary.tokens} tokens, {summary.sequences} sequences in {summary.seconds}s")
    value = {"dir": str(out), "dataset_dir": str(out / "dataset"), "tokenizer_dir": str(out / "tokenizer"),
             "holdout_path": str(out / "holdout.parquet"), "manifest_hash": summary.manifest_hash,
             "commits": {f"{src['repo']}@{src['branch']}": src["commit"] for src in manifest["sources"]},
             "feedback_examples": 0 if feedback is None else len(feedback)}
    # The manifest hash covers every file's content, the splits, the tokenizer and the settings: the same
    # data again gives the same data version, and RETRAIN_CHAIN does not train on it.
    return dg.Output(value, data_version=dg.DataVersion(summary.manifest_hash), metadata={
        "train_tokens": summary.tokens.get("train", 0), "validation_tokens": summary.tokens.get("validation", 0),
        "holdout_tokens": summary.tokens.get("holdout", 0),
        "fim_rate": summary.extra.get("fim_rate", 0.0), "fim_spm_rate": summary.extra.get("fim_spm_rate", 0.0),
        "context_rate": summary.extra.get("context_rate", 0.0),
        "context_tokens": summary.extra.get("context_tokens", 0),
        "context_documents": dg.MetadataValue.json(summary.extra.get("context_documents", {})),
        "train_weights": dg.MetadataValue.json(summary.extra.get("train_weights", {})),
        "train_files_per_pass": dg.MetadataValue.json(summary.extra.get("train_files_per_pass", [])),
        "sequences": dg.MetadataValue.json(summary.sequences),
        "files_per_split": dg.MetadataValue.json(summary.files_per_split),
        "files_per_language": dg.MetadataValue.json(summary.files_per_language),
        "vocab_size": summary.vocab_size, "seq_len": summary.seq_len,
        "tokenizer": summary.tokenizer_source, "manifest_hash": summary.manifest_hash,
        "source_commits": dg.MetadataValue.json(value["commits"]),
        "feedback_examples": value["feedback_examples"],
        "dataset_dir": dg.MetadataValue.path(value["dataset_dir"]),
        "build_seconds": summary.seconds,
        "holdout_split": str(summary.extra.get("holdout_split")),
        "holdout_cut_date": str(summary.extra.get("holdout_cut_date") or "–"),
        "holdout_split_per_repo": dg.MetadataValue.json(summary.extra.get("holdout_split_per_repo", {})),
        "holdout_cut_dates": dg.MetadataValue.json(summary.extra.get("holdout_cut_dates", {})),
        "holdout_fallback": dg.MetadataValue.json(summary.extra.get("holdout_fallback", {})),
        "train_dropped": dg.MetadataValue.json(summary.extra.get("train_dropped", {})),
        "train_dropped_examples": dg.MetadataValue.json(summary.extra.get("train_dropped_examples", [])),
        "cache": dg.MetadataValue.json(summary.cache),
    })
