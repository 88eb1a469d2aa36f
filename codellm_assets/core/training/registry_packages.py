"""Packaged artifacts of a model version (core/training/packaging.py): the merged model, GGUF and 4-bit
files uploaded into the version's run under ``packages/<format>/`` and tagged on the version with their
sha256, artifact URI and local path; read back by the tags."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from codellm_assets.core.training.registry import ModelVersionInfo, RegistryError, _client, _clip, _key

PACKAGE_TAG = "codellm.package"  # version tags codellm.package.<format>.{sha256,artifact,local_path,bytes}


def download_version_model(tracking_uri: str, model_name: str, version: str | int,
                           dst: str | os.PathLike[str]) -> Path:
    """Download a version's logged pyfunc model (``artifacts/adapter``, ``artifacts/tokenizer``) into ``dst``."""
    client = _client(tracking_uri)
    Path(dst).mkdir(parents=True, exist_ok=True)
    try:
        source = client.get_model_version_download_uri(model_name, str(version))
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                                        tracking_uri=tracking_uri))
    except MlflowException as e:
        raise RegistryError(f"cannot download {model_name} version {version}: {e.message}") from None


def log_package_artifact(tracking_uri: str, model_name: str, version: str | int, fmt: str,
                         local_path: str | os.PathLike[str], sha256: str, *, upload: bool = True,
                         extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Record a packaged artifact on a model version: uploaded into the version's run under
    ``packages/<fmt>/`` (unless ``upload`` is false) and tagged on the version and the run with its sha256,
    artifact URI and local path. Returns the tags set."""
    client = _client(tracking_uri)
    mv = client.get_model_version(model_name, str(version))
    local_path = Path(local_path).resolve()
    artifact_uri = ""
    if upload:
        if not mv.run_id:
            raise RegistryError(f"{model_name} version {version} has no run to hold its packaged artifacts")
        sub = f"packages/{fmt}"
        if local_path.is_dir():
            client.log_artifacts(mv.run_id, str(local_path), artifact_path=f"{sub}/{local_path.name}")
        else:
            client.log_artifact(mv.run_id, str(local_path), artifact_path=sub)
            sidecar = local_path.with_name(local_path.name + ".sha256")
            if sidecar.is_file():
                client.log_artifact(mv.run_id, str(sidecar), artifact_path=sub)
        artifact_uri = f"{client.get_run(mv.run_id).info.artifact_uri.rstrip('/')}/{sub}/{local_path.name}"
    tags = {f"{PACKAGE_TAG}.{fmt}.sha256": sha256, f"{PACKAGE_TAG}.{fmt}.local_path": str(local_path),
            **({f"{PACKAGE_TAG}.{fmt}.artifact": artifact_uri} if artifact_uri else {}),
            **{f"{PACKAGE_TAG}.{fmt}.{_key(k)}": _clip(v) for k, v in (extra or {}).items()}}
    for k, v in tags.items():
        client.set_model_version_tag(model_name, str(version), k, v)
        if mv.run_id:
            client.set_tag(mv.run_id, k, v)
    return tags


def package_tags(info: ModelVersionInfo, fmt: str) -> dict[str, str]:
    """``{sha256, artifact, local_path, ...}`` recorded for ``fmt`` on a version (empty if never packaged)."""
    prefix = f"{PACKAGE_TAG}.{fmt}."
    return {k[len(prefix):]: v for k, v in (info.tags or {}).items() if k.startswith(prefix)}


def download_package_artifact(tracking_uri: str, artifact_uri: str, dst: str | os.PathLike[str]) -> Path:
    """Download a packaged artifact (directory or file, with its sidecar) by the URI its version tag names."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(dst),
                                                         tracking_uri=tracking_uri))
        if local.is_file():
            with contextlib.suppress(MlflowException, OSError):
                mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri + ".sha256", dst_path=str(dst),
                                                    tracking_uri=tracking_uri)
        return local
    except MlflowException as e:
        raise RegistryError(f"cannot download the packaged artifact {artifact_uri}: {e.message}") from None
