"""Settings of serving and after: the gateway, packaging, monitoring (canary / production thresholds) and alerts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from codellm_assets.settings.base import _Model


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
                                     "put before the prompt of a completion that names its repo (20-line "
                                     "snippets, ~300 tokens each, the last one cut to its first lines that fit; "
                                     "at 256 whole snippets only a third of requests got one, "
                                     "benchmarks/repo_context.py); 0: off")
    token_healing: bool = Field(True, description="fill-in-the-middle: cut the prompt back to the cursor's "
                                "last visible character (its indentation, the space after `if `) and have the "
                                "completion write that whitespace first (core/data/fim.py heal_prefix); the "
                                "company benchmark scores the same way")
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

