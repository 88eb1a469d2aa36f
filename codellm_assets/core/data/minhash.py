"""MinHash machinery for near-dedup: word-token shingles, signatures with rensa or datasketch, LSH bands
and candidate pairs. Both backends sit behind the same functions (``DedupSettings.backend``); rensa is the
default because it computes the same-quality signatures ~9x faster (``benchmarks/dedup.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from codellm_assets.settings import DedupSettings

_TOKEN = re.compile(r"\w+")
MINHASH_SEED = 42
# Band choice: the smallest false-candidate rate among band settings that still make a pair at
# exactly the threshold a candidate with this probability.
MIN_CANDIDATE_PROBABILITY_AT_THRESHOLD = 0.97
SIGNATURE_BATCH = 2000


def tokens(text: str) -> list[str]:
    """Word tokens: runs of letters, digits and underscores (everything else separates)."""
    return _TOKEN.findall(text)


def shingles(text: str, k: int) -> set[str]:
    """The set of ``k``-grams of word tokens, each joined by one space.

    A text with fewer than ``k`` tokens has no shingles: it takes part in exact dedup only (a handful
    of tokens says too little to call two files near duplicates).
    """
    if k < 1:
        raise ValueError(f"shingle size must be >= 1, got {k}")
    toks = tokens(text)
    if len(toks) < k:
        return set()
    return set(map(" ".join, zip(*(toks[i:] for i in range(k)))))


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity of two shingle sets (0.0 when both are empty)."""
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


# ---- backends --------------------------------------------------------------------------------
def sketch_rensa(shingle_sets: list[set[str]], num_perm: int) -> list[Any]:
    from rensa import RMinHash

    return RMinHash.from_token_sets(shingle_sets, num_perm, MINHASH_SEED)


def sketch_datasketch(shingle_sets: list[set[str]], num_perm: int) -> list[Any]:
    from datasketch import MinHash

    encoded = [[s.encode("utf-8", "surrogatepass") for s in sh] for sh in shingle_sets]
    return MinHash.bulk(encoded, num_perm=num_perm, seed=MINHASH_SEED)


def digest(sketch: Any) -> np.ndarray:
    if hasattr(sketch, "hashvalues"):  # datasketch
        return np.asarray(sketch.hashvalues, dtype=np.uint64)
    return np.asarray(sketch.digest(), dtype=np.uint64)


def sketcher(backend: str) -> Callable[[list[set[str]], int], list[Any]]:
    if backend == "rensa":
        return sketch_rensa
    if backend == "datasketch":
        return sketch_datasketch
    raise ValueError(f"unknown dedup backend {backend!r}; use 'rensa' or 'datasketch'")


def minhash_signatures(texts: Iterable[str], settings: DedupSettings) -> np.ndarray:
    """MinHash signatures of ``texts`` as an array of shape (n, num_perm), computed by
    ``settings.backend`` over ``settings.shingle_size`` shingles. Rows of two texts agree in about
    Jaccard x num_perm positions. A text without shingles gets the backend's empty signature."""
    sketch = sketcher(settings.backend)
    rows: list[np.ndarray] = []
    batch: list[set[str]] = []
    for text in texts:
        batch.append(shingles(text, settings.shingle_size))
        if len(batch) >= SIGNATURE_BATCH:
            rows.extend(digest(s) for s in sketch(batch, settings.num_perm))
            batch = []
    if batch:
        rows.extend(digest(s) for s in sketch(batch, settings.num_perm))
    return np.vstack(rows) if rows else np.zeros((0, settings.num_perm), dtype=np.uint64)


def lsh_bands(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band) with bands x rows == num_perm (rensa needs an exact split).

    Among the splits that make a pair at exactly ``threshold`` a candidate with probability >=
    MIN_CANDIDATE_PROBABILITY_AT_THRESHOLD, take the one with the most rows per band (fewest false
    candidates); candidates are verified afterwards, so recall matters more than precision here.
    """
    splits = [(b, num_perm // b) for b in range(1, num_perm + 1) if num_perm % b == 0]

    def p_candidate(b: int, r: int, j: float) -> float:
        return 1.0 - (1.0 - j**r) ** b

    good = [
        (b, r) for b, r in splits if p_candidate(b, r, threshold) >= MIN_CANDIDATE_PROBABILITY_AT_THRESHOLD
    ]
    if not good:
        return max(splits, key=lambda br: p_candidate(*br, threshold))
    return max(good, key=lambda br: br[1])


def candidate_pairs(sketches: list[Any], settings: DedupSettings) -> set[tuple[int, int]]:
    """Index pairs (i < j) that share at least one LSH band."""
    bands, rows = lsh_bands(settings.num_perm, settings.threshold)
    if settings.backend == "rensa":
        from rensa import RMinHashLSH

        lsh = RMinHashLSH(settings.threshold, settings.num_perm, bands)
        lsh.insert_many(sketches)
        neighbours = lsh.query_all(sketches)
    else:
        from datasketch import MinHashLSH

        lsh = MinHashLSH(threshold=settings.threshold, num_perm=settings.num_perm, params=(bands, rows))
        with lsh.insertion_session() as session:
            for i, s in enumerate(sketches):
                session.insert(i, s, check_duplication=False)
        neighbours = [lsh.query(s) for s in sketches]
    return {(min(i, j), max(i, j)) for i, found in enumerate(neighbours) for j in found if i != j}
