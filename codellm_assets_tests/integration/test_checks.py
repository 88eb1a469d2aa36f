"""Data-quality checks fail on bad data and pass on good data (called directly on real frames/files)."""

import json

import polars as pl

from codellm_assets.defs import checks
from codellm_assets.defs.ingest import SNAPSHOT_SCHEMA
from codellm_assets.resources import SettingsResource


def frame(**overrides) -> pl.DataFrame:
    row = {"repo": "r", "branch": "main", "commit": "a" * 40, "path": "x.py", "language": "python", "bytes": 20,
           "content": "def f():\n    return 1\n", "blob_sha": "b" * 40}
    return pl.DataFrame([{**row, **overrides}], schema=SNAPSHOT_SCHEMA)


def test_schema_check_flags_nulls_and_unknown_languages(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"home: {tmp_path}\n")
    settings = SettingsResource(config_path=str(cfg))
    assert checks.repo_snapshots_schema(settings=settings, repo_snapshots=frame()).passed
    bad = pl.concat([frame(), frame(path=None), frame(language="klingon")])
    result = checks.repo_snapshots_schema(settings=settings, repo_snapshots=bad)
    assert not result.passed
    assert result.metadata["failed_expectations"].value == 2


def _settings(tmp_path, extra: str = "") -> SettingsResource:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"home: {tmp_path}\n{extra}")
    return SettingsResource(config_path=str(cfg))


def test_split_overlap_check(tmp_path):
    settings = _settings(tmp_path)
    manifest = {"split_file_hashes": {"train": ["h1", "h2"], "validation": ["h3"], "holdout": ["h4"]}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert checks.no_split_overlap(settings=settings, training_dataset={"dir": str(tmp_path)}).passed
    manifest["split_file_hashes"]["validation"].append("h2")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    res = checks.no_split_overlap(settings=settings, training_dataset={"dir": str(tmp_path)})
    assert not res.passed and res.metadata["overlapping_files"].value == 1


def test_empty_files_pass_the_snapshot_schema(tmp_path):
    """`__init__.py` files are empty and legitimate in a snapshot (the quality rules drop them later)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"home: {tmp_path}\n")
    settings = SettingsResource(config_path=str(cfg))
    assert checks.repo_snapshots_schema(settings=settings, repo_snapshots=frame(bytes=0, content="")).passed


def test_a_sampled_check_still_fails_on_a_bad_row_outside_the_sample(tmp_path):
    """Above checks.gx_sample_rows GX sees a sample (the metadata says how many rows), and a null path in a row
    it never saw still fails the check: every rule also runs on every row."""
    settings = _settings(tmp_path, "checks: {gx_sample_rows: 10}\n")
    good = pl.concat([frame(path=f"m{i}.py") for i in range(100)])
    result = checks.repo_snapshots_schema(settings=settings, repo_snapshots=good)
    assert result.passed
    assert result.metadata["rows"].value == 100 and result.metadata["rows_checked_by_gx"].value == 10
    assert result.metadata["gx_sampled"].value is True
    bad = pl.concat([good.head(55), frame(path=None), good.tail(44)])   # row 55: not one of every 10th row
    failed = checks.repo_snapshots_schema(settings=settings, repo_snapshots=bad)
    assert not failed.passed and failed.metadata["failed_expectations"].value == 1
