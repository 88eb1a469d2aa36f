"""The tiny Llama + LoRA adapter registered as a real MLflow model version (SQLite store in a temp dir), as
`registered_model` leaves it: for packaging and anything else that starts from a registered version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = {"manifest_hash": "e" * 64, "commits": {"acme@main": "c" * 40}}


@dataclass(frozen=True)
class RegisteredTiny:
    tracking_uri: str
    artifact_root: Path
    model_name: str
    version: str
    run_id: str
    base_dir: Path
    adapter_dir: Path


def register_tiny(root: Path, model_name: str = "codellm", tracking_uri: str | None = None,
                  artifact_root: Path | None = None) -> RegisteredTiny:
    """Build the tiny base + adapter under ``root`` and register the adapter as a version (alias challenger)."""
    from codellm_assets.core.training import registry
    from codellm_assets.testing.tiny_model import build_tiny_adapter, build_tiny_model

    base = build_tiny_model(root / "base")
    adapter = build_tiny_adapter(base, root / "adapter")
    tracking_uri = tracking_uri or f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    artifact_root = artifact_root or root / "mlflow" / "artifacts"
    exp_id = registry.ensure_experiment(tracking_uri, "codellm", artifact_root)
    client = registry._client(tracking_uri)
    run_id = client.create_run(exp_id, run_name="lora_adapter").info.run_id
    client.log_artifacts(run_id, str(adapter), artifact_path="adapter")
    client.set_terminated(run_id, "FINISHED")
    info = registry.register_adapter(tracking_uri=tracking_uri, model_name=model_name, adapter_dir=adapter,
                                     base_model_dir=base, run_id=run_id, dataset_manifest=MANIFEST,
                                     tokenizer_dir=base)
    return RegisteredTiny(tracking_uri, artifact_root, model_name, str(info.version), run_id, base, adapter)
