"""Band sharding: each candidate pair comes from exactly one shard, and any number of shards gives the
single-shard keep-list."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from codellm_assets.core.data.dedup import Doc, dedup_documents
from codellm_assets.core.data.lsh_shards import band_keys, shard_bands, shard_pairs
from codellm_assets.settings import DedupSettings
from codellm_assets.testing.near_dups import build_near_dup_set, score


def brute_force_pairs(keys: np.ndarray) -> set[tuple[int, int]]:
    n = len(keys)
    return {(i, j) for i, j in itertools.combinations(range(n), 2) if (keys[i] == keys[j]).any()}


def test_every_colliding_pair_comes_from_exactly_one_shard():
    rng = np.random.default_rng(0)
    sigs = rng.integers(0, 4, size=(60, 32), dtype=np.uint64)     # few values: many collisions
    keys = band_keys(sigs, bands=16, rows=2)
    expected = brute_force_pairs(keys)
    assert len(expected) > 100
    for shards in (1, 3, 16, 40):
        seen = [(a, b) for ids in shard_bands(16, shards) for left, right in shard_pairs(keys, ids)
                for a, b in zip(left.tolist(), right.tolist())]
        assert len(seen) == len(set(seen)) and set(seen) == expected, shards


def test_band_keys_need_an_exact_split():
    with pytest.raises(ValueError, match="3 bands x 5 rows != 16"):
        band_keys(np.zeros((2, 16), dtype=np.uint64), 3, 5)
    with pytest.raises(ValueError, match="shards must be >= 1"):
        shard_bands(4, 0)


def test_equal_bands_collide_and_different_ones_do_not():
    sigs = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [7, 7, 3, 4]], dtype=np.uint64)
    keys = band_keys(sigs, bands=2, rows=2)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] == keys[2, 1] and keys[1, 1] != keys[2, 1]


@pytest.mark.parametrize("shards", [3, 8])
def test_sharded_dedup_gives_the_single_shard_keep_list(shards):
    files = build_near_dup_set(200, seed=4)
    docs = [Doc(f.id, f.text, f.repo, f.path) for f in files]
    one = dedup_documents(docs, DedupSettings())
    many = dedup_documents(docs, DedupSettings(lsh_shards=shards))
    assert one.near_duplicates and (one.kept_ids, one.near_duplicates, one.exact_duplicates) == (
        many.kept_ids, many.near_duplicates, many.exact_duplicates)
    assert one.candidate_pairs == many.candidate_pairs
    assert score(files, {**many.exact_duplicates, **many.near_duplicates})["false_drops"] == []
