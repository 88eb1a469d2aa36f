"""The root ``Settings``, the loader (file lookup, ``CODELLM__SECTION__KEY`` overrides) and ``ClusterEnv``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from codellm_assets.settings.base import CONFIG_FILE_NAME, SettingsError, _Model, duplicates
from codellm_assets.settings.data import (
    ChecksSettings,
    DatasetSettings,
    DataSettings,
    DedupSettings,
    IngestSettings,
    QualitySettings,
    RepoSettings,
    ScrubSettings,
    SourceSettings,
    SourcesSettings,
)
from codellm_assets.settings.evaluation import EvalSettings
from codellm_assets.settings.serving import AlertSettings, MonitoringSettings, PackagingSettings, ServingSettings
from codellm_assets.settings.training import ModelSettings, RegistrySettings, TrainingSettings


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
        dupes = duplicates(names)
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

