"""The `packaged_model` asset and its check on a real Dagster instance and a real (SQLite) MLflow registry: a
registered tiny version becomes a merged directory and a GGUF file, both named in the asset's metadata and
tagged on the model version; a format that cannot run here fails the asset with a clear message."""

from __future__ import annotations

import dagster as dg
import pytest

from codellm_assets.core.training import registry, registry_packages
from codellm_assets.core.training.packaging import bnb4_available, verify_artifact
from codellm_assets.defs.packaging import merged_matches_adapter, packaged_model
from codellm_assets.testing.registered_tiny import register_tiny
from codellm_assets_tests.integration.conftest import resources_for, write_config


def _upstream(reg) -> dg.AssetsDefinition:
    """What `registered_model` returns (its MLflow work is real: `register_tiny` did it)."""
    @dg.asset(name="registered_model", group_name="training")
    def registered_model() -> dict:
        return {"name": reg.model_name, "version": reg.version, "run_id": reg.run_id,
                "base_model_dir": str(reg.base_dir), "adapter_dir": str(reg.adapter_dir)}

    return registered_model


def test_packaged_model_materializes_artifacts_named_in_metadata(tmp_path, instance):
    config = write_config(tmp_path, [])
    home = tmp_path / "home"
    reg = register_tiny(tmp_path / "kit", tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                        artifact_root=home / "mlflow" / "artifacts")
    result = dg.materialize([_upstream(reg), packaged_model, merged_matches_adapter], instance=instance,
                            resources=resources_for(config))
    assert result.success
    meta = result.asset_materializations_for_node("packaged_model")[0].metadata
    info = registry.get_version(reg.tracking_uri, "codellm", reg.version)
    for fmt in ("merged", "gguf"):
        path = meta[f"{fmt}_path"].value
        assert path.startswith(str(home / "models" / "packaged" / f"codellm-v{reg.version}"))
        recorded = registry_packages.package_tags(info, fmt)
        assert meta[f"{fmt}_sha256"].value == recorded["sha256"] == verify_artifact(path)
        assert meta[f"{fmt}_mlflow_artifact"].value == recorded["artifact"]
    assert "| merged |" in meta["artifacts"].value and "| gguf |" in meta["artifacts"].value
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "merged_matches_adapter" and check.passed
    assert check.metadata["prompts"].value == 4


@pytest.mark.skipif(bnb4_available() is None, reason="a GPU is present: bnb4 would succeed")
def test_an_unavailable_format_fails_the_asset_clearly(tmp_path, instance):
    config = write_config(tmp_path, [], packaging={"formats": ["bnb4"]})
    home = tmp_path / "home"
    reg = register_tiny(tmp_path / "kit", tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                        artifact_root=home / "mlflow" / "artifacts")
    result = dg.materialize([_upstream(reg), packaged_model], instance=instance, resources=resources_for(config),
                            raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "packaging codellm v1 as bnb4 failed: 4-bit packaging (bnb4) is unavailable" in \
        failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
