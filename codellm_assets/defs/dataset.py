"""Stage 5: the tokenized, packed training dataset (HF `datasets` on disk) with its lineage manifest."""


import json
from pathlib import Path

import dagster as dg
import polars as pl

from codellm_assets.core.data import tokenization as tokenize
from codellm_assets.core.training.base_model import dataset_tokenizer_args
from codellm_assets.defs.shared import RETRAIN_CHAIN
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource
from codellm_assets.settings import Settings


def dataset_dir(settings: Settings) -> Path:
    return settings.data_dir / "training_dataset"


def _training_records(deduped_corpus: pl.DataFrame, feedback_dataset: pl.DataFrame | None) -> list[dict]:
    records = list(deduped_corpus.iter_rows(named=True))
    if feedback_dataset is not None and len(feedback_dataset):
        records.extend(feedback_dataset.iter_rows(named=True))
    return records


@dg.asset(op_tags=k8s_tags_for("training_dataset"), automation_condition=RETRAIN_CHAIN, group_name="data",
          description="Tokenized with the base model's tokenizer (tiny: a byte-level BPE trained on the "
                      "corpus), packed into fixed-length sequences with EOS separators, split by file hash "
                      "(train / validation / held-out), saved as an HF `datasets` dataset with a manifest "
                      "of every source commit.")
def training_dataset(context: dg.AssetExecutionContext, settings: SettingsResource,
                     deduped_corpus: pl.DataFrame, feedback_dataset: pl.DataFrame) -> dg.Output[dict]:
    s = settings.get()
    feedback = feedback_dataset
    records = _training_records(deduped_corpus, feedback)
    out = dataset_dir(s)
    summary = tokenize.build_training_dataset(
        records, out, seq_len=s.dataset.seq_len,
        validation_fraction=s.dataset.validation_fraction, holdout_fraction=s.dataset.holdout_fraction,
        fim_rate=s.dataset.fim_rate, seed=s.dataset.seed, vocab_size=s.dataset.tokenizer_vocab_size,
        settings_hash=s.section_hash("dataset", "model"), cache_dir=s.blob_cache_dir,
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
        "sequences": dg.MetadataValue.json(summary.sequences),
        "files_per_split": dg.MetadataValue.json(summary.files_per_split),
        "files_per_language": dg.MetadataValue.json(summary.files_per_language),
        "vocab_size": summary.vocab_size, "seq_len": summary.seq_len,
        "tokenizer": summary.tokenizer_source, "manifest_hash": summary.manifest_hash,
        "source_commits": dg.MetadataValue.json(value["commits"]),
        "feedback_examples": value["feedback_examples"],
        "dataset_dir": dg.MetadataValue.path(value["dataset_dir"]),
        "build_seconds": summary.seconds,
        "cache": dg.MetadataValue.json(summary.cache),
    })
