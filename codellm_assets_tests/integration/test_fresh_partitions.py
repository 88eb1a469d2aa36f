"""`codellm run` skips a repo partition whose per-repo steps are up to date, and only that: real git repos, the
real Dagster instance and runner; a new commit, a per-repo setting, a lost stored file or --force run it again,
a setting only later steps read does not."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from codellm_assets import fresh_partitions as fresh
from codellm_assets.runner import run_graph
from codellm_assets.settings import Settings, load_settings
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration.conftest import write_config
from codellm_assets_tests.integration.test_data_stage import module, module_repos

pytestmark = pytest.mark.timeout(600)
SELECT = "key:repo_snapshots or key:clean_files or key:scrubbed_corpus"


def test_every_settings_section_is_classified():
    """A new section must say whether the per-repo stages read it (and so whether it re-runs them)."""
    sections = set(Settings.model_fields) - {"home", "repos", "base_dir", "config_file"}
    assert sections == set(fresh.PER_REPO_SECTIONS) | set(fresh.DOWNSTREAM_SECTIONS)
    assert not set(fresh.PER_REPO_SECTIONS) & set(fresh.DOWNSTREAM_SECTIONS)


@pytest.fixture
def two_repos(tmp_path, monkeypatch):
    repos = module_repos(tmp_path, ("payments", "search"), files=4, body_lines=16)
    config = write_config(tmp_path, [{"name": n, "path": str(p), "branches": ["main"]} for n, p in repos.items()])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return repos, config


def _run(config, **kw) -> dict[str, tuple[bool, str]]:
    results = run_graph(load_settings(config), config_path=str(config), selection=SELECT, **kw)
    assert [(r.name, r.partition, r.error) for r in results if not r.success] == []
    return {r.partition: (r.skipped, r.run_id) for r in results}


def _partition_runs(instance: dg.DagsterInstance) -> list[str]:
    return [r.run_id for r in instance.get_runs() if "dagster/partition" in r.tags]


def _edit(config, section: str, **values) -> None:
    raw = yaml.safe_load(config.read_text())
    raw[section] = {**raw.get(section, {}), **values}
    config.write_text(yaml.safe_dump(raw))


def test_only_up_to_date_partitions_are_skipped(two_repos):
    repos, config = two_repos
    first = _run(config, skip_fresh=True)
    assert {p: skipped for p, (skipped, _) in first.items()} == {"payments": False, "search": False}  # nothing yet
    instance = dg.DagsterInstance.get()
    runs = _partition_runs(instance)
    assert len(runs) == 2

    again = _run(config, skip_fresh=True)
    assert again == {p: (True, run_id) for p, (_, run_id) in first.items()}   # the runs that made what is stored
    assert _partition_runs(instance) == runs            # and no new run (git_heads is observed every time)

    commit_files(repos["payments"], {"payments/m9.py": module("payments_9", body_lines=16)}, "a new module")
    moved = _run(config, skip_fresh=True)
    assert moved["payments"][0] is False and moved["search"] == (True, first["search"][1])
    snapshot = instance.get_latest_materialization_event(dg.AssetKey("repo_snapshots"))
    assert snapshot.run_id == moved["payments"][1]

    _edit(config, "eval", company_max_tasks=7)          # read by later steps only: still up to date
    assert all(skipped for skipped, _ in _run(config, skip_fresh=True).values())
    _edit(config, "quality", min_lines=5)               # clean_files reads it: every partition again
    changed = _run(config, skip_fresh=True)
    assert not any(skipped for skipped, _ in changed.values())

    settings = load_settings(config)
    (settings.data_dir / "scrubbed_corpus" / "search.parquet").unlink()   # a cleaned home loses the output
    lost = _run(config, skip_fresh=True)
    assert lost["search"][0] is False and lost["payments"][0] is True
    assert not any(skipped for skipped, _ in _run(config, skip_fresh=False).values())   # --force


def test_a_run_another_launcher_made_is_not_vouched_for(two_repos):
    """A materialization since the fingerprinted run (the UI, the sensor) means the stored output is not the
    one the fingerprint describes: the partition runs again."""
    _, config = two_repos
    _run(config, skip_fresh=True)
    from codellm_assets.definitions import build_defs

    job = build_defs(str(config)).resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.get()
    result = job.execute_in_process(instance=instance, partition_key="search",
                                    asset_selection=[dg.AssetKey(n) for n in ("repo_snapshots", "clean_files",
                                                                                "scrubbed_corpus")])
    assert result.success and fresh.FINGERPRINT_TAG not in instance.get_run_by_id(result.run_id).tags
    after = _run(config, skip_fresh=True)
    assert after["search"][0] is False and after["payments"][0] is True
