"""The model registry: MLflow tracking of training runs, adapter validation, versions and aliases.

Embedded default: an SQLite-backed MLflow (``sqlite:///<home>/mlflow/mlflow.db``) with local artifacts
under an explicit root (never ``./mlruns``). Production: an MLflow server; set ``registry.lock_url``.

A version is an MLflow pyfunc model (``adapter_pyfunc.py``): the adapter and tokenizer as artifacts, the
base model by reference (path/hub id + fingerprint). ``predict`` generates, ``download_adapter`` gives
serving and evaluation the bare peft adapter.

MLflow aliases are last-writer-wins. Every registration and alias move here runs under one registry lock
(``registry_lock``), and ``set_alias(..., expected_current=...)`` is a compare-and-set on top of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub from here

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from codellm_assets.core.training.adapter_validation import (  # noqa: F401
    AdapterInfo,
    AdapterValidationError,
    validate_adapter,
)
from codellm_assets.core.training.checkpoints import base_model_fingerprint
from codellm_assets.core.training.gate_record import GATE_TAG, GateRecord, read_gate  # noqa: F401
from codellm_assets.core.training.registry_lock import RegistryLockTimeout, registry_lock  # noqa: F401

if TYPE_CHECKING:
    from codellm_assets.core.training.lora import TrainResult

log = logging.getLogger(__name__)

ALIAS_ABSENT = "absent"  # set_alias(expected_current=ALIAS_ABSENT): succeed only if the alias is unset
PYFUNC_FILE = Path(__file__).with_name("adapter_pyfunc.py")
_TAG_LIMIT = 7900  # MLflow caps tag values at 8000 characters
_BATCH = 900  # MLflow caps log_batch at 1000 metrics


class RegistryError(RuntimeError):
    """A registry operation that cannot be done as asked (unknown model, version or alias)."""


class AliasConflict(RegistryError):
    """``set_alias``'s compare-and-set failed: the alias no longer points where the caller expected."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    source: str
    tags: Mapping[str, str] | None = None


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _info(mv) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases=tuple(mv.aliases),
        source=mv.source,
        tags=dict(mv.tags or {}),
    )


def _prepare_store(tracking_uri: str) -> None:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


def ensure_experiment(tracking_uri: str, name: str, artifact_root: str | os.PathLike[str]) -> str:
    """The experiment's id, creating it with its artifacts under ``artifact_root`` (not ./mlruns)."""
    _prepare_store(tracking_uri)
    client = _client(tracking_uri)
    with registry_lock(tracking_uri):  # two first runs must not both create it (or the SQLite tables)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            root = Path(artifact_root).expanduser().resolve() / name
            root.mkdir(parents=True, exist_ok=True)
            return client.create_experiment(name, artifact_location=root.as_uri())
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        wanted = Path(artifact_root).expanduser().resolve().as_uri()
        if not exp.artifact_location.startswith(wanted):
            log.warning("experiment %r keeps its artifacts at %s, not under %s (it was created elsewhere "
                        "first); MLflow cannot move them", name, exp.artifact_location, wanted)
        return exp.experiment_id


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """The manifest's own ``manifest_hash`` if it has one, else the sha256 of its canonical JSON."""
    if manifest.get("manifest_hash"):
        return str(manifest["manifest_hash"])
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()


def source_commits(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``{"repo@branch": sha}`` from ``manifest["commits"]`` or the dataset manifest's ``sources`` rows."""
    if isinstance(manifest.get("commits"), Mapping):
        return {str(k): str(v) for k, v in manifest["commits"].items()}
    commits = {}
    for row in manifest.get("sources") or []:
        key = f"{row.get('repo', '')}@{row['branch']}" if row.get("branch") else str(row.get("repo", ""))
        commits[key] = str(row.get("commit", ""))
    return commits


def lineage_tags(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Tags that tie a run or version to its data: the manifest hash and every source commit."""
    return {
        "codellm.dataset_manifest_hash": manifest_hash(manifest),
        "codellm.source_commits": _clip(json.dumps(source_commits(manifest), sort_keys=True)),
    }


def _key(name: Any) -> str:
    """MLflow names allow only alphanumerics and ``_ - . space : /``: ``eval.pass@1`` -> ``eval.pass_1``."""
    return re.sub(r"[^\w\-. :/]", "_", str(name))


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _TAG_LIMIT else text[: _TAG_LIMIT - 20] + "...[truncated]"


def _metrics_of(result: TrainResult, client: MlflowClient, run_id: str) -> list[Metric]:
    """Curves per step plus final figures. Steps already in the run (e.g. streamed live from ``on_log``
    through the same run) are not logged twice."""
    now = int(datetime.now(UTC).timestamp() * 1000)
    metrics = []
    for key, curve in (("train_loss", result.loss_curve), ("val_loss", result.eval_curve)):
        seen = {m.step for m in client.get_metric_history(run_id, key)}
        metrics += [Metric(key, float(v), now, int(s)) for s, v in curve if int(s) not in seen]
    finals = {
        "val_loss_adapter": result.val_loss_adapter,
        "val_loss_base": result.val_loss_base,
        "tokens_per_s": result.tokens_per_s,
        "train_tokens": result.train_tokens,
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "adapter_bytes": result.adapter_bytes,
        "steps": result.steps,
        "wall_time_s": result.wall_time_s,
        "train_time_s": result.train_time_s,
        "resumed_from_step": result.resumed_from_step,
    }
    if result.val_loss_adapter is not None and result.val_loss_base is not None:
        finals["val_loss_improvement"] = result.val_loss_base - result.val_loss_adapter
    metrics += [Metric(k, float(v), now, result.steps) for k, v in finals.items() if v is not None]
    return metrics


def log_training_run(
    result: TrainResult,
    *,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    artifacts_dirs: Mapping[str, str | os.PathLike[str]],
    dataset_manifest: Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment_name: str | None = None,
    artifact_root: str | os.PathLike[str] | None = None,
    run_name: str = "lora_adapter",
) -> str:
    """Log a training run; returns its run id.

    Logs into the active MLflow run if there is one (dagster-mlflow's resource starts it and leaves ending
    it to the caller), else starts a run in ``experiment_name`` at ``tracking_uri`` and ends it. Logs
    params, the loss curves per step, the final metrics, lineage tags (``dataset_manifest``) and each of
    ``artifacts_dirs`` (name -> directory, e.g. adapter, tokenizer) plus ``train_metrics.json``.
    """
    active = mlflow.active_run()
    if active is not None:
        client, run_id, own = MlflowClient(), active.info.run_id, False
    else:
        if not (tracking_uri and experiment_name and artifact_root):
            raise RegistryError("no active MLflow run: pass tracking_uri, experiment_name and artifact_root")
        client = _client(tracking_uri)
        exp_id = ensure_experiment(tracking_uri, experiment_name, artifact_root)
        run_id, own = client.create_run(exp_id, run_name=run_name).info.run_id, True
    try:
        all_tags = {
            **{_key(k): _clip(v) for k, v in tags.items()},
            "codellm.train_fingerprint": result.fingerprint,
            "codellm.base_fingerprint": result.base_fingerprint,
        }
        if dataset_manifest is not None:
            all_tags.update(lineage_tags(dataset_manifest))
        metrics = _metrics_of(result, client, run_id)
        client.log_batch(
            run_id,
            params=[Param(_key(k), _clip(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in all_tags.items()],
        )
        for i in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _BATCH])
        client.log_dict(run_id, result.to_dict(), "train_metrics.json")
        if dataset_manifest is not None:
            client.log_dict(run_id, dict(dataset_manifest), "dataset_manifest.json")
        for name, local_dir in artifacts_dirs.items():
            client.log_artifacts(run_id, str(local_dir), artifact_path=name)
    except Exception:
        if own:
            client.set_terminated(run_id, "FAILED")
        raise
    if own:
        client.set_terminated(run_id, "FINISHED")
    return run_id


# ---- model versions and aliases ---------------------------------------------------------------------------


@contextlib.contextmanager
def _tracking(tracking_uri: str, run_id: str | None = None) -> Iterator[None]:
    """Point MLflow's fluent API at ``tracking_uri`` (restored afterwards), inside ``run_id`` if given."""
    prev_tracking, prev_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        active = mlflow.active_run()
        if run_id is None or (active is not None and active.info.run_id == run_id):
            yield
        else:
            with mlflow.start_run(run_id=run_id, nested=active is not None):
                yield
    finally:
        mlflow.set_tracking_uri(prev_tracking)
        mlflow.set_registry_uri(prev_registry)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in ("mlflow", "torch", "transformers", "peft")]


def register_adapter(
    *,
    tracking_uri: str,
    model_name: str,
    adapter_dir: str | os.PathLike[str],
    base_model_dir: str | os.PathLike[str],
    run_id: str,
    dataset_manifest: Mapping[str, Any],
    alias: str | None = "challenger",
    extra_tags: Mapping[str, Any] | None = None,
    base_model_ref: str | None = None,
    tokenizer_dir: str | os.PathLike[str] | None = None,
    lock_url: str | None = None,
    gate: GateRecord | None = None,
) -> ModelVersionInfo:
    """Validate the adapter, log it as a pyfunc model in ``run_id`` and register a new version with
    lineage tags (base, dataset manifest hash, source commits) and the ``gate`` it passed; point
    ``alias`` at it.

    Raises ``AdapterValidationError`` (nothing logged, no version) for a corrupt or mismatched adapter,
    or one that is not the adapter the gate evaluated. ``base_model_ref`` is how the version names its
    base (default: the base's absolute path).
    """
    info = validate_adapter(adapter_dir, base_model_dir)
    if gate is not None and gate.adapter_sha256 != info.sha256:
        raise AdapterValidationError(f"{adapter_dir} (sha256 {info.sha256[:12]}) is not the adapter the eval gate "
                                     f"evaluated (sha256 {gate.adapter_sha256[:12]}): it changed since")
    base_ref = base_model_ref or str(Path(base_model_dir).resolve())
    base_fp = info.base_fingerprint or base_model_fingerprint(base_model_dir)
    tags = {
        "codellm.base_model": base_ref,
        "codellm.base_fingerprint": base_fp,
        "codellm.adapter_sha256": info.sha256,
        "codellm.lora_r": str(info.r),
        **lineage_tags(dataset_manifest),
        **{_key(k): _clip(v) for k, v in (extra_tags or {}).items()},
        **(gate.tags() if gate is not None else {}),
    }
    artifacts = {"adapter": str(adapter_dir)}
    if tokenizer_dir:
        artifacts["tokenizer"] = str(tokenizer_dir)
    with _tracking(tracking_uri, run_id):
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts=artifacts,
            model_config={"base_model": base_ref, "base_fingerprint": base_fp},
            pip_requirements=_pip_requirements(),
            tags={"codellm.adapter_sha256": info.sha256},
        )
    client = _client(tracking_uri)
    with registry_lock(tracking_uri, lock_url):
        with _tracking(tracking_uri):
            mv = mlflow.register_model(logged.model_uri, model_name, tags=tags)
        if alias:
            client.set_registered_model_alias(model_name, alias, str(mv.version))
        return _info(client.get_model_version(model_name, str(mv.version)))


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as e:
        if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def get_alias(tracking_uri: str, model_name: str, alias: str) -> ModelVersionInfo | None:
    """The version ``alias`` points to, or None if the alias (or the model) does not exist."""
    client = _client(tracking_uri)
    version = _alias_version(client, model_name, alias)
    return None if version is None else _info(client.get_model_version(model_name, version))


def set_alias(
    tracking_uri: str,
    model_name: str,
    alias: str,
    version: str | int,
    *,
    expected_current: str | int | None = None,
    lock_url: str | None = None,
) -> ModelVersionInfo:
    """Point ``alias`` at ``version`` under the registry lock.

    Compare-and-set: with ``expected_current`` (a version, or ``ALIAS_ABSENT``) the move happens only if
    the alias still points there, else ``AliasConflict``. The previous target is kept in the model
    version tag ``codellm.alias.<alias>.previous`` for rollbacks.
    """
    client = _client(tracking_uri)
    with registry_lock(tracking_uri, lock_url):
        current = _alias_version(client, model_name, alias)
        if expected_current is not None:
            want = None if str(expected_current) == ALIAS_ABSENT else str(expected_current)
            if current != want:
                raise AliasConflict(
                    f"{model_name}@{alias} points to version {current}, expected {want}: "
                    "it was moved meanwhile; re-read it and decide again"
                )
        try:
            client.get_model_version(model_name, str(version))
        except MlflowException as e:
            raise RegistryError(f"{model_name} has no version {version}: {e.message}") from None
        client.set_registered_model_alias(model_name, alias, str(version))
        now = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(model_name, str(version), f"codellm.alias.{alias}.set_at", now)
        client.set_model_version_tag(
            model_name, str(version), f"codellm.alias.{alias}.previous", str(current)
        )
        return _info(client.get_model_version(model_name, str(version)))


def download_adapter(
    tracking_uri: str, model_name: str, version_or_alias: str | int, dst: str | os.PathLike[str]
) -> Path:
    """Copy a version's peft adapter (by number or alias) to ``dst`` (replaced); returns ``dst``."""
    client = _client(tracking_uri)
    ref = str(version_or_alias)
    version = ref if ref.isdigit() else _alias_version(client, model_name, ref)
    if version is None:
        raise RegistryError(f"{model_name} has no alias {ref!r}; register a model or promote one first")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".download-") as tmp:
        try:
            # resolve through our client: a models:/ URI would be looked up in the default registry
            source = client.get_model_version_download_uri(model_name, version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
            )
        except MlflowException as e:
            raise RegistryError(f"cannot download {model_name} version {version}: {e.message}") from None
        adapter = Path(local) / "artifacts" / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise RegistryError(f"{model_name} version {version} holds no adapter (artifacts/adapter)")
        if dst.exists():
            shutil.rmtree(dst)
        shutil.move(str(adapter), dst)
    return dst


def mlflow_ui_url(tracking_uri_base: str, experiment_id: str | int, run_id: str) -> str:
    """Link to a run in the MLflow UI, e.g. for Dagster metadata."""
    return f"{tracking_uri_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def get_version(tracking_uri: str, model_name: str, version_or_alias: str | int) -> ModelVersionInfo:
    """A version by number or alias; ``RegistryError`` naming what exists when it does not."""
    client = _client(tracking_uri)
    ref = str(version_or_alias)
    version = ref if ref.isdigit() else _alias_version(client, model_name, ref)
    if version is None:
        raise RegistryError(f"{model_name} has no alias {ref!r}; pass a version number or register a model first")
    try:
        return _info(client.get_model_version(model_name, version))
    except MlflowException as e:
        raise RegistryError(f"{model_name} has no version {version} ({e.message}); list them with "
                            "`codellm routes` or the MLflow UI") from None
