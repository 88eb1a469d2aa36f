"""`lora_adapter` with ``training.distributed.nproc_per_node: 2`` on a real Dagster instance and a real (SQLite)
MLflow: the step launches torchrun (two gloo ranks on CPU), streams rank 0's losses into MLflow and shows the
world size in the asset's metadata."""

from __future__ import annotations

import dagster as dg
import mlflow

from codellm_assets.defs.training import lora_adapter, make_mlflow_resource
from codellm_assets.settings import load_settings
from codellm_assets.testing.tiny_model import _training_text, build_tiny_model
from codellm_assets_tests.integration.conftest import resources_for, write_config


def _upstream(base_dir, dataset_dir, tokenizer_dir) -> list[dg.AssetsDefinition]:
    """What `base_model` / `training_dataset` return, pointing at a real tiny model and packed dataset."""
    @dg.asset(name="base_model", group_name="training")
    def base_model() -> dict:
        return {"path": str(base_dir)}

    @dg.asset(name="training_dataset", group_name="data")
    def training_dataset() -> dict:
        return {"dataset_dir": str(dataset_dir), "tokenizer_dir": str(tokenizer_dir), "manifest_hash": "m1",
                "commits": {"repo": "abc"}}

    return [base_model, training_dataset]


def _dataset(base_dir, out_dir):
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok(_training_text())["input_ids"]
    blocks = [ids[i : i + 64] for i in range(0, len(ids) - 63, 64)]
    DatasetDict({"train": Dataset.from_dict({"input_ids": blocks[:48]}),
                 "validation": Dataset.from_dict({"input_ids": blocks[48:56]})}).save_to_disk(str(out_dir))
    return out_dir


def test_lora_adapter_trains_under_torchrun_with_two_ranks(tmp_path, instance):
    config = write_config(tmp_path, [], model={"preset": "tiny"},
                          training={"threads": 1, "eval_max_sequences": 4, "qlora": "off",
                                    "distributed": {"nproc_per_node": 2}})
    settings = load_settings(config)
    base = build_tiny_model(tmp_path / "base")
    dataset = _dataset(base, tmp_path / "dataset")
    result = dg.materialize([*_upstream(base, dataset, base), lora_adapter], instance=instance,
                            resources={**resources_for(config), "mlflow": make_mlflow_resource(settings)})
    assert result.success
    meta = result.asset_materializations_for_node("lora_adapter")[0].metadata
    assert meta["world_size"].value == 2 and meta["strategy"].value == "ddp"
    assert meta["steps"].value == settings.training.max_steps
    value = result.output_for_node("lora_adapter")
    assert (tmp_path / "home" / "models" / "lora_adapter" / "adapter" / "adapter_model.safetensors").is_file()
    # rank 0's log records reached MLflow through the launcher: one train_loss per step
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    history = client.get_metric_history(value["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, settings.training.max_steps + 1))
