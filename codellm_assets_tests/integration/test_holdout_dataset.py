"""training_dataset on a real instance and a real git repo with dated commits: the newest commit's files are
held out (dataset.holdout_split: time, the default) and in no train or validation sequence; the metadata
and the manifest name the split and its cut date."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import datasets
import polars as pl
from transformers import PreTrainedTokenizerFast

from codellm_assets.defs import corpus, dataset, monitoring
from codellm_assets_tests.data.test_dataset_splits import dated_commit
from codellm_assets_tests.integration.conftest import resources_for, write_config
from codellm_assets_tests.integration.test_data_stage import PER_REPO, module


def test_training_dataset_holds_out_the_newest_commit(tmp_path, make_git_repo, monkeypatch, instance):
    repo = make_git_repo("ledger")
    dated_commit(monkeypatch, repo, {f"old/m{i}.py": module(f"old_{i}") for i in range(12)}, 1)
    dated_commit(monkeypatch, repo, {"new/settle.py": module("newest_settle"), "old/m2.py": module("old_2_v2")}, 4)
    config = write_config(tmp_path, [{"name": "ledger", "path": str(repo), "branches": ["main"]}],
                          dataset={"holdout_fraction": 0.1})
    instance.add_dynamic_partitions("repos", ["ledger"])
    res = resources_for(config)
    assert dg.materialize(PER_REPO, resources=res, instance=instance, partition_key="ledger").success
    assets = [*PER_REPO, corpus.deduped_corpus, monitoring.feedback_events, monitoring.feedback_dataset,
              dataset.training_dataset]
    result = dg.materialize(assets, selection=["deduped_corpus", "feedback_dataset", "training_dataset"],
                            resources=res, instance=instance)
    assert result.success
    value = result.output_for_node("training_dataset")
    held = pl.read_parquet(value["holdout_path"])
    assert sorted(held["path"]) == ["new/settle.py", "old/m2.py"]
    meta = {k: v.value for k, v in result.asset_materializations_for_node("training_dataset")[0].metadata.items()}
    assert meta["holdout_split"] == "time" and meta["holdout_cut_date"].startswith("2026-03-04")
    assert meta["holdout_split_per_repo"] == {"ledger": "time"} and meta["holdout_fallback"] == {}
    manifest = json.loads((Path(value["dir"]) / "manifest.json").read_text())
    assert manifest["holdout_split"] == "time" and manifest["files_per_split"]["holdout"] == 2
    tok = PreTrainedTokenizerFast.from_pretrained(value["tokenizer_dir"])
    ds = datasets.load_from_disk(value["dataset_dir"])
    text = "".join(tok.decode(ids) for split in ds.values() for ids in split["input_ids"])
    assert "old_0" in text or "old_1" in text
    assert "newest_settle" not in text and "old_2_v2" not in text
