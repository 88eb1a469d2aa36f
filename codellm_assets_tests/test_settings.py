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


def test_default_file_is_the_one_in_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / "codellm.yaml").write_text("home: here\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.config_file == str(tmp_path / "codellm.yaml") and s.home_dir == tmp_path / "here"


def test_no_settings_file_is_a_clear_error_not_another_checkouts_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)      # the source checkout has a codellm.yaml; it must not be picked up
    with pytest.raises(SettingsError, match="CODELLM_CONFIG") as e:
        load_settings(environ={})
    assert str(tmp_path / "codellm.yaml") in str(e.value)


def test_summary_names_the_settings_file_and_home(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(f"home: {tmp_path / 'state'}\nrepos: []\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dh"), "COLUMNS": "300"}
    out = subprocess.run([sys.executable, "-m", "codellm_assets.cli", "summary"], cwd=tmp_path, text=True,
                         capture_output=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    said = out.stdout + out.stderr     # rich prints to stderr
    assert f"Settings:    {cfg}" in said and f"home {tmp_path / 'state'}" in said


@pytest.mark.parametrize("environ, expected", [
    ({}, ("default", None, None)),
    ({"CODELLM_DAGSTER_EXECUTOR": " K8S ", "CODELLM_GPU_IMAGE": "r/gpu:1",
      "CODELLM_K8S_MAX_CONCURRENT_STEPS": "4"}, ("k8s", "r/gpu:1", 4)),
])
def test_cluster_environment_is_read_in_settings(environ, expected):
    from codellm_assets.settings import ClusterEnv

    env = ClusterEnv.from_environ(environ)
    assert (env.executor, env.gpu_image, env.max_concurrent_steps) == expected


def test_a_bad_cluster_variable_names_itself():
    from codellm_assets.settings import ClusterEnv

    with pytest.raises(ValueError, match="CODELLM_K8S_MAX_CONCURRENT_STEPS"):
        ClusterEnv.from_environ({"CODELLM_K8S_MAX_CONCURRENT_STEPS": "0"})


_COMPANY = "repos:\n  - name: acme\n    path: samples/acme\n"


@pytest.mark.parametrize("text,needle", [
    (_COMPANY + "    seed_company_demo: {seed: 1, services: 8}\n", None),
    (_COMPANY + "    seed_company_demo: {}\n", None),
    (_COMPANY + "    seed_company_demo: {services: 2}\n", "repos.0.seed_company_demo.services"),
    (_COMPANY + "    seed_company_demo: {seed: -1}\n", "repos.0.seed_company_demo.seed"),
    (_COMPANY + "    seed_company_demo: {colour: red}\n", "repos.0.seed_company_demo.colour"),
    (_COMPANY + "    seed_company_demo: {}\n    seed_from_package: click\n", "keep one"),
    ("repos:\n  - name: acme\n    url: https://example.invalid/acme.git\n    seed_company_demo: {}\n", "remove `url`"),
    ("model: {tiny_pretrain_source: dataset}\n", None),
    ("model: {tiny_pretrain_source: public, tiny_pretrain_packages: [click, jinja2, attr]}\n", None),
    ("model: {tiny_pretrain_source: web}\n", "model.tiny_pretrain_source"),
    ("model: {tiny_pretrain_packages: []}\n", "tiny_pretrain_packages"),
    ("model: {tiny_pretrain_source: dataset, tiny_pretrain_packages: []}\n", None),
    ("model: {tiny_pretrain_packages: [not-a-module]}\n", "not importable module names"),
    ("model: {tiny_pretrain_fim_rate: 1.5}\n", "model.tiny_pretrain_fim_rate"),
])
def test_company_seed_and_pretraining_source_are_validated(tmp_path, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    if needle is None:
        load_settings(cfg, environ={})
        return
    with pytest.raises(SettingsError, match=needle.replace(".", r"\.").replace("`", "`")):
        load_settings(cfg, environ={})


def test_the_shipped_default_generates_the_company_repo_and_pretrains_on_public_code():
    s = load_settings(PROJECT_ROOT / "codellm.yaml", environ={})
    company = [r for r in s.repos if r.seed_company_demo is not None]
    assert len(company) == 1 and company[0].seed_company_demo.seed == 0 and not company[0].url
    assert s.model.tiny_pretrain_source == "public" and "click" in s.model.tiny_pretrain_packages
    assert s.dataset.fim_rate > 0          # the repo benchmark's prompts are FIM: training must have some
