"""Loaders and checkers behind test_k8s.py: manifests, Helm values, image references, Dockerfiles, secrets.

Kept out of the test module so each test reads as the claim it checks.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import kubernetes
import kubernetes_validate
import referencing
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config
from kubernetes_validate import utils as kv_utils

from codellm_assets import k8s_tags

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
DOCKER = ROOT / "docker"
VALUES = K8S / "helm" / "dagster-values.yaml"
K8S_VERSION = kv_utils.latest_version()

# Files that are no Kubernetes objects and need no config scanning: virtualenvs, caches, local state.
_SKIP_DIRS = {".git", ".venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache",
              "build", "dist", "mlruns"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def acceptance_manifests() -> list[Path]:
    """The files the acceptance script validates: *.yaml / *.yml under k8s/ except paths naming values/dashboard."""
    files = [p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml")]
    return sorted(p for p in files if "values" not in rel(p).lower() and "dashboard" not in rel(p).lower())


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def manifest_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p in acceptance_manifests() for d in load_docs(p)]


def find_doc(kind: str, name: str) -> dict:
    for _, doc in manifest_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise LookupError(f"no {kind} named {name} under k8s/")


def helm_values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every (path, value) in a nested dict/list structure, depth first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, (*path, i))


# ---- the Dagster chart's values keys this project relies on ----------------------------------------------------
# Pinned from the chart's values schema (helm/dagster/schema/schema/charts/*: DagsterHelmValues, Webserver, Daemon,
# RunLauncher/K8sRunLauncherConfig/RunK8sConfig, PostgreSQL, UserDeployment, Global, ExternalImage) and the
# templates that read runMonitoring / runRetries / computeLogManager, chart 1.13.x. No registry package ships the
# chart's values.schema.json, so the keys are pinned here: a key outside them is a typo the chart would ignore.
# "k8s:<type>" values are checked against the Kubernetes schema the chart's JSON schema $refs.
IMAGE = {"repository": None, "tag": None, "pullPolicy": None}
POD_COMMON = {
    "image": IMAGE, "env": "ANY", "envConfigMaps": "ANY", "envSecrets": "ANY", "labels": "ANY",
    "deploymentLabels": "ANY", "annotations": "ANY", "nodeSelector": "ANY", "affinity": "ANY",
    "tolerations": "k8s:toleration[]", "podSecurityContext": "k8s:podsecuritycontext",
    "securityContext": "k8s:securitycontext", "resources": "k8s:resourcerequirements",
    "readinessProbe": "k8s:probe", "livenessProbe": "k8s:probe", "startupProbe": "ANY", "schedulerName": None,
    "volumes": "k8s:volume[]", "volumeMounts": "k8s:volumemount[]",
}
CHART_KEYS = {
    "global": {"postgresqlSecretName": None, "dagsterHome": None, "serviceAccountName": None,
               "celeryConfigSecretName": None, "dagsterInstanceConfigMap": None},
    "generatePostgresqlPasswordSecret": None, "generateCeleryConfigSecret": None,
    "postgresql": {"enabled": None, "postgresqlHost": None, "postgresqlUsername": None, "postgresqlPassword": None,
                   "postgresqlDatabase": None, "postgresqlParams": "ANY", "postgresqlScheme": None,
                   "service": {"port": None}, "image": {"registry": None, **IMAGE}},
    "busybox": {"image": IMAGE},
    "telemetry": {"enabled": None},
    "ingress": {"enabled": None, "annotations": "ANY", "labels": "ANY", "ingressClassName": None,
                "dagsterWebserver": "ANY", "readOnlyDagsterWebserver": "ANY", "flower": "ANY"},
    "imagePullSecrets": "ANY", "serviceAccount": "ANY", "rabbitmq": "ANY", "redis": "ANY", "flower": "ANY",
    "scheduler": "ANY", "pythonLogs": "ANY", "migrate": "ANY", "retention": "ANY", "concurrency": "ANY",
    "dagsterWebserver": {**POD_COMMON, "replicaCount": None, "nameOverride": None, "pathPrefix": None,
                         "service": {"type": None, "port": None, "annotations": "ANY"}, "workspace": "ANY",
                         "enableReadOnly": None, "dbStatementTimeout": None, "dbPoolRecycle": None,
                         "logLevel": None},
    "dagsterDaemon": {**POD_COMMON, "enabled": None, "heartbeatTolerance": None,
                      "runCoordinator": {"enabled": None, "type": None, "config": {
                          "queuedRunCoordinator": {"maxConcurrentRuns": None, "dequeueIntervalSeconds": None,
                                                   "dequeueNumWorkers": None, "dequeueUseThreads": None,
                                                   "tagConcurrencyLimits": [{"key": None, "value": None,
                                                                             "limit": None}]},
                          "customRunCoordinator": "ANY"}},
                      "runMonitoring": {"enabled": None, "startTimeoutSeconds": None, "cancelTimeoutSeconds": None,
                                        "maxResumeRunAttempts": None, "pollIntervalSeconds": None,
                                        "freeSlotsAfterRunEndSeconds": None},
                      "runRetries": {"enabled": None, "maxRetries": None},
                      "sensors": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
                      "schedules": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None}},
    "dagster-user-deployments": {"enabled": None, "enableSubchart": None, "imagePullSecrets": "ANY",
                                 "deployments": [{**POD_COMMON, "name": None, "port": None,
                                                  "dagsterApiGrpcArgs": [None], "codeServerArgs": [None],
                                                  "includeConfigInLaunchedRuns": {"enabled": None},
                                                  "env": "k8s:envvar[]"}]},
    "runLauncher": {"type": None, "config": {
        "celeryK8sRunLauncher": "ANY", "customRunLauncher": "ANY",
        "k8sRunLauncher": {"image": IMAGE, "imagePullPolicy": None, "jobNamespace": None,
                           "loadInclusterConfig": None, "kubeconfigFile": None, "envConfigMaps": "ANY",
                           "envSecrets": "ANY", "envVars": [None], "volumeMounts": "k8s:volumemount[]",
                           "volumes": "k8s:volume[]", "labels": "ANY", "failPodOnRunFailure": None,
                           "resources": "k8s:resourcerequirements", "schedulerName": None,
                           "securityContext": "k8s:securitycontext",
                           "runK8sConfig": {"containerConfig": "ANY", "podSpecConfig": "ANY",
                                            "podTemplateSpecMetadata": "ANY", "jobSpecConfig": "ANY",
                                            "jobMetadata": "ANY"}}}},
    "computeLogManager": {"type": None, "config": {
        "customComputeLogManager": {"module": None, "class": None, "config": "ANY"},
        "s3ComputeLogManager": "ANY", "gcsComputeLogManager": "ANY", "azureBlobComputeLogManager": "ANY"}},
    "additionalInstanceConfig": "ANY",   # checked against Dagster's own instance schema below
}
# ---- Kubernetes schema fragments (what the chart's values schema $refs) ---------------------------------------
@functools.cache
def _fragment_validator(type_file: str) -> jsonschema.Draft202012Validator:
    base = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = kv_utils.schema_contents(f"{base}/{type_file}-v1.json", K8S_VERSION)
    defs = kv_utils.schema_contents(f"{base}/_definitions.json", K8S_VERSION)
    registry = referencing.Resource.from_contents(schema) @ (referencing.Resource.from_contents(defs)
                                                             @ referencing.Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_k8s_fragment(value: Any, type_file: str) -> None:
    """Validate a fragment (a Volume, a Probe, ...) against the strict Kubernetes schema ``<type_file>-v1.json``."""
    _fragment_validator(type_file).validate(value)


def check_against_pinned(value: Any, schema: Any, where: str = "") -> list[str]:
    """Problems of ``value`` against a pinned schema: dict = known keys, [item] = list of item, ``None`` = a
    scalar, ``ANY`` = free-form, ``"k8s:<type>"`` / ``"k8s:<type>[]"`` = a Kubernetes object (or list of them)."""
    if schema == "ANY":
        return []
    if isinstance(schema, str) and schema.startswith("k8s:"):
        type_file, many = schema[4:].removesuffix("[]"), schema.endswith("[]")
        items = value if many else [value]
        if many and not isinstance(value, list):
            return [f"{where}: expected a list of {type_file}"]
        problems = []
        for i, item in enumerate(items):
            try:
                validate_k8s_fragment(item, type_file)
            except jsonschema.ValidationError as e:
                problems.append(f"{where}[{i}]: not a valid {type_file}: {e.message}")
        return problems
    if schema is None:
        return [] if not isinstance(value, (dict, list)) else [f"{where}: expected a scalar"]
    if isinstance(schema, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, v in enumerate(value) for p in check_against_pinned(v, schema[0], f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping"]
    problems = []
    for key, sub in value.items():
        if key not in schema:
            problems.append(f"{where}.{key}: not a key of the Dagster chart" if where else
                            f"{key}: not a key of the Dagster chart")
        else:
            problems += check_against_pinned(sub, schema[key], f"{where}.{key}" if where else key)
    return problems


# ---- images ----------------------------------------------------------------------------------------------------
# Naming rule (k8s/README.md): [REGISTRY/]codellm/<name>:<tag> is built by docker/Dockerfile.<name>; when that file
# does not exist, <name> = <file>-<target> is the stage `<target>` of docker/Dockerfile.<file>.
IMAGE_RE = re.compile(r"^(?:(?P<registry>[^/]+)/)?codellm/(?P<name>[a-z0-9][a-z0-9-]*):(?P<tag>[A-Za-z0-9_.-]+)$")


def image_refs() -> dict[str, str]:
    """{image reference: where it is used} from every manifest and the Helm values."""
    refs: dict[str, str] = {}
    for path, doc in manifest_docs():
        for p, v in walk(doc):
            if p and p[-1] == "image" and isinstance(v, str):
                refs[v] = rel(path)
    for p, v in walk(helm_values()):
        if p and p[-1] == "image" and isinstance(v, dict) and "repository" in v:
            prefix = f"{v['registry']}/" if v.get("registry") else ""
            refs[f"{prefix}{v['repository']}:{v.get('tag', '')}"] = f"{rel(VALUES)}: {'.'.join(map(str, p))}"
        if isinstance(v, dict) and str(v.get("name", "")).endswith("_IMAGE") and "value" in v:
            refs[v["value"]] = f"{rel(VALUES)}: env {v['name']}"
    return refs


def dockerfile_for(image_name: str) -> tuple[Path, str | None]:
    direct = DOCKER / f"Dockerfile.{image_name}"
    if direct.exists() or "-" not in image_name:
        return direct, None
    base, target = image_name.rsplit("-", 1)
    return DOCKER / f"Dockerfile.{base}", target


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped."""
    joined, buf = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        if buf.strip():
            joined.append(buf.strip())
        buf = ""
    for line in joined:
        word, _, args = line.partition(" ")
        yield word.upper(), args.strip()


def _parse_env(args: str) -> dict[str, str]:
    if "=" not in args.split()[0]:                      # legacy form: ENV KEY value
        key, _, value = args.partition(" ")
        return {key: value.strip()}
    return {k: v.strip('"') for k, v in (item.split("=", 1) for item in args.split())}


def dockerfile_stages(path: Path) -> dict[str, dict[str, Any]]:
    """{stage name (or its index): {"env": resolved ENV incl. the parent stage's, "text": instructions}}."""
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for word, args in _instructions(path.read_text()):
        if word == "FROM":
            parts = args.split()
            base = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            parent = stages.get(base)
            current = {"env": dict(parent["env"]) if parent else {}, "text": [], "base": base}
            stages[name] = current
        elif current is not None:
            current["text"].append(f"{word} {args}")
            if word == "ENV":
                current["env"].update(_parse_env(args))
    return stages


def final_stage(path: Path, target: str | None) -> dict[str, Any]:
    stages = dockerfile_stages(path)
    if target is None:
        return list(stages.values())[-1]
    if target not in stages:
        raise LookupError(f"{rel(path)} has no stage named {target!r}; stages: {list(stages)}")
    return stages[target]


# ---- secrets ---------------------------------------------------------------------------------------------------
def is_literal_secret(doc: Any) -> bool:
    """A Secret object that carries its values in the file (data / stringData)."""
    return isinstance(doc, dict) and doc.get("kind") == "Secret" and bool(doc.get("data") or doc.get("stringData"))


def repo_config_files() -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        for f in filenames:
            if f.endswith((".yaml", ".yml", ".json")):
                yield Path(dirpath) / f


def secret_names(node: Any) -> set[str]:
    """Names of Secrets referenced anywhere in a structure (env, envFrom, TLS, chart and launcher settings)."""
    names = set()
    for _path, v in walk(node):
        if not isinstance(v, dict):
            continue
        for key in ("secretKeyRef", "secretRef"):
            if isinstance(v.get(key), dict) and v[key].get("name"):
                names.add(v[key]["name"])
        for key in ("secretName", "postgresqlSecretName", "postgres_password_secret"):
            if isinstance(v.get(key), str):
                names.add(v[key])
    return names


def validate_manifest(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# ---- dagster-k8s: the step pods it builds from our settings -----------------------------------------------------
OFFLINE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
users: [{name: offline, user: {token: offline}}]
"""


def chart_launcher(kubeconfig: Path) -> K8sRunLauncher:
    """The K8sRunLauncher the chart configures from our values (an offline kubeconfig: nothing is contacted)."""
    kubeconfig.write_text(OFFLINE_KUBECONFIG)
    v = helm_values()
    rl = v["runLauncher"]["config"]["k8sRunLauncher"]
    snake = {"containerConfig": "container_config", "podSpecConfig": "pod_spec_config"}
    return K8sRunLauncher(
        instance_config_map="dagster-instance", dagster_home="/opt/dagster/dagster_home",
        postgres_password_secret=v["global"]["postgresqlSecretName"], job_namespace="codellm",
        service_account_name="dagster", image_pull_policy=rl["imagePullPolicy"],
        load_incluster_config=False, kubeconfig_file=str(kubeconfig),
        run_k8s_config={snake[k]: val for k, val in rl["runK8sConfig"].items()})


def _code_location_origin() -> JobPythonOrigin:
    """A run's code origin carrying the container context the chart derives from the user deployment."""
    (code,) = helm_values()["dagster-user-deployments"]["deployments"]
    context = {"k8s": {"image_pull_policy": code["image"]["pullPolicy"], "namespace": "codellm",
                       "service_account_name": "dagster-user-deployments", "env": code["env"],
                       "volumes": code["volumes"], "volume_mounts": code["volumeMounts"],
                       "resources": code["resources"]}}
    repo = RepositoryPythonOrigin(executable_path="python", code_pointer=ModuleCodePointer(
        "codellm_assets.definitions", "defs", None), container_context=context)
    return JobPythonOrigin("__ASSET_JOB", repo)


def step_job(asset_name: str, launcher: K8sRunLauncher, gpu_image: str = "", op_tags: dict | None = None) -> dict:
    """The Kubernetes Job dagster-k8s builds for one asset's step, through its own code path (``op_tags``:
    the tags of a real asset definition; default: k8s_tags_for the name)."""
    @dg.asset(name=asset_name,
              op_tags=op_tags or k8s_tags.k8s_tags_for(asset_name, {"CODELLM_GPU_IMAGE": gpu_image}))
    def _asset() -> None: ...

    run = DagsterRun(job_name="__ASSET_JOB", run_id="0f1e2d3c-0000-4000-8000-000000000000",
                     job_code_origin=_code_location_origin())
    # K8sStepHandler._get_container_context: run launcher + code location, then the step's tags
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False).merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(_asset.op.tags)))
    job_config = context.get_k8s_job_config("registry.example.com/codellm/code:0.1.0", launcher)
    job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"], "dagster-step-0123",
                                    user_defined_k8s_config=context.run_k8s_config, component="step_worker")
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


# ---- monitoring -------------------------------------------------------------------------------------------------
def exposed_series() -> dict[str, set[str]]:
    """{series name: label names} the gateway's real /metrics exposes once every metric has a sample."""
    from prometheus_client.parser import text_string_to_metric_families

    from codellm_assets.core.serving.metrics import GatewayMetrics

    m = GatewayMetrics()
    m.requests.labels(version="codellm/3", slot="canary", status="200").inc()
    m.latency.labels(version="codellm/3", slot="canary").observe(0.2)
    m.tokens.labels(version="codellm/3").inc(7)
    m.tokens_per_second.labels(version="codellm/3").observe(40)
    m.inflight.set(1)
    m.feedback.labels(event="accept", version="codellm/3").inc()
    m.buggy.labels(version="codellm/3").inc()
    m.assessed.labels(version="codellm/3").inc()
    m.canary_fallbacks.inc()
    m.shadow_requests.inc()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series
