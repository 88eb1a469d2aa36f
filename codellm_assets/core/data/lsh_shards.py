"""LSH candidate pairs from MinHash signatures alone, split into independent shards of bands.

Global near-dedup must not hold a corpus in memory, nor one ever-growing set of candidate pairs. Here the
signatures (``n x num_perm`` integers, ~2 KB a file at 256 permutations) are all that is shared: each band
is ``rows`` consecutive signature values hashed to one 64-bit key, bands are dealt round-robin to
``shards``, and a shard yields the pairs of files whose keys collide in one of its bands. A pair that
collides in several bands is yielded only by the shard of the *first* such band, so every candidate pair
appears exactly once over all shards, with no shared set: the shards can run in any order, in other
processes or pods (each needs the signatures only), and their verified edges are merged with union-find.
One shard or many give the same pairs, hence the same keep-list (tested).

This is the banding of the BigCode/datatrove dedup pipelines (bands -> buckets -> pairs -> union-find).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)   # 64-bit golden-ratio multiplier (Fibonacci hashing)


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (file, band): a mix of the band's ``rows`` signature values. Shape (n, bands)."""
    n, num_perm = signatures.shape
    if bands * rows != num_perm:
        raise ValueError(f"{bands} bands x {rows} rows != {num_perm} permutations")
    sig = signatures.astype(np.uint64, copy=False).reshape(n, bands, rows)
    keys = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):        # wrapping multiplication is the point of the mix
        for r in range(rows):
            keys = (keys ^ sig[:, :, r]) * _MIX
            keys ^= keys >> np.uint64(29)
    return keys


def shard_bands(bands: int, shards: int) -> list[list[int]]:
    """Band indices per shard, round-robin (shard s holds bands s, s + shards, ...)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return [list(range(s, bands, shards)) for s in range(min(shards, bands))]


def shard_pairs(keys: np.ndarray, band_ids: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(left, right) index arrays, left < right, of the pairs that collide in one of ``band_ids`` and in
    no earlier band, one bucket at a time (memory: the largest bucket's pairs)."""
    for b in band_ids:
        column = keys[:, b]
        order = np.argsort(column, kind="stable")
        sorted_keys = column[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(sorted_keys)]
        for start, end in zip(starts[ends - starts > 1].tolist(), ends[ends - starts > 1].tolist()):
            members = np.sort(order[start:end])
            i, j = np.triu_indices(len(members), k=1)
            left, right = members[i], members[j]
            if b:
                first_here = ~(keys[left, :b] == keys[right, :b]).any(axis=1)
                left, right = left[first_here], right[first_here]
            if len(left):
                yield left, right
