"""Exact and near-duplicate removal across all repositories (MinHash LSH, verified with exact Jaccard).

Pipeline, in order:

1. **Exact**: files whose text is equal after whitespace normalisation (every run of whitespace -> one
   space) are one group; one file of the group is kept.
2. **Near**: the survivors are shingled (``shingle_size``-grams of word tokens; a token is a run of
   ``\\w`` characters, i.e. BigCode's "split on non-alphanumerics"; with ``code_aware`` the code, and a
   hashed sample of its comments and docstrings, :mod:`codellm_assets.core.data.code_text`), MinHashed (``num_perm``
   permutations, rensa or datasketch) and banded (bands chosen so that a pair at exactly ``threshold``
   becomes a candidate with probability >= 0.97) in ``lsh_shards`` independent shards of bands that share
   only the signatures (:mod:`codellm_assets.core.data.lsh_shards`).
3. **Verify**: every LSH candidate pair is checked with the Jaccard similarity of the *exact* shingle
   sets (after a cheap MinHash estimate has ruled out the obvious misses); only pairs with exact
   Jaccard >= ``threshold`` are edges. LSH false positives therefore never drop a file.
4. **Cluster**: union-find over the verified edges gives components. Inside a component the kept file
   is the *centre*: the file with the most verified near duplicates among the files still unassigned;
   it removes every unassigned file within ``threshold`` of it (star clustering), then, breadth first
   along verified edges through files it has removed, every unassigned file whose own exact Jaccard to
   it is >= ``chain_threshold`` (the chain: releases and re-edits of one module drift step by step, and
   star clustering alone kept one file per step). The rest of the component is clustered again the same
   way. So a file is never dropped merely because of a transitive chain A~B~C: every removed file has
   exact Jaccard >= ``chain_threshold`` with the file kept in its place (``near_jaccard``), and a chain
   never passes through a file that stays. Keeping the centre rather than, say, the longest copy
   matters for recall: two edited copies of one original are each close to it but often not to each
   other (measured on the labelled set in ``benchmarks/dedup.py``).

Which file is kept: in an exact group, and among near-duplicate candidates with the same number of
neighbours, **the longest text (in characters), ties broken by the smallest (repo, path, id)**. The
rules use only the documents' content and names, so the result does not depend on the input order.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from codellm_assets.core.data.clusters import near_clusters
from codellm_assets.core.data.code_text import code_shingles
from codellm_assets.core.data.decontam import build_decontam_index, decontaminate, humaneval_items
from codellm_assets.core.data.lsh_shards import band_keys, shard_bands, shard_pairs
from codellm_assets.core.data.minhash import (  # noqa: F401  (re-exported: the dedup API)
    SIGNATURE_BATCH,
    candidate_pairs,
    digest,
    jaccard,
    lsh_bands,
    minhash_signatures,
    shingles,
    sketcher,
    tokens,
)
from codellm_assets.settings import DedupSettings

# The MinHash estimate only pre-filters candidates before the exact check: its standard error at
# 256 permutations is ~0.03, so pairs estimated more than 0.15 below the threshold are hopeless.
ESTIMATE_MARGIN = 0.15


@dataclass(frozen=True)
class Doc:
    """One file to deduplicate. ``repo`` and ``path`` only take part in choosing which copy is kept."""

    id: str
    text: str
    repo: str = ""
    path: str = ""

    @property
    def chars(self) -> int:
        return len(self.text)


@dataclass(frozen=True)
class DocInfo:
    """What dedup needs of a file besides its signature: its names and length (the keep rule)."""

    id: str
    repo: str = ""
    path: str = ""
    chars: int = 0


@dataclass
class DedupResult:
    """What dedup kept and why it removed the rest. Removed ids map to the id of the file kept in their
    place (always a kept id, also for an exact copy of a file that was itself a near duplicate)."""

    kept_ids: list[str]
    exact_duplicates: dict[str, str]
    near_duplicates: dict[str, str]
    near_jaccard: dict[str, float]
    cluster_sizes: list[int]
    dedup_ratio: float
    timings: dict[str, float]
    candidate_pairs: int = 0
    verified_pairs: int = 0

    @property
    def removed(self) -> int:
        return len(self.exact_duplicates) + len(self.near_duplicates)


# ---- text features ---------------------------------------------------------------------------------
def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends (the exact-dedup key)."""
    return " ".join(text.split())


def exact_hash(text: str) -> str:
    """Hex digest of the whitespace-normalised text."""
    return hashlib.blake2b(
        normalize_whitespace(text).encode("utf-8", "surrogatepass"), digest_size=16
    ).hexdigest()


def preference_key(doc: Doc | DocInfo) -> tuple[int, str, str, str]:
    """Sort key of the keep rule: longest first, then the smallest (repo, path, id)."""
    return (-doc.chars, doc.repo, doc.path, doc.id)


def _exact_groups(docs: Sequence[Doc | DocInfo], exact_keys: Sequence[str]) -> tuple[list[int], dict[int, int]]:
    """Indices of exact-group representatives (in preference order) and removed index -> kept index."""
    by_hash: dict[str, list[int]] = {}
    for i, key in enumerate(exact_keys):
        by_hash.setdefault(key, []).append(i)
    reps: list[int] = []
    removed: dict[int, int] = {}
    for members in by_hash.values():
        members.sort(key=lambda i: preference_key(docs[i]))
        reps.append(members[0])
        removed.update({m: members[0] for m in members[1:]})
    reps.sort(key=lambda i: preference_key(docs[i]))
    return reps, removed


def text_shingles(text: str, path: str, settings: DedupSettings) -> set[str]:
    """The shingles near-dedup compares: with ``settings.code_aware`` those of the code, and a hashed sample of
    the comments' and docstrings' (:func:`code_text.code_shingles`), so reworded prose or a replaced header
    does not hide a copy."""
    if settings.code_aware:
        return code_shingles(text, path, settings.shingle_size, settings.prose_weight)
    return shingles(text, settings.shingle_size)


def doc_shingles(doc: Doc, settings: DedupSettings) -> set[str]:
    return text_shingles(doc.text, doc.path, settings)


# Streams (doc index, text) for the wanted indices (sorted), in any order: how verification reads texts.
TextLoader = Callable[[list[int]], Iterable[tuple[int, str]]]


def dedup_documents(
    docs: Sequence[Doc], settings: DedupSettings, progress: Callable[[str], None] | None = None
) -> DedupResult:
    """Exact then near-duplicate removal over ``docs`` (see the module docstring for the rules).

    ``progress`` (optional) is called with the name of each phase as it starts.
    Raises ValueError when two documents share an id.
    """
    say = progress or (lambda _phase: None)
    _check_unique_ids(docs)
    t0 = time.perf_counter()
    say("exact")
    exact_keys = [exact_hash(d.text) for d in docs]
    reps, _ = _exact_groups(docs, exact_keys)
    t_exact = time.perf_counter() - t0
    say("signatures")
    t = time.perf_counter()
    shingled, sketches = _sketch_docs(docs, reps, settings)
    sigs: list[np.ndarray | None] = [None] * len(docs)
    for i, sketch in zip(shingled, sketches):
        sigs[i] = digest(sketch)
    t_sig = time.perf_counter() - t
    result = dedup_signatures(docs, exact_keys, sigs, lambda wanted: ((i, docs[i].text) for i in wanted),
                              settings, progress)
    result.timings = {"exact": round(t_exact, 4), "signatures": round(t_sig, 4),
                      **{k: v for k, v in result.timings.items() if k not in ("exact", "signatures")}}
    result.timings["total"] = round(time.perf_counter() - t0, 4)
    return result


def dedup_signatures(
    docs: Sequence[Doc | DocInfo],
    exact_keys: Sequence[str],
    sigs: Sequence[np.ndarray | None],
    load_texts: TextLoader,
    settings: DedupSettings,
    progress: Callable[[str], None] | None = None,
) -> DedupResult:
    """The same dedup from what the per-file stages cached: each file's ``exact_hash``, its MinHash
    signature (None: no shingles) and its names and length. Texts are read only for the files in candidate
    pairs that the MinHash estimate does not rule out, through ``load_texts``. Same keep-list as
    :func:`dedup_documents` over the same files (tested)."""
    say = progress or (lambda _phase: None)
    _check_unique_ids(docs)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say("exact")
    reps, exact_removed = _exact_groups(docs, exact_keys)
    timings["exact"] = time.perf_counter() - t0

    say("lsh")
    t = time.perf_counter()
    shingled = [i for i in reps if sigs[i] is not None]
    matrix = np.vstack([sigs[i] for i in shingled]) if shingled else np.zeros((0, settings.num_perm), np.uint64)
    bands, rows = lsh_bands(settings.num_perm, settings.threshold)
    keys = band_keys(matrix, bands, rows)
    timings["lsh"] = time.perf_counter() - t

    say("verify")      # shard by shard: only signatures are shared, each pair comes from exactly one shard
    t = time.perf_counter()
    left_parts, right_parts, n_pairs = [], [], 0
    for band_ids in shard_bands(bands, settings.lsh_shards):
        for left, right in shard_pairs(keys, band_ids):
            n_pairs += len(left)
            hopeful = (matrix[left] == matrix[right]).mean(axis=1) >= settings.threshold - ESTIMATE_MARGIN
            left_parts.append(left[hopeful])
            right_parts.append(right[hopeful])
    pos = np.array(shingled, dtype=np.int64)
    left = pos[np.concatenate(left_parts)] if left_parts else np.zeros(0, np.int64)
    right = pos[np.concatenate(right_parts)] if right_parts else np.zeros(0, np.int64)
    wanted = sorted(set(left.tolist()) | set(right.tolist()))
    cache = {i: text_shingles(text, docs[i].path, settings) for i, text in load_texts(wanted)}
    edges: dict[tuple[int, int], float] = {}
    for i, j in zip(left.tolist(), right.tolist()):
        similarity = jaccard(cache[i], cache[j])
        if similarity >= settings.threshold:
            edges[(min(i, j), max(i, j))] = similarity
    timings["verify"] = time.perf_counter() - t

    say("cluster")
    t = time.perf_counter()
    near_removed, near_j = near_clusters(
        edges, lambda i: preference_key(docs[i]), lambda a, b: jaccard(cache[a], cache[b]),
        settings.threshold, settings.chain_threshold)
    timings["cluster"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return _result(docs, exact_removed, near_removed, near_j, timings, n_pairs, len(edges))


def _sketch_docs(
    docs: Sequence[Doc], indices: list[int], settings: DedupSettings
) -> tuple[list[int], list[Any]]:
    """MinHash sketches of the docs at ``indices`` that have shingles; shingle sets are dropped after
    each batch to bound memory. Returns (doc indices that were sketched, sketches), aligned."""
    sketch = sketcher(settings.backend)
    sketched: list[int] = []
    sketches: list[Any] = []
    for start in range(0, len(indices), SIGNATURE_BATCH):
        batch = [(i, doc_shingles(docs[i], settings)) for i in indices[start : start + SIGNATURE_BATCH]]
        batch = [(i, sh) for i, sh in batch if sh]
        sketched.extend(i for i, _ in batch)
        sketches.extend(sketch([sh for _, sh in batch], settings.num_perm))
    return sketched, sketches


def _result(
    docs: Sequence[Doc | DocInfo],
    exact_removed: dict[int, int],
    near_removed: dict[int, int],
    near_j: dict[int, float],
    timings: dict[str, float],
    candidates: int,
    verified: int,
) -> DedupResult:
    def final(i: int) -> int:  # an exact copy of a near duplicate points at the near cluster's keeper
        return near_removed.get(i, i)

    exact = {docs[r].id: docs[final(k)].id for r, k in exact_removed.items()}
    near = {docs[r].id: docs[k].id for r, k in near_removed.items()}
    removed_idx = set(exact_removed) | set(near_removed)
    kept = sorted(d.id for i, d in enumerate(docs) if i not in removed_idx)
    sizes: dict[str, int] = {}
    for kept_id in list(exact.values()) + list(near.values()):
        sizes[kept_id] = sizes.get(kept_id, 1) + 1
    return DedupResult(
        kept_ids=kept,
        exact_duplicates=exact,
        near_duplicates=near,
        near_jaccard={docs[i].id: round(j, 4) for i, j in near_j.items()},
        cluster_sizes=sorted(sizes.values(), reverse=True),
        dedup_ratio=(len(exact) + len(near)) / len(docs) if docs else 0.0,
        timings={k: round(v, 4) for k, v in timings.items()},
        candidate_pairs=candidates,
        verified_pairs=verified,
    )


def _check_unique_ids(docs: Sequence[Doc | DocInfo]) -> None:
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise ValueError(
                f"duplicate document id {d.id!r}: every Doc passed to dedup needs a unique id "
                "(e.g. '<repo>/<path>')"
            )
        seen.add(d.id)


@dataclass
class CorpusResult:
    """The whole stage: decontamination first (so a contaminated file is never the copy kept for a
    cluster), then dedup of the clean files."""

    kept_ids: list[str]
    dedup: DedupResult
    decontam_hits: dict[str, list[str]]
    eval_items: int
    decontam_seconds: float


def dedup_and_decontaminate(
    docs: Sequence[Doc],
    settings: DedupSettings,
    extra_eval_items: Iterable[str | tuple[str, str]] = (),
    progress: Callable[[str], None] | None = None,
) -> CorpusResult:
    """Drop files containing HumanEval or ``extra_eval_items`` text (when ``settings.decontaminate``),
    then exact + near dedup the rest. ``kept_ids`` is sorted."""
    say = progress or (lambda _phase: None)
    hits: dict[str, list[str]] = {}
    n_items = 0
    t = time.perf_counter()
    clean = list(docs)
    if settings.decontaminate:
        say("decontaminate")
        index = build_decontam_index([*humaneval_items(), *extra_eval_items], settings.decontam_ngram)
        n_items = index.size
        kept, hits = decontaminate(docs, index)
        keep = set(kept)
        clean = [d for d in docs if d.id in keep]
    decontam_seconds = time.perf_counter() - t
    result = dedup_documents(clean, settings, progress)
    return CorpusResult(
        kept_ids=result.kept_ids,
        dedup=result,
        decontam_hits=hits,
        eval_items=n_items,
        decontam_seconds=round(decontam_seconds, 4),
    )
