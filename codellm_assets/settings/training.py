"""Settings of the training stage: the base model, distributed training, training and the registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from codellm_assets.settings.base import _Model


class ModelSettings(_Model):
    preset: str = "tiny"
    path: str | None = Field(None, description="local path of the base model; overrides the preset's hf_id")
    tiny_hidden_size: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 4
    tiny_pretrain_steps: int = Field(60, ge=0)
    tiny_pretrain_source: Literal["public", "dataset"] = Field(
        "public", description="what the tiny base (and its tokenizer) learns from: public (the sources of the "
        "installed packages in tiny_pretrain_packages: like a real base, it has never seen your repos) or "
        "dataset (the training dataset's train split: the base has already seen the company code)")
    tiny_pretrain_packages: list[str] = Field(
        default_factory=lambda: ["click", "typer", "requests", "jinja2", "flask", "werkzeug", "itsdangerous",
                                 "attr", "packaging"],
        description="installed pure-Python packages whose sources are the public pre-training corpus")
    tiny_pretrain_seq_len: int = Field(256, ge=16, description="tokens per pre-training window")
    tiny_pretrain_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the tiny pre-training's matmuls: bf16 autocast (weights and optimizer fp32) was 1.2-1.6x "
        "faster per step on CPUs with native bf16 (AVX512-BF16, AMX); auto: bf16 there, fp32 elsewhere")
    tiny_pretrain_lr: float = Field(3e-3, gt=0, le=0.1, description="the tiny pre-training's peak learning rate "
                                    "(AdamW; a tenth of the steps of warm-up, then cosine decay to a tenth)")
    tiny_pretrain_fim_rate: float = Field(0.5, ge=0, le=1, description="public source: share of files turned "
                                          "into fill-in-the-middle examples (a real code base knows FIM)")

    @field_validator("tiny_pretrain_packages")
    @classmethod
    def _module_names(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not all(part.isidentifier() for part in p.split("."))]
        if bad:
            raise ValueError(f"model.tiny_pretrain_packages: {bad} are not importable module names (e.g. click, "
                             "jinja2, attr)")
        return v

    @model_validator(mode="after")
    def _public_needs_packages(self) -> ModelSettings:
        if self.tiny_pretrain_source == "public" and not self.tiny_pretrain_packages:
            raise ValueError("model.tiny_pretrain_source public needs model.tiny_pretrain_packages (installed "
                             "packages, e.g. [click, typer]) or set tiny_pretrain_source: dataset")
        return self


class DistributedSettings(_Model):
    """Data-parallel training through torchrun: ``nproc_per_node`` processes (GPUs) on each of ``nnodes``
    nodes; ``ddp`` replicates the model per GPU, ``fsdp`` shards it (bases that do not fit one GPU; CUDA only)."""

    nproc_per_node: int = Field(1, ge=1, description="processes per node, one per GPU (2 on CPU tests: gloo)")
    nnodes: int = Field(1, ge=1)
    strategy: Literal["ddp", "fsdp"] = "ddp"
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="auto: nccl with CUDA, else gloo")
    rdzv_endpoint: str | None = Field(None, description="host:port of the rendezvous (node 0); required when "
                                      "nnodes > 1, e.g. the headless service of the training Job")
    rdzv_id: str = Field("codellm-train", description="rendezvous id shared by the nodes of one job")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _rules(self) -> DistributedSettings:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("training.distributed.nnodes > 1 needs training.distributed.rdzv_endpoint "
                             "(host:port of node 0, e.g. codellm-train-0.codellm-train:29400)")
        if self.strategy == "fsdp" and self.backend == "gloo":
            raise ValueError("training.distributed.strategy fsdp shards over GPUs: use backend auto or nccl")
        return self


class TrainingSettings(_Model):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(40, ge=-1, description="-1: run `epochs`")
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(4, ge=0)
    logging_steps: int = Field(5, ge=1)
    eval_steps: int = Field(20, ge=1)
    save_steps: int = Field(10, ge=1)
    gradient_checkpointing: bool = False
    lora_r: int | None = Field(None, ge=1, description="default: the preset's")
    lora_alpha: int | None = Field(None, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = None
    qlora: Literal["auto", "on", "off"] = "auto"
    from_champion: bool = Field(False, description="incremental retraining: start from the champion adapter")
    seed: int = 42
    threads: int = Field(0, ge=0, description="torch CPU threads; 0: all cores")
    eval_max_sequences: int = Field(256, ge=0, description="validation sequences scored per eval; 0: all")
    distributed: DistributedSettings = Field(default_factory=DistributedSettings,
                                             description="multi-GPU / multi-node data parallelism (torchrun)")


class RegistrySettings(_Model):
    model_name: str = "codellm"
    tracking_uri: str | None = Field(None, description="default: sqlite:///<home>/mlflow/mlflow.db")
    artifact_root: str | None = Field(None, description="default: <home>/mlflow/artifacts")
    experiment: str = "codellm"
    ui_url: str = Field("http://127.0.0.1:5000", description="the MLflow UI, for run links in Dagster metadata")
    lock_url: str | None = Field(None, description="what serializes registrations and alias moves: a lock-file "
                                 "path or a postgresql:// URL (advisory lock); default: a file beside the SQLite db")

