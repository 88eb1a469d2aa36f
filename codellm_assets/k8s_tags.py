"""Per-asset Kubernetes settings for the `k8s_job_executor`: each step runs as its own pod, sized for its work.

On a laptop these tags are inert (the default executor ignores them). On the cluster the code location sets
``CODELLM_DAGSTER_EXECUTOR=k8s`` (see ``k8s/helm/dagster-values.yaml``): then :func:`dagster_executor`
returns dagster-k8s's ``k8s_job_executor`` and every step of a run becomes a Kubernetes Job whose pod gets
the ``dagster-k8s/config`` tag of its asset, merged (deep) over what the run launcher and the code location
already set (image, env, the shared data volume). A backfill of per-repo partitions is one run per
partition, so ``repo_snapshots`` / ``clean_files`` / ``scrubbed_corpus`` fan out across pods, bounded by the
queued run coordinator's ``maxConcurrentRuns``.

GPU steps (``lora_adapter``, ``eval_scores``) ask for ``nvidia.com/gpu: 1``, land on GPU nodes through a
node selector + toleration, and run in the GPU image (CUDA torch) named by ``CODELLM_GPU_IMAGE``; the code
location image ships the CPU torch wheel, which would leave the GPU idle.

Usage (the lead wires it): ``@dg.asset(op_tags=k8s_tags_for("lora_adapter"), ...)`` and
``dg.Definitions(..., executor=dagster_executor())``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import dagster as dg

from codellm_assets.settings import ClusterEnv

K8S_CONFIG_TAG = "dagster-k8s/config"

# GPU nodes: the label NVIDIA's GPU feature discovery (GPU operator) puts on them, and the taint most managed
# GPU node pools carry so that CPU pods stay off the expensive nodes.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def _resources(cpu: str, memory: str, memory_limit: str | None = None, gpus: int = 0) -> dict[str, Any]:
    """Requests = what the scheduler reserves; limit memory (OOM-kill beats a starved node), not CPU."""
    limits: dict[str, Any] = {"memory": memory_limit or memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus   # extended resources: limit only (request defaults to it)
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": limits}


def _cpu_step(cpu: str, memory: str, memory_limit: str | None = None) -> dict[str, Any]:
    return {"container_config": {"resources": _resources(cpu, memory, memory_limit)}}


def _gpu_step(cpu: str, memory: str, memory_limit: str, gpus: int = 1) -> dict[str, Any]:
    """A GPU step; ``cpu`` / ``memory`` / ``memory_limit`` are per GPU (8 cores and ~48 GiB feed one GPU's
    data loading and optimizer state), scaled by ``gpus``."""
    def times(quantity: str) -> str:
        number = re.fullmatch(r"(\d+)(\D*)", quantity)
        return f"{int(number[1]) * gpus}{number[2]}" if number else quantity

    return {
        "container_config": {
            "resources": _resources(times(cpu), times(memory), times(memory_limit), gpus=gpus),
            # PyTorch DataLoader workers and NCCL use shared memory; the container default (64 MiB) is too small.
            "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
        },
        "pod_spec_config": {
            "node_selector": dict(GPU_NODE_SELECTOR),
            "tolerations": copy.deepcopy(GPU_TOLERATIONS),
            "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": "16Gi"}}],
        },
    }


# Per-GPU sizes of the GPU steps (a step with N GPUs gets N times these); see _gpu_step.
GPU_STEP_SIZES: dict[str, tuple[str, str, str]] = {"lora_adapter": ("8", "48Gi", "96Gi"),
                                                   "eval_scores": ("8", "32Gi", "64Gi")}


# The `dagster-k8s/config` value per asset name (dagster-k8s's UserDefinedDagsterK8sConfig fields).
K8S_OP_TAGS: dict[str, dict] = {
    # data: one pod per repo partition; git + Parquet of one repo
    "repo_snapshots": _cpu_step("500m", "1Gi", "4Gi"),
    "clean_files": _cpu_step("500m", "1Gi", "4Gi"),
    "scrubbed_corpus": _cpu_step("1", "2Gi", "6Gi"),             # detect-secrets + regexes over every file
    # one pod per non-code source: paged HTTP reads, then the same quality rules + scrubber as code
    "source_documents": _cpu_step("250m", "512Mi", "2Gi"),
    "source_corpus": _cpu_step("1", "1Gi", "4Gi"),
    # all repos at once: MinHash signatures + LSH index of the whole corpus live in memory
    "deduped_corpus": _cpu_step("4", "16Gi", "32Gi"),
    "training_dataset": _cpu_step("4", "8Gi", "16Gi"),           # tokenizer batch-encode uses every core
    "code_index": _cpu_step("1", "2Gi", "8Gi"),                  # BM25 + symbol tables, one repo at a time
    "company_benchmark": _cpu_step("1", "2Gi", "4Gi"),
    "base_model": _cpu_step("2", "8Gi", "32Gi"),                 # resolves / copies a real model's weights
    # training and generation-heavy evaluation: one GPU each
    "lora_adapter": _gpu_step(*GPU_STEP_SIZES["lora_adapter"]),
    "eval_scores": _gpu_step(*GPU_STEP_SIZES["eval_scores"]),
    # bookkeeping steps: MLflow calls, routing-table writes, a query of the feedback store
    "registered_model": _cpu_step("250m", "1Gi", "4Gi"),
    "deployed_endpoint": _cpu_step("250m", "512Mi", "2Gi"),
    # merges adapter into base and writes safetensors + GGUF: the whole model (fp16) in memory, twice at peak
    "packaged_model": _cpu_step("2", "8Gi", "48Gi"),
    "feedback_dataset": _cpu_step("1", "2Gi", "4Gi"),
    # observations: a `git rev-parse` per repo, a count in the feedback store
    "git_heads": _cpu_step("250m", "256Mi", "1Gi"),
    "feedback_events": _cpu_step("250m", "256Mi", "1Gi"),
}

GPU_ASSETS = frozenset(name for name, cfg in K8S_OP_TAGS.items()
                       if "nvidia.com/gpu" in cfg["container_config"]["resources"]["limits"])

# Run-level tag for jobs that include a GPU asset (`codellm_full`, `retrain`): the queued run coordinator
# (k8s/helm/dagster-values.yaml, tagConcurrencyLimits) lets one such run hold the GPUs at a time.
GPU_RUN_TAGS: dict[str, str] = {"codellm/uses-gpu": "true"}


def k8s_tags_for(asset_name: str, environ: Mapping[str, str] | None = None, *,
                 gpus: int | None = None) -> dict[str, dict]:
    """``{"dagster-k8s/config": {...}}`` for ``asset_name``: pass it as the asset's ``op_tags``.

    ``gpus`` (GPU assets only): the step pod's GPU count, e.g. ``training.distributed.nproc_per_node`` for
    ``lora_adapter`` (torchrun starts that many ranks in the pod); CPU and memory scale with it.

    GPU assets also get ``container_config.image`` from ``$CODELLM_GPU_IMAGE`` when it is set (the cluster
    sets it; elsewhere the step keeps the code location's image). Unknown names raise ``KeyError`` listing
    the known ones, so a renamed asset cannot silently lose its pod sizing.
    """
    if asset_name not in K8S_OP_TAGS:
        raise KeyError(f"no Kubernetes step settings for asset '{asset_name}'; "
                       f"add it to K8S_OP_TAGS in {__name__} (known: {sorted(K8S_OP_TAGS)})")
    if gpus is not None and asset_name not in GPU_STEP_SIZES:
        raise ValueError(f"'{asset_name}' is not a GPU step; gpus= applies to {sorted(GPU_STEP_SIZES)}")
    if gpus is not None and gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    config = copy.deepcopy(K8S_OP_TAGS[asset_name] if gpus in (None, 1)
                           else _gpu_step(*GPU_STEP_SIZES[asset_name], gpus=gpus))
    gpu_image = ClusterEnv.from_environ(environ).gpu_image
    if asset_name in GPU_ASSETS and gpu_image:
        config["container_config"]["image"] = gpu_image
    return {K8S_CONFIG_TAG: config}


def dagster_executor(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor for this environment: dagster-k8s's ``k8s_job_executor`` when ``$CODELLM_DAGSTER_EXECUTOR``
    is ``k8s`` (one pod per step), else ``None`` (keep Dagster's default multiprocess executor).

    Step pods inherit the run's image, env, secrets and volumes from the K8sRunLauncher and the code location
    (``includeConfigInLaunchedRuns``); the per-asset tags above add resources and GPU placement.
    """
    env = ClusterEnv.from_environ(environ)
    if env.executor == "default":
        return None
    from dagster_k8s import k8s_job_executor  # imported here: laptops never need the kubernetes client

    config: dict[str, Any] = {}
    if env.max_concurrent_steps:
        config["max_concurrent"] = env.max_concurrent_steps
    return k8s_job_executor.configured(config, name="k8s_job_executor") if config else k8s_job_executor
