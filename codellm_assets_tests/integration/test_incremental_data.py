"""The per-file caches through the real assets: a re-run reuses every file, a changed file is the only one
recomputed, and the asset metadata says so (reused vs computed, per stage)."""

from __future__ import annotations

from codellm_assets.defs import corpus
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration.conftest import write_config
from codellm_assets_tests.integration.test_data_stage import PER_REPO, _materialize, _meta, module, two_repos

__all__ = ["two_repos"]   # the fixture, shared with test_data_stage


def _cache(result, key):
    return _meta(result, key)["cache"]


def test_rerun_reuses_every_file_and_a_changed_file_is_the_only_one_recomputed(tmp_path, two_repos, instance):
    a, b = two_repos
    config = write_config(tmp_path, [{"name": "alpha", "path": str(a), "branches": ["main"]},
                                     {"name": "beta", "path": str(b), "branches": ["main"]}])
    instance.add_dynamic_partitions("repos", ["alpha", "beta"])
    first = _materialize(PER_REPO[:3], config, instance, "alpha")
    assert first.success
    assert _cache(first, "clean_files")["clean"]["computed"] == 5           # every text file of alpha
    assert _cache(first, "scrubbed_corpus")["scrub"]["computed"] == 4

    again = _materialize(PER_REPO[:3], config, instance, "alpha")
    assert {stage: c["computed"] for stage, c in _cache(again, "scrubbed_corpus").items()} == \
        {"scrub": 0, "signature": 0}
    assert _cache(again, "clean_files")["clean"] == {**_cache(first, "clean_files")["clean"], "computed": 0,
                                                     "reused": 5, "bytes_computed": 0,
                                                     "bytes_reused": _cache(first, "clean_files")["clean"]
                                                     ["bytes_computed"]}

    commit_files(a, {"src/two.py": module("two_changed")}, "change one file")
    changed = _materialize(PER_REPO[:3], config, instance, "alpha")
    assert _cache(changed, "clean_files")["clean"]["computed"] == 1
    scrub = _cache(changed, "scrubbed_corpus")
    assert (scrub["scrub"]["computed"], scrub["scrub"]["reused"]) == (1, 3)
    assert (scrub["signature"]["computed"], scrub["signature"]["reused"]) == (1, 3)

    assert _materialize(PER_REPO[:3], config, instance, "beta").success
    res = _materialize([corpus.deduped_corpus], config, instance)
    assert res.success
    meta = _meta(res, "deduped_corpus")
    assert meta["cache"]["signature"]["computed"] == 0                        # read, not recomputed
    assert meta["files_kept"] == 5 and meta["exact_duplicates"] == 1
