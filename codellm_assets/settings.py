"""Typed settings for codellm, loaded from ``codellm.yaml`` (or the path in ``CODELLM_CONFIG``).

Every knob lives here once. Relative paths are resolved against the directory of the settings file,
so the same file works from any working directory. Environment overrides use double underscores:
``CODELLM__TRAINING__MAX_STEPS=10`` sets ``training.max_steps``; ``CODELLM_HOME`` sets ``home``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The source checkout (tests and benchmarks use it to find the shipped codellm.yaml). Settings are NOT looked up
# here: a non-editable install or a second checkout sharing a venv would read another checkout's var/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE_NAME = "codellm.yaml"


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file, the key and the fix."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class CompanyDemoSettings(_Model):
    """The generated company repo (core/data/company_sample.py): an internal library and the services that use
    it, committed one batch a day - the repo on which fine-tuning visibly beats a base trained on public code."""

    seed: int = Field(0, ge=0, description="which company: 0 is `quillon` (LedgerVault, stamp_quorble, ...); "
                      "another seed draws other library names and service domains (a repo never tuned on)")
    services: int = Field(48, ge=4, le=2000, description="service files, four per daily commit after the "
                          "library's; the time split holds out the newest batch")


class RepoSettings(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="partition key; letters, digits, . _ -")
    path: str | None = Field(None, description="local path of a git repository (absolute or relative)")
    url: str | None = Field(None, description="clone URL; cloned/mirrored under home/mirrors")
    remotes: list[str] = Field(default_factory=list, description="other URLs developers' clones of this repo "
                               "use (what Tabby sends as git_url, e.g. git@host:org/x.git); the gateway also "
                               "matches `url` and the git remotes of `path`")
    branches: list[str] = Field(default_factory=lambda: ["HEAD"], min_length=1)
    languages: list[str] | None = Field(None, description="keep only these languages (default: all known)")
    seed_from_package: str | None = Field(
        None, description="if path does not exist, build a sample git repo there from this installed package")
    seed_company_demo: CompanyDemoSettings | None = Field(
        None, description="if path does not exist, generate the company demo repo there (deterministic: the same "
        "seed gives the same commits); an existing path is used as it is")

    @model_validator(mode="after")
    def _one_source(self) -> RepoSettings:
        if not self.path and not self.url:
            raise ValueError(f"repo '{self.name}': set `path` (a local git repo) or `url` (a clone URL)")
        if self.seed_company_demo is not None and self.seed_from_package:
            raise ValueError(f"repo '{self.name}': `seed_company_demo` and `seed_from_package` both say what to "
                             "build at `path`; keep one")
        if (self.seed_company_demo is not None or self.seed_from_package) and (self.url or not self.path):
            raise ValueError(f"repo '{self.name}': a seeded sample repo is built at `path`; set `path` and remove "
                             "`url`")
        return self


class IngestSettings(_Model):
    """How git_heads_sensor polls the repos (fetching `url:` mirrors) and retries failed snapshot runs."""
    fetch_workers: int = Field(4, ge=1, description="repos fetched at once, in a thread pool of the code server")
    fetch_timeout_s: float = Field(600, gt=0, description="one repo's clone / fetch is killed after this long "
                                   "(the sensor and repo_snapshots both use it)")
    tick_wait_s: float = Field(20, ge=0, description="how long a sensor tick waits for the fetches it started; "
                               "the rest finish in the background and are picked up by a later tick. Keep it "
                               "well under Dagster's sensor timeout (60 s by default)")
    max_fetches_per_tick: int = Field(256, ge=1, description="repos a tick starts fetching at most (the ones "
                                      "polled longest ago first); the others are polled on later ticks")
    backoff_base_s: float = Field(60, ge=0, description="a repo that failed to fetch is not polled again for "
                                  "this long, doubled after every further failure; reset by a success")
    backoff_max_s: float = Field(3600, ge=0, description="the longest wait between polls of a failing repo")
    max_run_retries: int = Field(3, ge=0, description="a snapshot run that failed is requested again this many "
                                 "times for the same heads (the next commit starts over)")
    run_start_grace_s: float = Field(900, gt=0, description="a requested run that never appeared in the "
                                     "instance after this long (a dropped request) is requested again")

    @model_validator(mode="after")
    def _backoff_order(self) -> IngestSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"ingest.backoff_max_s ({self.backoff_max_s}) must be >= ingest.backoff_base_s "
                             f"({self.backoff_base_s})")
        return self


class ChecksSettings(_Model):
    gx_sample_rows: int = Field(10_000, ge=1, description="great-expectations validates at most this many rows "
                                "of an asset (an evenly spread, deterministic sample; the metadata says how "
                                "many); the same rules still run on every row in polars, so a bad row outside "
                                "the sample fails the check too")


class QualitySettings(_Model):
    min_lines: int = Field(10, ge=0)
    max_lines: int = Field(500, ge=1)
    long_file_policy: Literal["drop", "truncate"] = "truncate"
    max_line_length: int = Field(1000, ge=10)
    max_mean_line_length: float = Field(100.0, gt=0)
    min_alnum_fraction: float = Field(0.25, ge=0, le=1)
    max_file_bytes: int = Field(1_000_000, ge=1)
    exclude_tests: bool = False
    exclude_globs: list[str] = Field(default_factory=lambda: [
        "*.min.js", "*.min.css", "*generated*", "*_pb2.py", "*_pb2_grpc.py",
        "*/vendor/*", "vendor/*", "*/third_party/*", "third_party/*", "*/node_modules/*", "node_modules/*",
        "*/site-packages/*", "*.lock", "package-lock.json", "yarn.lock", "poetry.lock", "Cargo.lock",
        "go.sum", "pnpm-lock.yaml", "*.map",
    ])


class ScrubSettings(_Model):
    entropy_threshold: float = Field(3.5, ge=0, description="bits/char for keyword-anchored generic secrets")
    redact_emails: bool = True
    redact_ips: bool = True
    redact_phones: bool = True
    redact_hosts: bool = True
    internal_domains: list[str] = Field(default_factory=list, description="the company's own DNS domains "
                                        "(e.g. acme.io, int.acme.net): host names under them are redacted as <HOST>")
    private_tlds: list[str] = Field(default_factory=lambda: ["internal", "corp", "lan", "local", "intra",
                                                             "intranet"],
                                    description="suffixes that only exist inside a company network")
    disabled_rules: list[str] = Field(default_factory=list, description="placeholder kinds not to redact (e.g. "
                                      "a rule with false positives on your code); the blocking re-scan still runs")


class DedupSettings(_Model):
    backend: Literal["rensa", "datasketch"] = "rensa"
    num_perm: int = Field(256, ge=16)
    shingle_size: int = Field(2, ge=1, description="word-token shingle length; 2 with code_aware (3 on raw "
                              "words): tuned on the hard near-duplicate set's tuning slice (benchmarks/dedup.py)")
    threshold: float = Field(0.7, gt=0, lt=1)
    lsh_shards: int = Field(1, ge=1, description="split the LSH bands into this many independent shards "
                            "(same result; each shard needs only the signatures)")
    code_aware: bool = Field(True, description="compare files' code, their comments and docstrings only at "
                             "prose_weight (a copy with reworded prose or a new header is still a copy)")
    prose_weight: float = Field(0.15, ge=0, le=1, description="with code_aware: the hashed fraction of comment "
                                "and docstring shingles compared (0: code only, which calls distinct files that "
                                "share scaffolding and differ in their docs copies; 1: prose counts as code)")
    normalisation_version: int = Field(2, description="version of the code-aware normalisation "
                                       "(code_text.NORMALISATION_VERSION, kept equal by a test): part of the "
                                       "settings identity, so cached signatures change with it. Leave the default")
    decontaminate: bool = True
    decontam_ngram: int = Field(13, ge=4, description="token n-gram length for eval-prompt overlap")


class DataSettings(_Model):
    """How the data stages run on one machine (Kubernetes fans out per repo partition on top of this)."""

    workers: int = Field(1, ge=1, description="processes for the per-file stages (clean, scrub, leftover "
                         "re-scan, signatures) over batches of one partition's files; 1: in this process "
                         "(fastest on the 2-core embedded run: a pool's start-up costs more than it saves there)")
    cache_dir: str | None = Field(None, description="per-file stage results (Parquet shards by stage, settings "
                                  "hash and repo); default: <home>/data/blob_cache. Safe to delete")


class DatasetSettings(_Model):
    seq_len: int = Field(256, ge=16)
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="> 0: the adapter's validation loss "
                                       "against the base's is how every run proves it learned")
    holdout_split: Literal["time", "hash"] = Field(
        "time", description="which files are held out of training for the company benchmark: time (the files "
        "the newest commits changed, per repo, by last commit date from git) or hash (a stable hash of "
        "repo:path). A repo whose files all share one date, or whose newest date covers more than half of "
        "them, falls back to hash (named in the manifest)")
    holdout_fraction: float = Field(0.05, ge=0, lt=1, description="share of each repo's files held out for the "
                                    "company benchmark (time: the newest; files of one date stay together)")
    holdout_since: datetime | None = Field(None, description="time split only: hold out every file last "
                                           "changed at or after this date (ISO, UTC when no zone is given) "
                                           "instead of the newest holdout_fraction")
    fim_rate: float = Field(0.0, ge=0, le=1)
    tokenizer_vocab_size: int = Field(4096, ge=300)
    seed: int = Field(0, description="seeds the FIM draws; the splits are by date and content hash, not seeded")

    @field_validator("holdout_since")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _since_needs_time(self) -> DatasetSettings:
        if self.holdout_since is not None and self.holdout_split != "time":
            raise ValueError("dataset.holdout_since applies to the time split: set dataset.holdout_split: time "
                             "or remove holdout_since")
        return self


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


class EvalSettings(_Model):
    humaneval_subset: int = Field(164, ge=0, description="HumanEval tasks scored, drawn once by "
                                  "humaneval_seed (the same tasks every run); 0: all 164")
    humaneval_seed: int = Field(0, description="which tasks a subset holds (part of the benchmark's identity)")
    samples_per_task: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(64, ge=1)
    generation_batch_size: int = Field(16, ge=1, description="prompts per generate() call (local models, "
                                       "shortest prompts first)")
    k: list[int] = Field(default_factory=lambda: [1])
    timeout_s: float = Field(5.0, gt=0)
    workers: int = Field(0, ge=0, description="0: number of cores")
    holdout_files: int = Field(64, ge=0, description="held-out company files scored for likelihood")
    holdout_chars: int = Field(2000, ge=64, description="characters of each held-out file scored")
    gate_margin: float = Field(0.02, ge=0, description="allowed regression of pass@1 / company score "
                               "(absolute; relative on held-out perplexity per character)")
    gate_floor: float = Field(0.2, ge=0, le=1, description="company score below which (on both sides) the gate "
                              "decides on held-out bits per character instead: generation of a tiny model is noise")
    gate_confidence: float = Field(0.95, gt=0.5, lt=1, description="two-sided confidence of the paired bootstrap "
                                   "interval; the gate passes only if its worse end is within the margin")
    gate_bootstrap_samples: int = Field(2000, ge=100, description="paired bootstrap resamples")
    gate_seed: int = Field(0, description="seed of the bootstrap (the verdict is reproducible)")
    gate_min_tasks: int = Field(30, ge=1, description="fewer paired tasks than this (pass@1, company score): "
                                "the comparison fails, not enough evidence")
    gate_min_files: int = Field(10, ge=1, description="fewer paired held-out files than this: the likelihood "
                                "comparison fails (a per-file bits-per-char difference is far less noisy "
                                "than a pass/fail)")
    company_tasks_file: str | None = Field(None, description="hand-written function tasks with tests (JSONL, seed "
                                           "format), relative to this settings file: the benchmark's execution "
                                           "part (sandboxed pass rate, reported); also fed to decontamination")
    company_per_stratum: int = Field(10, ge=1, description="FIM tasks drawn per (kind, cross-file / in-file) "
                                     "stratum from the held-out files, seeded by company_seed (5 kinds x 2 "
                                     "labels: up to 10x this many tasks)")
    company_seed: int = Field(0, description="seeds the draw of the FIM tasks (part of the benchmark's identity)")
    company_max_tasks: int = Field(100, ge=0, description="FIM tasks at most after the per-stratum draw, taken "
                                   "in turn from each stratum (0: no cap); >= gate_min_tasks for a decisive gate")
    company_max_new_tokens: int = Field(256, ge=1, description="caps the per-kind generation limits of the FIM "
                                        "tasks (single line 48 ... function body 256 tokens)")
    company_prefix_chars: int = Field(3000, ge=0, description="characters of the file before the cursor in a "
                                      "FIM prompt (whole lines, nearest kept)")
    company_suffix_chars: int = Field(1000, ge=0, description="characters after the cursor in a FIM prompt")
    company_context_chars: int = Field(2000, ge=0, description="budget of the retrieved repository context the "
                                       "'with context' score puts before the prefix")
    isolation: Literal["full", "reduced", "any"] = Field(
        "full", description="sandbox for generated code: full (namespaces; refuse to score without them), "
        "reduced (no namespaces, on purpose), any (the strongest the machine gives)")


class ServingSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    backend: Literal["transformers", "vllm"] = "transformers"
    vllm_url: str | None = None
    vllm_venv: str = Field(".venv-vllm", description="the vLLM venv `codellm vllm start` runs (relative: to the "
                           "working directory, then the checkout); scripts/vllm-venv.sh builds it")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default: sqlite:///<home>/store.db (WAL)")
    rate_limit_per_minute: int = Field(600, ge=1)
    max_context_tokens: int = Field(2048, ge=16)
    sticky_window_s: int = Field(3600, ge=1)
    canary_timeout_s: float = Field(30.0, gt=0)
    shadow_version: str | None = None
    micro_batch_ms: float = Field(4.0, ge=0, description="transformers backend: collect concurrent requests "
                                  "this long into one batch; 0: no batching")
    max_batch_size: int = Field(8, ge=1)
    threads: int = Field(1, ge=0, description="torch CPU threads of the transformers backend; 0: all cores "
                         "(1 is fastest for small models on a shared machine: batching gives the parallelism)")
    assess_fraction: float = Field(1.0, ge=0, le=1, description="share of completions the buggy-code "
                                   "detector checks, off the request path")
    readiness_interval_s: float = Field(30.0, gt=0, description="/readyz re-checks a tiny generation this often")
    route_refresh_s: float = Field(1.0, gt=0, description="re-read the routing table from the store this often")
    ide_context_chars: int = Field(1536, ge=0, description="IDE protocols (Tabby segments, llama.cpp "
                                   "input_extra): characters of declarations/snippets put before the prefix")
    repo_context_tokens: int = Field(512, ge=0, description="tokens (the served model's tokenizer; ~3 chars "
                                     "each without one) of retrieved repository context (the code_index asset) "
                                     "put before the prompt of a completion that names its repo (whole 20-line "
                                     "snippets, ~300 tokens each: at 256 only a third of requests got one, "
                                     "benchmarks/repo_context.py); 0: off")
    code_index_dir: str | None = Field(None, description="where the gateway reads the code indexes "
                                       "(current.json); default: <home>/data/code_index")


class PackagingSettings(_Model):
    formats: list[Literal["merged", "gguf", "bnb4"]] = Field(
        default_factory=lambda: ["merged", "gguf"], description="what `packaged_model` builds for each new "
        "version: merged (safetensors, transformers/vLLM/TGI), gguf (llama.cpp/Ollama), bnb4 (4-bit NF4, needs "
        "a CUDA GPU and bitsandbytes)")
    gguf_type: Literal["f32", "f16", "q8_0"] = Field("q8_0", description="GGUF tensor type (norms stay f32)")
    out_dir: str | None = Field(None, description="where artifacts are written; default: <home>/models/packaged")
    upload: bool = Field(True, description="also upload each artifact into its version's MLflow run "
                         "(off: only tag the version with the local path and sha256, e.g. for 14 GB merges)")


class CanaryThresholds(_Model):
    max_error_rate: float = 0.05
    max_p95_latency_s: float = Field(3.0, description="p95 per request: only for requests without a token count")
    max_p95_latency_per_token_s: float = Field(0.25, gt=0, description="p95 of latency / generated tokens")
    max_buggy_code_rate: float = 0.10
    min_requests: int = Field(50, ge=1, description="also the evidence a rollback needs (bar hard failures)")
    min_users: int = 3
    hard_error_rate: float = Field(0.5, gt=0, le=1, description="error rate that rolls back at once ...")
    hard_min_errors: int = Field(5, ge=1, description="... once at least this many requests failed")
    no_traffic_alert_minutes: int = Field(30, ge=1, description="alert when a canary served nothing this long")
    verify_timeout_s: float = Field(120.0, gt=0, description="deployment: how long a real completion through "
                                    "the gateway may take to come from the new version before it fails")


class ProductionThresholds(_Model):
    min_acceptance_rate: float = 0.75
    max_buggy_code_rate: float = 0.05
    max_p95_latency_s: float = 2.0
    min_requests: int = 50


class MonitoringSettings(_Model):
    window_minutes: int = Field(30, ge=1)
    strategy: Literal["canary", "bluegreen"] = "canary"
    canary_steps: list[int] = Field(default_factory=lambda: [5, 25, 100])
    canary: CanaryThresholds = CanaryThresholds()
    production: ProductionThresholds = ProductionThresholds()
    retrain_cooldown_minutes: int = Field(360, ge=0)
    feedback_volume_threshold: int = Field(1000, ge=1)
    sensor_interval_s: int = Field(60, ge=5)
    retention_days: int = Field(30, ge=1, description="requests, feedback and shadow results older than this are "
                                "deleted from the store by the store_retention job (daily)")
    feedback_max_examples_per_key: int = Field(200, ge=1, description="training examples one API key may "
                                               "contribute per feedback_cap_window_hours; the rest are dropped")
    feedback_cap_window_hours: int = Field(24, ge=1)

    @field_validator("canary_steps")
    @classmethod
    def _steps_increase(cls, v: list[int]) -> list[int]:
        if len(v) < 2 or v[-1] != 100 or any(b <= a for a, b in zip(v, v[1:])) or v[0] <= 0:
            raise ValueError("canary_steps must start below 100, increase strictly and end at 100, e.g. "
                             "[5, 25, 100] (for an all-at-once switch use monitoring.strategy: bluegreen)")
        return v


class SmtpSettings(_Model):
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "codellm@localhost"
    recipients: list[str] = Field(default_factory=list)


class AlertSettings(_Model):
    webhook_url: str | None = None
    smtp: SmtpSettings | None = None
    ui_base_url: str = "http://127.0.0.1:3000"


# What a token looks like (GitHub ghp_/github_pat_, GitLab glpat-, Atlassian ATATT…, Slack xox…, a JWT, or a
# long run of mixed letters and digits): token_env holding one means the token itself was pasted into the file.
_TOKEN_LOOKING = re.compile(r"^(gh[pousr]_|github_pat_|glpat-|ATATT|xox[abposr]-|eyJ)|(?=.*[a-z])(?=.*\d).{20,}")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def _env_name(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    if _TOKEN_LOOKING.search(value):
        raise ValueError(f"{where} must be the NAME of an environment variable that holds the secret (e.g. "
                         "GITHUB_TOKEN), not the secret itself: take the value out of the file, rotate it (it was "
                         "in a config file), and put it in the environment (Kubernetes: a Secret -> env)")
    if not _ENV_NAME.match(value):
        raise ValueError(f"{where}: '{value}' is not an environment variable name (upper-case letters, digits, _)")
    return value


class SourceSettings(_Model):
    """One non-code source: a partition of `source_documents`. The token is read from the environment variable
    NAMED by `token_env` when the partition runs; it is never written in the settings file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="partition key; letters, digits, . _ -")
    kind: Literal["github_reviews", "gitlab_reviews", "confluence", "jira"]
    base_url: str = Field(pattern=r"^https?://", description="API root: https://api.github.com (GHE: "
                          "https://HOST/api/v3), https://HOST/api/v4 (GitLab), https://SITE.atlassian.net/wiki "
                          "(Confluence Cloud; Server: its context root), https://SITE.atlassian.net (Jira)")
    repo: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$", description="github_reviews: owner/name")
    project: str | None = Field(None, description="gitlab_reviews: numeric id or group/path of the project")
    projects: list[str] = Field(default_factory=list, description="jira: project keys (ABC, OPS)")
    space: str | None = Field(None, description="confluence: the space key")
    token_env: str = Field(description="NAME of the environment variable holding the API token (never the token)")
    user_env: str | None = Field(None, description="confluence / jira Cloud: NAME of the variable holding the "
                                 "account e-mail (basic auth with the API token); unset: the token is a bearer PAT")
    resolved_only: bool = Field(False, description="reviews: only threads marked resolved")
    since: str | None = Field(None, description="first run: only items updated at or after this ISO date")
    overlap_minutes: int = Field(0, ge=0, description="re-list items updated this long before the cursor (Jira "
                                 "reads JQL dates in the API user's time zone: set it to the zone's offset, or "
                                 "use a UTC user); unchanged versions are skipped, not re-fetched")
    page_size: int = Field(50, ge=1, le=1000)
    max_items: int | None = Field(None, ge=1, description="at most this many changed items per run (the rest next run)")
    linked_commits: bool = Field(True, description="jira: read each changed issue's remote links for commits")
    jira_api: Literal["v2", "v3"] = Field("v2", description="jira: v2 = /rest/api/2/search, startAt/total (Server, "
                                         "Data Center); v3 = Jira Cloud's /rest/api/3/search/jql, nextPageToken, "
                                         "rich-text (ADF) bodies")
    timeout_s: float = Field(30.0, gt=0, description="per request (connect and read)")
    max_retries: int = Field(5, ge=0, description="retries of a rate-limited (429 / 403 rate limit), 5xx or "
                             "timed-out request")
    max_retry_wait_s: float = Field(120.0, gt=0, description="cap on one wait (Retry-After or backoff)")

    _REQUIRED: ClassVar[dict[str, str]] = {"github_reviews": "repo", "gitlab_reviews": "project",
                                           "confluence": "space", "jira": "projects"}

    @field_validator("token_env", "user_env")
    @classmethod
    def _is_env_name(cls, v: str | None, info) -> str | None:
        return _env_name(v, f"sources.connectors[].{info.field_name}")

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceSettings:
        need = self._REQUIRED[self.kind]
        if not getattr(self, need):
            raise ValueError(f"source '{self.name}' (kind {self.kind}) needs `{need}`")
        return self


def _document_quality() -> QualitySettings:
    # Prose is not code: a paragraph is one long line, and a short ticket is still worth keeping.
    return QualitySettings(min_lines=3, max_lines=2000, max_line_length=20000, max_mean_line_length=2000,
                           min_alnum_fraction=0.25, exclude_globs=[])


class SourcesSettings(_Model):
    connectors: list[SourceSettings] = Field(default_factory=list, description="none by default")
    poll_minutes: int = Field(60, ge=1, description="sources_sensor asks each source for changes this often")
    quality: QualitySettings = Field(default_factory=_document_quality, description="the quality rules for "
                                     "documents (same rules as code, limits suited to prose)")

    @model_validator(mode="after")
    def _unique(self) -> SourcesSettings:
        names = [c.name for c in self.connectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; duplicated: {dupes}")
        return self


class Settings(_Model):
    home: str = Field("var", description="local state: dagster home, mlflow store, data, models, stores")
    repos: list[RepoSettings] = Field(default_factory=list)
    ingest: IngestSettings = IngestSettings()
    checks: ChecksSettings = ChecksSettings()
    quality: QualitySettings = QualitySettings()
    scrub: ScrubSettings = ScrubSettings()
    dedup: DedupSettings = DedupSettings()
    data: DataSettings = DataSettings()
    dataset: DatasetSettings = DatasetSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    registry: RegistrySettings = RegistrySettings()
    eval: EvalSettings = EvalSettings()
    serving: ServingSettings = ServingSettings()
    packaging: PackagingSettings = PackagingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    alerts: AlertSettings = AlertSettings()
    sources: SourcesSettings = Field(default_factory=SourcesSettings, description="non-code sources: "
                                     "review comments, Confluence, Jira")

    # Where the file was loaded from; relative paths resolve against it. Not part of the YAML.
    base_dir: str = Field(default_factory=lambda: str(Path.cwd()), exclude=True)
    config_file: str | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_repo_names(self) -> Settings:
        names = [r.name for r in self.repos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"repo names must be unique; duplicated: {dupes}")
        clash = sorted(set(names) & {c.name for c in self.sources.connectors})
        if clash:   # both become the `repo` column of the corpus
            raise ValueError(f"a source may not share a repo's name: {clash}")
        return self

    # ---- derived paths -------------------------------------------------------------------------
    def resolve(self, p: str | os.PathLike[str]) -> Path:
        path = Path(os.path.expanduser(str(p)))
        return path if path.is_absolute() else (Path(self.base_dir) / path).resolve()

    @property
    def home_dir(self) -> Path:
        return self.resolve(self.home)

    @property
    def data_dir(self) -> Path:
        return self.home_dir / "data"

    @property
    def blob_cache_dir(self) -> Path:
        return self.resolve(self.data.cache_dir) if self.data.cache_dir else self.data_dir / "blob_cache"

    @property
    def code_index_dir(self) -> Path:
        """The per-repo code indexes (core/data/code_index_store.py) the gateway and the benchmark read."""
        return self.resolve(self.serving.code_index_dir) if self.serving.code_index_dir else \
            self.data_dir / "code_index"

    @property
    def models_dir(self) -> Path:
        return self.home_dir / "models"

    @property
    def dagster_home(self) -> Path:
        return self.home_dir / "dagster"

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.registry.tracking_uri or f"sqlite:///{self.home_dir / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.resolve(self.registry.artifact_root) if self.registry.artifact_root else \
            self.home_dir / "mlflow" / "artifacts"

    @property
    def packaged_dir(self) -> Path:
        return self.resolve(self.packaging.out_dir) if self.packaging.out_dir else self.models_dir / "packaged"

    @property
    def store_url(self) -> str:
        return self.serving.store_url or f"sqlite:///{self.home_dir / 'store.db'}"

    def repo(self, name: str) -> RepoSettings:
        for r in self.repos:
            if r.name == name:
                return r
        raise SettingsError(f"no repo named '{name}' in settings; configured: {[r.name for r in self.repos]}")

    def source(self, name: str) -> SourceSettings:
        for c in self.sources.connectors:
            if c.name == name:
                return c
        raise SettingsError(f"no source named '{name}' in sources.connectors; configured: "
                            f"{[c.name for c in self.sources.connectors]}")

    def section_hash(self, *sections: str) -> str:
        """A stable hash of some sections: cache keys (e.g. rebuild the base model only when it changes)."""
        dumped = {s: getattr(self, s).model_dump(mode="json") for s in sections}
        return hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]


def _apply_env_overrides(raw: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    if environ.get("CODELLM_HOME"):
        raw["home"] = environ["CODELLM_HOME"]
    for key, value in environ.items():
        if not key.startswith("CODELLM__"):
            continue
        parts = [p.lower() for p in key[len("CODELLM__"):].split("__") if p]
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SettingsError(f"environment override {key}: '{p}' is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def find_config(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Path:
    """The settings file in use: ``path`` > ``$CODELLM_CONFIG`` > ``./codellm.yaml`` in the current directory."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get("CODELLM_CONFIG")
    cfg_path = Path(explicit or CONFIG_FILE_NAME).expanduser().resolve()
    if cfg_path.is_file():
        return cfg_path
    if explicit:
        raise SettingsError(f"settings file {cfg_path} does not exist; set CODELLM_CONFIG (or --config) to an "
                            "existing file")
    raise SettingsError(f"no settings file: {cfg_path} does not exist. Run from the directory that holds "
                        f"{CONFIG_FILE_NAME}, or set CODELLM_CONFIG=/path/to/{CONFIG_FILE_NAME}")


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Load and validate settings from :func:`find_config`'s file, then ``CODELLM__SECTION__KEY`` overrides."""
    environ = dict(os.environ if environ is None else environ)
    cfg_path = find_config(path, environ)
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SettingsError(f"{cfg_path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise SettingsError(f"{cfg_path}: the top level must be a mapping of sections (repos:, model:, …)")
    raw = _apply_env_overrides(raw, environ)
    try:
        settings = Settings(**raw)
    except ValidationError as e:
        lines = [f"{cfg_path}: invalid settings:"]
        for err in e.errors():
            where = ".".join(str(x) for x in err["loc"])
            lines.append(f"  - {where}: {err['msg']}")
        raise SettingsError("\n".join(lines)) from None
    settings.base_dir = str(cfg_path.parent)
    settings.config_file = str(cfg_path)
    return settings


class ClusterEnv(BaseModel):
    """The cluster facts the Helm chart sets as environment variables on the code location and its step pods
    (k8s/helm/dagster-values.yaml). They are read while the asset definitions are being declared, before any
    settings file is chosen, so they are not keys of codellm.yaml; this is the one place that reads them."""

    model_config = ConfigDict(extra="forbid")

    executor: Literal["default", "k8s"] = Field("default", description="CODELLM_DAGSTER_EXECUTOR: 'k8s' = "
                                                "dagster-k8s's k8s_job_executor, one pod per step")
    gpu_image: str | None = Field(None, description="CODELLM_GPU_IMAGE: the CUDA image for GPU steps")
    max_concurrent_steps: int | None = Field(None, ge=1, description="CODELLM_K8S_MAX_CONCURRENT_STEPS")

    ENV_NAMES: ClassVar[dict[str, str]] = {"executor": "CODELLM_DAGSTER_EXECUTOR", "gpu_image": "CODELLM_GPU_IMAGE",
                 "max_concurrent_steps": "CODELLM_K8S_MAX_CONCURRENT_STEPS"}

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ClusterEnv:
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for field, name in cls.ENV_NAMES.items():
            value = (env.get(name) or "").strip()
            if value:
                raw[field] = value.lower() if field == "executor" else value
        if raw.get("executor") in ("multiprocess", "in_process"):
            raw["executor"] = "default"
        try:
            return cls(**raw)
        except ValidationError as e:
            bad = "; ".join(f"{cls.ENV_NAMES[str(err['loc'][0])]}: {err['msg']}" for err in e.errors())
            raise ValueError(f"cluster environment: {bad}") from None

