"""Settings: the shipped default loads, env overrides apply, bad files fail with messages naming the key."""

import pytest

from codellm_assets.settings import PROJECT_ROOT, SettingsError, load_settings


def test_shipped_default_loads_and_resolves_paths():
    s = load_settings(PROJECT_ROOT / "codellm.yaml", environ={})
    assert [r.name for r in s.repos][0] == "codellm" and s.model.preset == "tiny"
    assert s.home_dir == PROJECT_ROOT / "var"
    assert s.mlflow_tracking_uri == f"sqlite:///{PROJECT_ROOT / 'var' / 'mlflow' / 'mlflow.db'}"
    assert s.store_url.endswith("var/store.db")


def test_env_overrides(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training:\n  max_steps: 40\n")
    s = load_settings(cfg, environ={"CODELLM__TRAINING__MAX_STEPS": "7", "CODELLM_HOME": "/srv/codellm",
                                    "CODELLM__MONITORING__CANARY__MIN_USERS": "9"})
    assert s.training.max_steps == 7 and s.home_dir.as_posix() == "/srv/codellm"
    assert s.monitoring.canary.min_users == 9


def test_config_from_environment_variable(tmp_path):
    cfg = tmp_path / "other.yaml"
    cfg.write_text("home: state\n")
    s = load_settings(environ={"CODELLM_CONFIG": str(cfg)})
    assert s.home_dir == tmp_path / "state"      # relative to the settings file, not the cwd


@pytest.mark.parametrize("text,needle", [
    ("repos: [{name: a}]", "set `path`"),
    ("repos: [{name: a, path: x}, {name: a, path: y}]", "duplicated: ['a']"),
    ("repos: [{name: 'bad name', path: x}]", "repos.0.name"),
    ("quality: {min_lines: -1}", "quality.min_lines"),
    ("training: {max_stepz: 3}", "training.max_stepz"),
    ("monitoring: {canary_steps: [5, 50]}", "end at 100"),
    ("dedup: {backend: minhashx}", "dedup.backend"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("repos: [unclosed", "not valid YAML"),
])
def test_bad_settings_name_the_key(tmp_path, text, needle):
    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError) as e:
        load_settings(cfg, environ={})
    assert needle in str(e.value) and str(cfg) in str(e.value)


def test_missing_file_named_by_env_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={"CODELLM_CONFIG": str(tmp_path / "nope.yaml")})
