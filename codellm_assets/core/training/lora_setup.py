"""What a LoRA run is set up from and what it returns: the peft and 4-bit configs, the QLoRA and precision
choice, the step count, the dataset splits, ``TrainingError`` and ``TrainResult``. Re-exported by
:mod:`codellm_assets.core.training.lora`, where callers import them."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from codellm_assets.settings import TrainingSettings

Precision = Literal["fp32", "bf16", "fp16"]


class TrainingError(RuntimeError):
    """Training cannot start: bad dataset, base model or settings. The message says what to fix."""


@dataclass
class TrainResult:
    out_dir: str
    adapter_dir: str
    steps: int
    max_steps: int
    completed: bool  # False when should_stop() ended the run early (a checkpoint was saved)
    resumed_from_step: int
    loss_curve: list[tuple[int, float]]  # (optimizer step, mean training loss over the logging window)
    eval_curve: list[tuple[int, float]]  # (step, validation loss of the adapter)
    val_loss_adapter: float | None
    val_loss_base: float | None
    tokens_per_s: float
    train_tokens: int
    trainable_params: int
    total_params: int
    adapter_bytes: int
    wall_time_s: float  # this invocation
    train_time_s: float  # time in optimizer steps, summed over resumed runs
    precision: str
    qlora: bool
    device: str
    lora: dict[str, Any] = field(default_factory=dict)
    init_adapter_dir: str | None = None
    base_model_dir: str = ""
    base_fingerprint: str = ""
    fingerprint: str = ""

    @property
    def beats_base(self) -> bool:
        return (
            self.val_loss_adapter is not None
            and self.val_loss_base is not None
            and self.val_loss_adapter < self.val_loss_base
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrainResult:
        raw = json.loads(Path(path).read_text())
        raw["loss_curve"] = [tuple(x) for x in raw["loss_curve"]]
        raw["eval_curve"] = [tuple(x) for x in raw["eval_curve"]]
        return cls(**raw)


# ---- configuration -----------------------------------------------------------------------------------------


def lora_config_for(
    preset_target_modules: list[str] | tuple[str, ...],
    training: TrainingSettings,
    default_r: int,
    default_alpha: int,
):
    """The peft ``LoraConfig``: settings override the preset's rank, alpha and target modules."""
    from peft import LoraConfig

    targets = list(training.target_modules or preset_target_modules)
    if not targets:
        raise TrainingError(
            "no LoRA target modules: set training.target_modules (e.g. [q_proj, v_proj]) "
            "or give the model preset its target modules"
        )
    return LoraConfig(
        r=training.lora_r or default_r,
        lora_alpha=training.lora_alpha or default_alpha,
        lora_dropout=training.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def qlora_quantization_config(*, fsdp: bool = False):
    """4-bit NF4 with double quantization and bf16 compute: the QLoRA recipe. Under FSDP the packed 4-bit
    weights are stored as bf16 so FSDP can flatten and shard them with the rest (FSDP + QLoRA recipe)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        **({"bnb_4bit_quant_storage": torch.bfloat16} if fsdp else {}),
    )


def should_use_qlora(
    setting: str, cuda_available: bool, *, bitsandbytes_available: bool | None = None
) -> bool:
    """``auto``: QLoRA when a CUDA GPU and bitsandbytes are there; ``on``: required (error otherwise)."""
    if bitsandbytes_available is None:
        bitsandbytes_available = importlib.util.find_spec("bitsandbytes") is not None
    if setting == "off":
        return False
    if setting == "auto":
        return cuda_available and bitsandbytes_available
    if setting == "on":
        if not cuda_available:
            raise TrainingError(
                "training.qlora is 'on' but no CUDA GPU is available: QLoRA's 4-bit kernels "
                "(bitsandbytes) need one. Set training.qlora to 'auto' or 'off' on CPU."
            )
        if not bitsandbytes_available:
            raise TrainingError(
                "training.qlora is 'on' but bitsandbytes is not installed: "
                "pip install 'bitsandbytes>=0.45' in the GPU environment"
            )
        return True
    raise TrainingError(f"training.qlora must be 'auto', 'on' or 'off', got {setting!r}")


def choose_precision(device_type: str, bf16_supported: bool) -> Precision:
    """fp32 on CPU (no fast half-precision matmuls there); bf16 on GPUs that have it, else fp16."""
    if device_type != "cuda":
        return "fp32"
    return "bf16" if bf16_supported else "fp16"


def resolve_max_steps(training: TrainingSettings, n_train: int, world: int = 1) -> int:
    """``max_steps`` if positive, else the optimizer steps needed for ``epochs`` passes over the data
    (``world`` ranks each take ``batch_size`` sequences of every global batch)."""
    if training.max_steps > 0:
        return training.max_steps
    batches = math.ceil(math.ceil(n_train / world) / training.batch_size)
    return max(1, math.ceil(training.epochs * batches / training.gradient_accumulation_steps))


# ---- data --------------------------------------------------------------------------------------------------


def load_splits(dataset_dir: str | os.PathLike[str]):
    """The ``train`` / ``validation`` splits as torch-formatted datasets; clear errors on a wrong layout."""
    from datasets import load_from_disk

    try:
        dd = load_from_disk(str(dataset_dir))
    except FileNotFoundError as e:
        raise TrainingError(
            f"{dataset_dir}: not a saved datasets.DatasetDict ({e}); materialize training_dataset first"
        ) from None
    missing = [s for s in ("train", "validation") if s not in dd]
    if missing or "input_ids" not in dd["train"].column_names:
        raise TrainingError(
            f"{dataset_dir}: expected splits train/validation with column input_ids; "
            f"missing splits {missing}, columns {dd[next(iter(dd))].column_names}"
        )
    if len(dd["train"]) == 0:
        raise TrainingError(f"{dataset_dir}: the train split is empty; add repos or lower quality filters")
    cols = [c for c in ("input_ids", "attention_mask", "labels") if c in dd["train"].column_names]
    return dd["train"].with_format("torch", columns=cols), dd["validation"].with_format("torch", columns=cols)
