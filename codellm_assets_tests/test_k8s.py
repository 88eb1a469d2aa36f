"""The Kubernetes deployment, checked offline: manifests against the Kubernetes schemas (strict), the Helm values
against the keys the Dagster chart defines, the step pods dagster-k8s builds from them, images, secrets,
settings profiles and the dashboard against the gateway's real metrics."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib

import kubernetes_validate
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config, dagster_instance_config_schema
from dagster._serdes.config_class import ConfigurableClassData
from dagster_k8s import K8sRunLauncher

from codellm_assets import k8s_tags
from codellm_assets.settings import load_settings
from codellm_assets_tests import k8s_support as ks
from codellm_assets_tests.k8s_support import K8S, ROOT, VALUES

NON_CORE_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
CONTRACT_ASSETS = {"repo_snapshots", "clean_files", "scrubbed_corpus", "deduped_corpus", "training_dataset",
                   "base_model", "lora_adapter", "company_benchmark", "eval_scores", "registered_model",
                   "deployed_endpoint", "feedback_dataset", "git_heads", "feedback_events", "packaged_model",
                   "source_documents", "source_corpus", "code_index"}


# ---- manifests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ks.acceptance_manifests(), ids=ks.rel)
def test_manifest_validates_strictly(path):
    docs = ks.load_docs(path)
    assert docs, f"{ks.rel(path)} holds no object"
    for doc in docs:
        try:
            ks.validate_manifest(doc)
        except kubernetes_validate.SchemaNotFoundError:
            # kubernetes-validate knows core kinds only: a CRD passes it unchecked, so allow just these two
            # (checked by test_servicemonitors_scrape_existing_service_ports and the kustomize tests).
            assert (doc["apiVersion"], doc["kind"]) in NON_CORE_KINDS, f"{ks.rel(path)}: unknown {doc['kind']}"


@pytest.mark.parametrize("breakage", ["unknown_field", "wrong_type", "missing_selector"])
def test_strict_validation_rejects_a_broken_deployment(breakage):
    doc = copy.deepcopy(ks.find_doc("Deployment", "codellm-gateway"))
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if breakage == "unknown_field":
        container["imagePullPolcy"] = "Always"
    elif breakage == "wrong_type":
        doc["spec"]["replicas"] = "two"
    else:
        del doc["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        ks.validate_manifest(doc)


def test_only_the_helm_values_escape_the_acceptance_validation():
    every_yaml = {ks.rel(p) for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml")}
    assert every_yaml - {ks.rel(p) for p in ks.acceptance_manifests()} == {ks.rel(VALUES)}


def test_kustomizations_list_every_manifest_once():
    listed = []
    for kfile in (K8S / "kustomization.yaml", K8S / "monitoring" / "kustomization.yaml",
                  K8S / "training" / "kustomization.yaml"):
        listed += [kfile.parent / r for r in ks.load_docs(kfile)[0]["resources"]]
    assert all(p.exists() for p in listed), [str(p) for p in listed if not p.exists()]
    objects = [p for p in ks.acceptance_manifests() if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(objects)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("folder", ["k8s", "k8s/monitoring", "k8s/training"])
def test_kustomize_renders_valid_objects_in_one_namespace(folder):
    out = subprocess.run(["kubectl", "kustomize", folder], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in NON_CORE_KINDS:
            ks.validate_manifest(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "codellm", doc["metadata"]["name"]
    if folder.endswith("monitoring"):
        dash = next(d for d in docs if d["kind"] == "ConfigMap")
        assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(dash["data"]["grafana-dashboard.json"])


def test_one_plain_ingress_routes_the_gateway_and_nothing_splits_traffic():
    ingresses = [d for _, d in ks.manifest_docs() if d["kind"] == "Ingress"]
    to_gateway = [i for i in ingresses if any(p["backend"]["service"]["name"] == "codellm-gateway"
                                              for r in i["spec"]["rules"] for p in r["http"]["paths"])]
    assert len(to_gateway) == 1
    assert not [a for i in ingresses for a in i["metadata"].get("annotations", {}) if "canary" in a]


# ---- Helm values -----------------------------------------------------------------------------------------------
def test_helm_values_use_only_keys_the_dagster_chart_defines():
    assert ks.check_against_pinned(ks.helm_values(), ks.CHART_KEYS) == []


@pytest.mark.parametrize("path, value, expected", [
    (("dagsterWebserver", "enableReadonly"), True, "not a key of the Dagster chart"),
    (("runLauncher", "config", "k8sRunLauncher", "volumes"), [{"name": "x", "persistentVolumeClam": {}}],
     "not a valid volume"),
    (("dagsterDaemon", "resources"), {"limit": {"memory": "1Gi"}}, "not a valid resourcerequirements"),
])
def test_values_checker_catches_typos(path, value, expected):
    values = ks.helm_values()
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    problems = ks.check_against_pinned(values, ks.CHART_KEYS)
    assert len(problems) == 1 and expected in problems[0], problems


def test_helm_values_wire_postgres_k8s_runs_automation_and_no_open_ui():
    v = ks.helm_values()
    assert v["postgresql"]["enabled"] is False and "postgresqlPassword" not in v["postgresql"]
    assert v["generatePostgresqlPasswordSecret"] is False and v["global"]["postgresqlSecretName"]
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert v["dagsterDaemon"]["sensors"]["useThreads"] is True
    assert v["dagsterWebserver"]["enableReadOnly"] is True and v["ingress"]["enabled"] is False
    (code,) = v["dagster-user-deployments"]["deployments"]
    assert code["dagsterApiGrpcArgs"] == ["-m", "codellm_assets.definitions"]
    assert {e["name"]: e.get("value") for e in code["env"]}["CODELLM_DAGSTER_EXECUTOR"] == "k8s"
    instance = {**yaml.safe_load((ROOT / "dagster.k8s.yaml").read_text()), **v["additionalInstanceConfig"]}
    result = validate_config(dagster_instance_config_schema(), instance)   # Dagster's own instance schema
    assert result.success, result.errors
    assert v["additionalInstanceConfig"]["auto_materialize"]["enabled"] is True


def test_chart_names_used_by_the_sso_proxy_match_the_values():
    v = ks.helm_values()
    upstream = ks.find_doc("ConfigMap", "dagster-sso")["data"]["OAUTH2_PROXY_UPSTREAMS"]
    # the chart names the read-only webserver <release>-<nameOverride>-read-only; README installs release "dagster"
    assert upstream == f"http://dagster-{v['dagsterWebserver']['nameOverride']}-read-only:" \
                       f"{v['dagsterWebserver']['service']['port']}"


# ---- dagster-k8s builds the step pods --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chart_launcher(tmp_path_factory):
    return ks.chart_launcher(tmp_path_factory.mktemp("kube") / "config")


def test_lora_adapter_step_pod_gets_a_gpu_node_and_image(chart_launcher):
    job = ks.step_job("lora_adapter", chart_launcher, gpu_image="registry.example.com/codellm/gpu-train:0.1.0")
    ks.validate_manifest(job)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"] == "registry.example.com/codellm/gpu-train:0.1.0"
    assert pod["nodeSelector"] == k8s_tags.GPU_NODE_SELECTOR
    assert k8s_tags.GPU_TOLERATIONS[0] in pod["tolerations"]
    # the step's own volume (shared memory) next to the code location's shared data and model volumes
    assert {v["name"] for v in pod["volumes"]} == {"codellm-data", "codellm-models", "dshm"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/var/lib/codellm", "/var/lib/codellm/models", "/dev/shm"}
    env = {e["name"]: e for e in container["env"]}
    assert env["CODELLM__SERVING__STORE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "codellm-store"
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "codellm-dagster-postgresql"
    assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("nproc", [1, 4])
def test_lora_adapter_pod_gpus_follow_nproc_per_node(nproc, chart_launcher, tmp_path):
    """The tags of the lora_adapter that build_defs makes for the settings: torchrun's N ranks get N GPUs."""
    from codellm_assets.definitions import build_defs

    config = tmp_path / "codellm.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\nrepos: []\ntraining:\n  distributed:\n"
                      f"    nproc_per_node: {nproc}\n")
    tags = build_defs(str(config)).get_assets_def("lora_adapter").op.tags
    job = ks.step_job("lora_adapter", chart_launcher, op_tags=tags)
    ks.validate_manifest(job)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(nproc)
    assert container["resources"]["requests"]["cpu"] == str(8 * nproc)
    with pytest.raises(ValueError, match="not a GPU step"):
        k8s_tags.k8s_tags_for("clean_files", gpus=2)


@pytest.mark.parametrize("asset_name", sorted(k8s_tags.K8S_OP_TAGS))
def test_every_asset_step_pod_is_valid_and_sized(asset_name, chart_launcher):
    job = ks.step_job(asset_name, chart_launcher)
    ks.validate_manifest(job)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    expected = copy.deepcopy(k8s_tags.K8S_OP_TAGS[asset_name]["container_config"]["resources"])
    expected["limits"] = {k: str(v) for k, v in expected["limits"].items()}   # the API client writes quantities
    assert container["resources"] == expected
    assert ("nvidia.com/gpu" in container["resources"]["limits"]) == (asset_name in k8s_tags.GPU_ASSETS)
    assert container["image"].endswith("/codellm/code:0.1.0")   # no GPU image configured: the code image


# ---- k8s_tags --------------------------------------------------------------------------------------------------
def test_op_tags_cover_exactly_the_contract_assets():
    assert set(k8s_tags.K8S_OP_TAGS) == CONTRACT_ASSETS
    assert k8s_tags.GPU_ASSETS == {"lora_adapter", "eval_scores"}


def test_unknown_asset_name_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="lora_adaptor.*lora_adapter"):
        k8s_tags.k8s_tags_for("lora_adaptor")


@pytest.mark.parametrize("asset_name, env, expected_image", [
    ("lora_adapter", {"CODELLM_GPU_IMAGE": "r/codellm/gpu-train:1"}, "r/codellm/gpu-train:1"),
    ("eval_scores", {"CODELLM_GPU_IMAGE": " r/codellm/gpu-train:1 "}, "r/codellm/gpu-train:1"),
    ("lora_adapter", {}, None),
    ("deduped_corpus", {"CODELLM_GPU_IMAGE": "r/codellm/gpu-train:1"}, None),   # CPU steps keep the code image
])
def test_gpu_image_goes_only_to_gpu_steps(asset_name, env, expected_image):
    config = k8s_tags.k8s_tags_for(asset_name, env)["dagster-k8s/config"]
    assert config["container_config"].get("image") == expected_image
    config["container_config"]["resources"]["limits"]["memory"] = "1Ki"      # a copy: the table is untouched
    assert k8s_tags.K8S_OP_TAGS[asset_name]["container_config"]["resources"]["limits"]["memory"] != "1Ki"


@pytest.mark.parametrize("env, expected", [
    ({}, None), ({"CODELLM_DAGSTER_EXECUTOR": "default"}, None),
    ({"CODELLM_DAGSTER_EXECUTOR": "k8s"}, "k8s"),
    ({"CODELLM_DAGSTER_EXECUTOR": "K8S", "CODELLM_K8S_MAX_CONCURRENT_STEPS": "16"}, "k8s_job_executor"),
    ({"CODELLM_DAGSTER_EXECUTOR": "celery"}, ValueError),
    ({"CODELLM_DAGSTER_EXECUTOR": "k8s", "CODELLM_K8S_MAX_CONCURRENT_STEPS": "0"}, ValueError),
])
def test_dagster_executor_follows_the_environment(env, expected):
    if expected is ValueError:
        with pytest.raises(ValueError, match="CODELLM_"):
            k8s_tags.dagster_executor(env)
        return
    executor = k8s_tags.dagster_executor(env)
    assert (executor.name if executor else None) == expected


# ---- images and Dockerfiles ------------------------------------------------------------------------------------
def test_every_image_is_built_by_a_dockerfile_in_the_repo():
    refs = ks.image_refs()
    assert len(refs) >= 6
    for ref, where in refs.items():
        m = ks.IMAGE_RE.match(ref)
        assert m, f"{where}: image {ref!r} does not follow [REGISTRY/]codellm/<name>:<tag> (k8s/README.md)"
        dockerfile, target = ks.dockerfile_for(m["name"])
        assert dockerfile.exists(), f"{where}: {ref} -> {ks.rel(dockerfile)} does not exist"
        ks.final_stage(dockerfile, target)   # raises when the target stage is missing


def test_images_are_pinned_to_one_release_tag():
    tags = {ks.IMAGE_RE.match(ref)["tag"] for ref in ks.image_refs()}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tags == {version}


@pytest.mark.parametrize("image_name", ["code", "gateway", "dagster", "gpu-train", "gpu-vllm"])
def test_python_images_stay_offline_at_run_time(image_name):
    stage = ks.final_stage(*ks.dockerfile_for(image_name))
    assert stage["env"].get("HF_HUB_OFFLINE") == "1"


def test_images_pin_what_pyproject_pins():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if d.split("==")[0] in {"dagster", "dagster-webserver", "dagster-graphql",
                                                   "dagster-postgres", "dagster-k8s", "torch"}]
    text = {n: (ks.DOCKER / f"Dockerfile.{n}").read_text() for n in ("dagster", "code", "gateway", "gpu")}
    for pin in pins:
        files = ["code", "gateway", "gpu"] if pin.startswith("torch") else ["dagster"]
        assert all(pin in text[f] for f in files), f"{pin} not pinned in docker/Dockerfile.{files}"
    assert "download.pytorch.org/whl/cpu" in text["code"]      # the CPU wheel for the code location


# ---- secrets ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc, literal", [
    ({"kind": "Secret", "data": {"url": "cG9zdGdyZXM="}}, True),
    ({"kind": "Secret", "stringData": {"token": "x"}}, True),
    ({"kind": "Secret", "type": "Opaque"}, False),
    ({"kind": "ConfigMap", "data": {"a": "b"}}, False),
])
def test_literal_secret_detector(doc, literal):
    assert ks.is_literal_secret(doc) is literal


def test_no_literal_secret_anywhere_in_the_repo():
    offenders = []
    for path in ks.repo_config_files():
        try:
            docs = list(yaml.safe_load_all(path.read_text(errors="replace")))
        except yaml.YAMLError:
            continue   # not YAML (e.g. a Helm template): the text check below still applies
        offenders += [ks.rel(path) for d in docs if ks.is_literal_secret(d)]
        if path.is_relative_to(K8S) and re.search(r"^kind:\s*Secret\b", path.read_text(), re.MULTILINE):
            offenders.append(ks.rel(path))
    assert offenders == []


def test_every_referenced_secret_has_a_create_command_in_the_readme():
    referenced = set().union(*(ks.secret_names(d) for _, d in ks.manifest_docs()), ks.secret_names(ks.helm_values()),
                             ks.secret_names(yaml.safe_load((ROOT / "dagster.k8s.yaml").read_text())))
    readme = (K8S / "README.md").read_text()
    assert referenced >= {"codellm-store", "codellm-dagster-postgresql", "codellm-mlflow-db", "codellm-tls"}
    missing = [n for n in sorted(referenced) if not re.search(rf"create secret \w+ {re.escape(n)}\b", readme)]
    assert missing == []


# ---- settings and instance profiles ----------------------------------------------------------------------------
def _container(kind: str, name: str) -> dict:
    return ks.find_doc(kind, name)["spec"]["template"]["spec"]["containers"][0]


def _arg(args: list[str], flag: str) -> str | None:
    """The value of ``--flag value`` or ``--flag=value`` in a container's args."""
    for i, a in enumerate(args):
        if a == flag:
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def cluster_settings():
    """codellm.k8s.yaml with the environment the manifests give the pods."""
    env = {"CODELLM__SERVING__STORE_URL": "postgresql+psycopg2://codellm@postgres:5432/codellm",
           "CODELLM__REPOS": ks.find_doc("ConfigMap", "codellm-repos")["data"]["repos.yaml"]}
    return load_settings(ROOT / "codellm.k8s.yaml", environ=env)


def test_k8s_settings_profile_points_at_the_cluster_services(cluster_settings):
    s = cluster_settings
    assert s.serving.backend == "vllm" and s.store_url.startswith("postgresql")
    assert s.model.preset != "tiny" and s.model.path.startswith(str(s.models_dir))
    assert [r.name for r in s.repos] and all(r.url for r in s.repos)
    vllm_port = ks.find_doc("Service", "codellm-vllm")["spec"]["ports"][0]["port"]
    assert s.serving.vllm_url == f"http://codellm-vllm:{vllm_port}"
    gateway_port = ks.find_doc("Service", "codellm-gateway")["spec"]["ports"][0]["port"]
    assert (s.serving.host, s.serving.port) == ("codellm-gateway", gateway_port)   # GatewayResource's URL
    mlflow_port = ks.find_doc("Service", "codellm-mlflow")["spec"]["ports"][0]["port"]
    assert s.mlflow_tracking_uri == f"http://codellm-mlflow:{mlflow_port}"
    deployment = ks.helm_values()["dagster-user-deployments"]["deployments"][0]
    code_env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert code_env["CODELLM_HOME"] == str(s.home_dir) == "/var/lib/codellm"


def test_vllm_deployment_serves_the_preset_with_lora_on_a_gpu(cluster_settings):
    presets = yaml.safe_load((ROOT / "codellm_assets" / "core" / "training" / "presets.yaml").read_text())
    preset = presets[cluster_settings.model.preset]
    c = _container("Deployment", "codellm-vllm")
    args = c["args"]
    assert c["command"] == ["python", "-m", "vllm.entrypoints.openai.api_server"] and "--enable-lora" in args
    assert _arg(args, "--model") == cluster_settings.model.path
    assert int(_arg(args, "--max-lora-rank")) >= (cluster_settings.training.lora_r or preset["lora_r"])
    assert int(_arg(args, "--max-model-len")) <= preset["vllm_max_model_len"]
    # no hard-coded champion: the gateway loads the routed adapters at run time (and again after a restart)
    assert _arg(args, "--lora-modules") is None and not any("codellm-v" in a for a in args)
    assert {e["name"]: e["value"] for e in c["env"]}["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert int(_arg(args, "--port")) == c["ports"][0]["containerPort"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["startupProbe"]["httpGet"]["path"] == c["readinessProbe"]["httpGet"]["path"] == "/health"
    # the routing table stores paths as the training steps wrote them: vLLM must see the same paths
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {str(cluster_settings.models_dir)}


def test_gateway_deployment_runs_the_documented_command_and_probes():
    c = _container("Deployment", "codellm-gateway")
    assert c["command"] + c["args"] == ["codellm", "serve", "--host", "0.0.0.0", "--port", "8000",
                                        "--config", "/etc/codellm/codellm.yaml"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = ks.find_doc("HorizontalPodAutoscaler", "codellm-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "codellm-gateway" and hpa["spec"]["minReplicas"] >= 2


def test_dagster_instance_profile_builds_a_k8s_run_launcher(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.k8s.yaml").read_text())
    config, _ = dagster_instance_config(str(home))                 # Dagster's own schema validation
    assert config["auto_materialize"]["enabled"] is True and config["telemetry"]["enabled"] is False
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME"):
        monkeypatch.setenv(var, "x")
    launcher_config = {**config["run_launcher"]["config"], "load_incluster_config": False,
                       "kubeconfig_file": str(tmp_path / "kubeconfig")}
    (tmp_path / "kubeconfig").write_text(ks.OFFLINE_KUBECONFIG)
    launcher = ConfigurableClassData("dagster_k8s", "K8sRunLauncher",
                                     yaml.safe_dump(launcher_config)).rehydrate(K8sRunLauncher)
    assert launcher.postgres_password_secret == ks.helm_values()["global"]["postgresqlSecretName"]
    assert {v["name"] for v in launcher.volumes} == {"codellm-data", "codellm-models"}


# ---- monitoring ------------------------------------------------------------------------------------------------
def _dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_use_series_and_labels_the_gateway_exposes():
    series = ks.exposed_series()
    for title, expr in _dashboard_queries():
        names = set(re.findall(r"\b(codellm_[a-z0-9_]+)\b", expr))
        assert names, f"{title}: no codellm metric in {expr}"
        unknown = names - set(series)
        assert not unknown, f"{title}: {unknown} not exposed by the gateway (exposed: {sorted(series)})"
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            labels |= {x.strip() for x in group.split(",") if x.strip()}
        known = set().union(*(series[n] for n in names))
        assert labels <= known, f"{title}: labels {labels - known} not on {names}"


@pytest.mark.parametrize("needed", ["p50", "p95", "p99", "codellm_tokens_generated_total", "acceptance",
                                    "buggy", "canary", "codellm_requests_total"])
def test_dashboard_covers_what_operators_watch(needed):
    text = " ".join(f"{t} {e}" for t, e in _dashboard_queries()).lower()
    text += " ".join(t.get("legendFormat", "") for p in json.loads(
        (K8S / "monitoring" / "grafana-dashboard.json").read_text())["panels"] for t in p.get("targets", []))
    assert needed in text.lower()


def test_servicemonitors_scrape_existing_service_ports():
    services = [d for _, d in ks.manifest_docs() if d["kind"] == "Service"]
    monitors = [d for _, d in ks.manifest_docs() if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"codellm-gateway", "codellm-vllm"}
    for m in monitors:
        selector = m["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if selector.items() <= s["metadata"]["labels"].items()
                   and s["metadata"]["namespace"] in m["spec"]["namespaceSelector"]["matchNames"]]
        assert len(matched) == 1, m["metadata"]["name"]
        port_names = {p["name"] for p in matched[0]["spec"]["ports"]}
        assert all(e["port"] in port_names and e["path"] == "/metrics" for e in m["spec"]["endpoints"])


# ---- the lead's wiring -----------------------------------------------------------------------------------------
def test_definitions_carry_the_k8s_tags_on_every_asset():
    """Every materializable asset of the code location runs in a pod sized by K8S_OP_TAGS (op_tags wired)."""
    from codellm_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    materializable = {k.to_user_string() for k in graph.get_all_asset_keys()}   # observations run in pods too
    assert materializable == set(k8s_tags.K8S_OP_TAGS), \
        f"size new assets in K8S_OP_TAGS: {materializable - set(k8s_tags.K8S_OP_TAGS)}; " \
        f"gone: {set(k8s_tags.K8S_OP_TAGS) - materializable}"
    untagged = sorted(k.to_user_string() for a in graph.assets_defs if a.is_materializable
                      for k in a.keys if "dagster-k8s/config" not in a.op.tags)
    assert untagged == [], f"add op_tags=k8s_tags_for(name) to: {untagged}"


# ---- multi-node training -----------------------------------------------------------------------------------------
def test_multinode_training_job_matches_the_launcher_and_the_settings(monkeypatch):
    """The Job's torchrun joins the rendezvous the lora_adapter step's torchrun uses, reads the spec file the
    step writes, and mounts the volumes where the Dagster step pods have them."""
    from codellm_assets.core.training import distributed

    job, svc = ks.find_doc("Job", "codellm-train"), ks.find_doc("Service", "codellm-train")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    assert job["spec"]["completionMode"] == "Indexed" and pod["subdomain"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["selector"].items() <= \
        job["spec"]["template"]["metadata"]["labels"].items()
    # pod 0 of the Job hosts the rendezvous: <job>-0.<service>:<port>
    assert flags["rdzv-endpoint"] == f"codellm-train-0.codellm-train:{svc['spec']['ports'][0]['port']}"
    assert int(flags["nnodes"]) == job["spec"]["completions"] + 1  # + the lora_adapter step pod
    assert int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) == int(flags["nproc-per-node"])
    # the step's settings, as the header tells to set them, give the same torchrun flags
    monkeypatch.setenv("CODELLM__TRAINING__DISTRIBUTED__NNODES", flags["nnodes"])
    monkeypatch.setenv("CODELLM__TRAINING__DISTRIBUTED__NPROC_PER_NODE", flags["nproc-per-node"])
    monkeypatch.setenv("CODELLM__TRAINING__DISTRIBUTED__RDZV_ENDPOINT", flags["rdzv-endpoint"])
    s = load_settings(ROOT / "codellm.k8s.yaml")
    spec = s.models_dir / "lora_adapter" / distributed.SPEC_FILE  # the out_dir lora_adapter writes into
    step_cmd = distributed.torchrun_command(s.training.distributed, spec)
    for flag in ("nnodes", "nproc-per-node", "rdzv-backend", "rdzv-endpoint", "rdzv-id"):
        assert f"--{flag}={flags[flag]}" in step_cmd, flag
    assert args[-3:] == step_cmd[-3:] == ["-m", "codellm_assets.core.training.distributed", str(spec)]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims[mounts[str(s.home_dir)]] == "codellm-data" and claims[mounts[str(s.models_dir)]] == "codellm-models"
