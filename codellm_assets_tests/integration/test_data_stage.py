"""The data half of the graph through dg.materialize on real temp git repos: snapshots -> clean ->
scrubbed -> deduped, incremental re-reads, bad repos, and the blocking leftover-secret check."""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest

from codellm_assets.defs import checks, corpus, ingest
from codellm_assets_tests.conftest import commit_files, git
from codellm_assets_tests.integration.conftest import resources_for, write_config

PER_REPO = [ingest.repo_snapshots, corpus.clean_files, corpus.scrubbed_corpus, checks.repo_snapshots_schema,
            checks.clean_files_in_range, checks.no_leftover_secrets]
DATA = PER_REPO + [corpus.deduped_corpus, checks.deduped_corpus_sane]


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma", "omega",
         "river", "stone", "cloud", "maple", "cedar", "falcon", "otter", "badger", "raven", "copper", "silver",
         "amber", "indigo", "velvet", "quartz", "ember", "harbor", "summit"]


def module(name: str, body_lines: int = 12, extra: str = "") -> str:
    """A distinct, realistic module per name (different identifiers and constants): near-dedup must keep it."""
    import random

    rng = random.Random(name)
    lines = [f'"""Module {name}."""', "", f"def {name}(values, {rng.choice(WORDS)}_scale=1):",
             f'    """Compute {name} over values."""']
    for i in range(body_lines):
        a, b, c = rng.sample(WORDS, 3)
        lines.append(f"    {a}_{i} = sum(v * {rng.randint(2, 999)} for v in values if v > {rng.randint(0, 99)}) "
                     f"// ({b}_{c}_{i} := {rng.randint(1, 50)})")
    lines += ["    return " + " + ".join(f"{rng.choice(WORDS)}_{i}" for i in range(3)), "", extra]
    return "\n".join(lines) + "\n"


def module_repos(root, names, *, files: int, body_lines: int) -> dict:
    """{name: path} of new git repos under ``root``, each with ``files`` distinct modules in one commit."""
    repos = {}
    for name in names:
        path = root / name
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        commit_files(path, {f"{name}/m{i}.py": module(f"{name}_{i}", body_lines=body_lines) for i in range(files)},
                     "initial")
        repos[name] = path
    return repos


AWS_ID = "AKIA" + "QWERTYUIOPASDFGH"
SHARED = module("shared_helper")


@pytest.fixture
def two_repos(make_git_repo):
    a = make_git_repo("alpha", {
        "src/one.py": module("one"), "src/two.py": module("two"), "src/shared.py": SHARED,
        "src/config.py": module("config", extra=f'AWS_ACCESS_KEY_ID = "{AWS_ID}"\nADMIN = "ops@corp-internal.io"\n'),
        "assets/logo.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "web/app.min.js": "var a=1;" * 20 + "\n",
    })
    b = make_git_repo("beta", {"lib/three.py": module("three"), "lib/copy_of_shared.py": SHARED,
                               "lib/tiny.py": "x = 1\n"})
    return a, b


def _materialize(selection, config, instance, partition=None):
    return dg.materialize(DATA, selection=selection, resources=resources_for(config), instance=instance,
                          partition_key=partition, raise_on_error=False)


def _meta(result, key):
    mats = result.asset_materializations_for_node(key)
    return {k: v.value for k, v in mats[-1].metadata.items()}


def test_data_stage_end_to_end(tmp_path, two_repos, instance):
    a, b = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "beta", "path": str(b), "branches": ["main"]}])
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    for repo in ("alpha", "beta"):
        res = _materialize(PER_REPO[:3], config, instance, repo)
        assert res.success, repo
    snap = _meta(res, "repo_snapshots")
    assert snap["files"] == 3 and snap["blobs_read"] == 3           # beta: three .py files
    res_a = _materialize(PER_REPO[:3], config, instance, "alpha")   # unchanged: everything reused
    meta_a = _meta(res_a, "repo_snapshots")
    assert meta_a["blobs_read"] == 0 and meta_a["blobs_reused"] == 5
    assert meta_a["skipped"].get("UNKNOWN_LANGUAGE", 0) + meta_a["skipped"].get("NOT_TEXT", 0) >= 1  # the png
    clean = _meta(res_a, "clean_files")
    assert clean["dropped_by_reason"].get("EXCLUDED_BY_MASK") == 1   # app.min.js
    scrubbed = _meta(res_a, "scrubbed_corpus")
    by_type = scrubbed["redactions_by_type"]
    assert by_type.get("aws_access_key") == 1 and by_type.get("email") == 1
    stored = pl.read_parquet(tmp_path / "home/data/scrubbed_corpus/alpha.parquet")
    config_py = stored.filter(pl.col("path") == "src/config.py")["content"][0]
    assert AWS_ID not in config_py and "<SECRET:aws_access_key>" in config_py and "<EMAIL>" in config_py

    res = _materialize([corpus.deduped_corpus, checks.deduped_corpus_sane], config, instance)
    assert res.success
    dd = _meta(res, "deduped_corpus")
    assert dd["files_in"] == 6 and dd["exact_duplicates"] == 1 and dd["files_kept"] == 5   # tiny.py: too short
    kept = pl.read_parquet(tmp_path / "home/data/deduped_corpus.parquet")
    assert kept.filter(pl.col("content") == SHARED).height == 1


def test_incremental_rescan_reads_only_changed_blobs(tmp_path, two_repos, instance):
    a, _ = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]}])
    instance.add_dynamic_partitions("repos", ["alpha"])
    assert _materialize([ingest.repo_snapshots], config, instance, "alpha").success
    commit_files(a, {"src/two.py": module("two_changed")}, "change one file")
    res = _materialize([ingest.repo_snapshots], config, instance, "alpha")
    meta = _meta(res, "repo_snapshots")
    assert meta["blobs_read"] == 1 and meta["blobs_reused"] == 4


def test_git_heads_sensor_requests_only_moved_repos(tmp_path, two_repos, instance):
    a, b = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "beta", "path": str(b), "branches": ["main"]}])
    res = resources_for(config)

    def tick(cursor=None):
        with dg.build_sensor_context(instance=instance, resources=res, cursor=cursor) as ctx:
            return ingest.git_heads_sensor(ctx)

    first = tick()
    assert sorted(r.partition_key for r in first.run_requests) == ["alpha", "beta"]
    assert first.dynamic_partitions_requests[0].partition_keys == ["alpha", "beta"]
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    quiet = tick(first.cursor)
    assert quiet.run_requests == []
    commit_files(b, {"lib/new.py": module("new")}, "beta moves")
    moved = tick(quiet.cursor)
    assert [r.partition_key for r in moved.run_requests] == ["beta"]
    from codellm_assets_tests.conftest import git
    git(b, "reset", "-q", "--hard", "HEAD~1")       # a revert to a sha seen before must re-snapshot too
    reverted = tick(moved.cursor)
    assert [r.partition_key for r in reverted.run_requests] == ["beta"]
    assert all(r.run_key is None for r in reverted.run_requests)   # a reused run key would be skipped


def test_bad_repo_fails_its_partition_only(tmp_path, two_repos, instance):
    a, _ = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "ghost", "path": str(tmp_path / "nope"), "branches": ["main"]},
                                     {"name": "wrongbranch", "path": str(a), "branches": ["release"]}])
    instance.add_dynamic_partitions("repos", ["alpha", "ghost", "wrongbranch"])
    bad = _materialize([ingest.repo_snapshots], config, instance, "ghost")
    assert not bad.success
    failure = next(e for e in bad.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "ghost" in message and "codellm.yaml" in message
    wrong = _materialize([ingest.repo_snapshots], config, instance, "wrongbranch")
    assert not wrong.success
    assert _materialize([ingest.repo_snapshots], config, instance, "alpha").success


def test_leftover_secret_blocks_downstream(tmp_path, make_git_repo, instance):
    """A scrub rule switched off lets an AWS key through; the independent re-scan fails the blocking
    check, and the deduplicated corpus downstream leaves that partition out."""
    leaky = make_git_repo("leaky", {"app/settings.py": module("settings", extra=f'KEY = "{AWS_ID}"\n')})
    fine = make_git_repo("fine", {"app/ok.py": module("ok")})
    config = write_config(tmp_path, [{"name": "leaky", "path": str(leaky), "branches": ["main"]},
                                     {"name": "fine", "path": str(fine), "branches": ["main"]}],
                          scrub={"disabled_rules": ["aws_access_key"]})
    instance.add_dynamic_partitions("repos", ["leaky", "fine"])
    res = _materialize(PER_REPO, config, instance, "leaky")
    evals = {e.check_name: e for e in res.get_asset_check_evaluations()}
    assert evals["no_leftover_secrets"].passed is False
    assert evals["no_leftover_secrets"].metadata["leftovers"].value >= 1
    assert not res.success
    assert _materialize(PER_REPO, config, instance, "fine").success
    res = _materialize([corpus.deduped_corpus], config, instance)
    meta = _meta(res, "deduped_corpus")
    assert meta["blocked_partitions"] == {"leaky": "no_leftover_secrets failed (1 leftovers)"}
    assert meta["repos"] == ["fine"]
    kept = pl.read_parquet(tmp_path / "home/data/deduped_corpus.parquet")
    assert set(kept["repo"]) == {"fine"} and not kept["content"].str.contains(AWS_ID).any()


PASSWORD = "Qm7#vT2pLx9wZr4k"


def test_keyword_password_the_scrubber_missed_blocks_its_partition(tmp_path, make_git_repo, instance):
    """The scrubber's password rule switched off: the check's own keyword/entropy scan (not the scrubber's
    rules) finds the password, and deduped_corpus leaves the partition out, saying why."""
    leaky = make_git_repo("leaky", {"app/db.py": module("db", extra=f'DB_PASSWORD = "{PASSWORD}"\n')})
    fine = make_git_repo("fine", {"app/ok.py": module("ok")})
    config = write_config(tmp_path, [{"name": "leaky", "path": str(leaky), "branches": ["main"]},
                                     {"name": "fine", "path": str(fine), "branches": ["main"]}],
                          scrub={"disabled_rules": ["password"]})
    instance.add_dynamic_partitions("repos", ["leaky", "fine"])
    res = _materialize(PER_REPO, config, instance, "leaky")
    stored = pl.read_parquet(tmp_path / "home/data/scrubbed_corpus/leaky.parquet")
    assert PASSWORD in stored["content"][0]                 # the scrubber really missed it
    evaluation = {e.check_name: e for e in res.get_asset_check_evaluations()}["no_leftover_secrets"]
    assert evaluation.passed is False
    assert [x["type"] for x in evaluation.metadata["examples"].value] == ["Secret Keyword"]
    assert PASSWORD not in str(evaluation.metadata["examples"].value)       # the excerpt is masked
    assert _materialize(PER_REPO, config, instance, "fine").success
    meta = _meta(_materialize([corpus.deduped_corpus], config, instance), "deduped_corpus")
    assert list(meta["blocked_partitions"]) == ["leaky"] and meta["repos"] == ["fine"]
    kept = pl.read_parquet(tmp_path / "home/data/deduped_corpus.parquet")
    assert set(kept["repo"]) == {"fine"} and not kept["content"].str.contains(PASSWORD, literal=True).any()


def test_partition_without_a_check_evaluation_or_with_a_stale_one_is_left_out(tmp_path, two_repos, instance):
    """Fail closed: scrubbed files whose check never ran, or ran on an older materialization, do not flow on."""
    a, b = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "beta", "path": str(b), "branches": ["main"]}])
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    assert _materialize(PER_REPO, config, instance, "alpha").success          # with its check: passes
    unchecked = dg.AssetSelection.assets(*PER_REPO[:3]).without_checks()
    assert _materialize(unchecked, config, instance, "beta").success          # the check never ran
    meta = _meta(_materialize([corpus.deduped_corpus], config, instance), "deduped_corpus")
    assert meta["blocked_partitions"] == {"beta": "no no_leftover_secrets evaluation"}
    assert meta["repos"] == ["alpha"]
    assert _materialize(unchecked, config, instance, "alpha").success         # re-materialized, not re-checked
    meta = _meta(_materialize([corpus.deduped_corpus], config, instance), "deduped_corpus")
    assert meta["blocked_partitions"] == {"alpha": "no_leftover_secrets evaluated an older materialization",
                                          "beta": "no no_leftover_secrets evaluation"}
    assert meta["repos"] == [] and meta["files_kept"] == 0
    assert _materialize(PER_REPO, config, instance, "beta").success           # checked now: flows again
    meta = _meta(_materialize([corpus.deduped_corpus], config, instance), "deduped_corpus")
    assert list(meta["blocked_partitions"]) == ["alpha"] and meta["repos"] == ["beta"]


def test_repo_removed_from_settings_stops_flowing(tmp_path, two_repos, instance):
    a, b = two_repos
    repos = [{"name": "alpha", "path": str(a), "branches": ["main"]},
             {"name": "beta", "path": str(b), "branches": ["main"]}]
    config = write_config(tmp_path, repos)
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    for repo in ("alpha", "beta"):
        assert _materialize(PER_REPO, config, instance, repo).success
    config = write_config(tmp_path, repos[:1])      # beta is taken out (legal asked, say)
    meta = _meta(_materialize([corpus.deduped_corpus], config, instance), "deduped_corpus")
    assert meta["repos"] == ["alpha"] and meta["removed_repos_left_out"] == ["beta"]
    kept = pl.read_parquet(tmp_path / "home/data/deduped_corpus.parquet")
    assert set(kept["repo"]) == {"alpha"}
