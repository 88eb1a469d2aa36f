"""Packaging: each registered version as artifacts other servers load (merged safetensors for transformers /
vLLM / TGI, GGUF for llama.cpp / Ollama, 4-bit NF4 on GPUs), checksummed and recorded on the MLflow version."""

import tempfile

import dagster as dg

from codellm_assets.core.training import registry, registry_packages
from codellm_assets.core.training.packaging import PackagingError, compare_greedy, package_version
from codellm_assets.defs.shared import RETRAIN_CHAIN, markdown_table
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import SettingsResource


@dg.asset(op_tags=k8s_tags_for("packaged_model"), automation_condition=RETRAIN_CHAIN, group_name="deployment",
          description="The registered version packaged as `packaging.formats` (merged safetensors, GGUF, 4-bit): "
                      "each artifact with its sha256, logged to the MLflow model version (tags "
                      "`codellm.package.<format>.*`) and named here; loaders refuse a corrupt or truncated one.")
def packaged_model(context: dg.AssetExecutionContext, settings: SettingsResource,
                   registered_model: dict) -> dg.Output[dict]:
    s = settings.get()
    name, version = registered_model["name"], str(registered_model["version"])
    artifacts: dict[str, dict] = {}
    for fmt in s.packaging.formats:
        try:
            artifact, tags = package_version(tracking_uri=s.mlflow_tracking_uri, model_name=name, version=version,
                                             fmt=fmt, out_root=s.packaged_dir, gguf_type=s.packaging.gguf_type,
                                             upload=s.packaging.upload)
        except (PackagingError, registry.RegistryError) as e:
            raise dg.Failure(description=f"packaging {name} v{version} as {fmt} failed: {e}") from e
        uri = tags.get(f"{registry_packages.PACKAGE_TAG}.{fmt}.artifact")
        artifacts[fmt] = {**artifact.to_json(), "artifact_uri": uri}
        context.log.info(f"{name} v{version} {fmt}: {artifact.path} sha256={artifact.sha256}")
    metadata: dict = {"model": name, "version": version, "formats": dg.MetadataValue.json(list(artifacts)),
                      "artifacts": dg.MetadataValue.md(markdown_table(
                          [{"format": f, "path": a["path"], "MiB": round(a["bytes"] / 2**20, 2), "sha256": a["sha256"]}
                           for f, a in artifacts.items()], ["format", "path", "MiB", "sha256"]))}
    for fmt, a in artifacts.items():
        metadata[f"{fmt}_path"] = dg.MetadataValue.path(a["path"])
        metadata[f"{fmt}_sha256"] = a["sha256"]
        if a.get("artifact_uri"):
            metadata[f"{fmt}_mlflow_artifact"] = a["artifact_uri"]
    return dg.Output({"name": name, "version": version, "base_model_dir": registered_model["base_model_dir"],
                      "artifacts": artifacts}, metadata=metadata)


@dg.asset_check(asset=packaged_model, blocking=False,
                description="The merged model's greedy tokens equal base + adapter's on a few code prompts.")
def merged_matches_adapter(settings: SettingsResource, packaged_model: dict) -> dg.AssetCheckResult:
    merged = packaged_model["artifacts"].get("merged")
    if merged is None:
        return dg.AssetCheckResult(passed=True, metadata={"skipped": "merged is not in packaging.formats"})
    s = settings.get()
    with tempfile.TemporaryDirectory(prefix="codellm-check-") as tmp:
        adapter = registry.download_adapter(s.mlflow_tracking_uri, packaged_model["name"], packaged_model["version"],
                                            f"{tmp}/adapter")
        result = compare_greedy(packaged_model["base_model_dir"], adapter, merged["path"],
                                merged_sha256=merged["sha256"])
    return dg.AssetCheckResult(passed=result["equal"], metadata={
        "prompts": result["prompts"], "differing_prompts": dg.MetadataValue.json(result["differ"])})
