"""Typed settings for codellm, loaded from ``codellm.yaml`` (or the path in ``CODELLM_CONFIG``).

Every knob lives here once. Relative paths are resolved against the directory of the settings file,
so the same file works from any working directory. Environment overrides use double underscores:
``CODELLM__TRAINING__MAX_STEPS=10`` sets ``training.max_steps``; ``CODELLM_HOME`` sets ``home``.

The sections are grouped by stage: ``base`` (shared parts), ``data``, ``training``, ``evaluation``, ``serving``;
``root`` holds the root ``Settings``, the loader and ``ClusterEnv``. Import names from this package.
"""

from codellm_assets.settings.base import (
    _ENV_NAME,
    _TOKEN_LOOKING,
    CONFIG_FILE_NAME,
    PROJECT_ROOT,
    SettingsError,
    _env_name,
    _Model,
)
from codellm_assets.settings.data import (
    ChecksSettings,
    CompanyDemoSettings,
    DatasetSettings,
    DataSettings,
    DedupSettings,
    IngestSettings,
    QualitySettings,
    RepoSettings,
    ScrubSettings,
    SourceSettings,
    SourcesSettings,
    _document_quality,
)
from codellm_assets.settings.evaluation import EvalSettings
from codellm_assets.settings.root import ClusterEnv, Settings, _apply_env_overrides, find_config, load_settings
from codellm_assets.settings.serving import (
    AlertSettings,
    CanaryThresholds,
    MonitoringSettings,
    PackagingSettings,
    ProductionThresholds,
    ServingSettings,
    SmtpSettings,
)
from codellm_assets.settings.training import (
    DistributedSettings,
    ModelSettings,
    RegistrySettings,
    TrainingSettings,
)

__all__ = [
    "CONFIG_FILE_NAME", "PROJECT_ROOT", "AlertSettings", "CanaryThresholds", "ChecksSettings", "ClusterEnv",
    "CompanyDemoSettings", "DataSettings", "DatasetSettings", "DedupSettings", "DistributedSettings", "EvalSettings",
    "IngestSettings", "ModelSettings", "MonitoringSettings", "PackagingSettings", "ProductionThresholds",
    "QualitySettings", "RegistrySettings", "RepoSettings", "ScrubSettings", "ServingSettings", "Settings",
    "SettingsError", "SmtpSettings", "SourceSettings", "SourcesSettings", "TrainingSettings", "find_config",
    "load_settings", "_ENV_NAME", "_TOKEN_LOOKING", "_Model", "_apply_env_overrides", "_document_quality",
    "_env_name",
]
