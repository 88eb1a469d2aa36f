"""Which file of the training dataset goes to train, validation or the held-out split, and why.

1. **Held out**, per repo so every repo contributes (:func:`holdout.split_holdout`): by default the files the
   newest commits changed (``time``: the newest ``fraction`` of the repo's files by last commit date, or
   every file changed since a date), else a stable hash of ``repo:path`` (``hash``). A repo whose files all
   carry one date (one commit: nothing is newer than the rest), or whose newest date alone covers more than
   ``MAX_TIME_HOLDOUT_SHARE`` of its files (a formatter run, a licence header), has no usable time order:
   it falls back to the hash split, and the manifest says so.
2. **Feedback examples** (what developers kept in their IDE) always go to train: they are neither a
   benchmark nor a validation set, and they have no commit date.
3. **Train vs held out**: a train candidate that is an exact (whitespace-normalised) or near copy
   (MinHash LSH candidates, verified with the exact Jaccard of the code-aware shingles at
   ``dedup.threshold``, the corpus dedup's rule) of a held-out file is dropped from train, so the benchmark
   never asks about code the model saw under another name. Each drop is counted with its reason.
4. **Validation**: a hash split (normalised content) among the remaining corpus files; a feedback example
   that is an exact copy of a validation file is dropped (a file in two splits would fail the blocking
   ``no_split_overlap`` check).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from codellm_assets.core.data.dedup import Doc, doc_shingles, exact_hash
from codellm_assets.core.data.holdout import split_holdout
from codellm_assets.core.data.lsh_shards import band_keys
from codellm_assets.core.data.minhash import digest, jaccard, lsh_bands, sketcher
from codellm_assets.core.data.tokenization import normalized_content_hash, split_by_file_hash
from codellm_assets.settings import DedupSettings

Record = Mapping[str, Any]
# Above this share of a repo held out by its newest date, "the newest files" is most of the repo: no holdout.
MAX_TIME_HOLDOUT_SHARE = 0.5
MAX_EXAMPLES = 10


@dataclass
class DatasetSplits:
    """The three splits and what the manifest says about them (``info``)."""

    splits: dict[str, list[Record]]
    info: dict[str, Any] = field(default_factory=dict)


def _iso(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def _repo_holdout(records: list[Record], *, split: str, fraction: float, dates: Mapping | None,
                  since: datetime | None) -> tuple[list[Record], list[Record], str, str | None]:
    """(train, held out, the split used, why it fell back to hash) for one repo's files."""
    if split == "hash":
        return *split_holdout(records, split="hash", fraction=fraction), "hash", None
    train, held = split_holdout(records, split="time", fraction=fraction, dates=dates, since=since)
    if since is None and fraction > 0:
        stamps = {dates[(r["repo"], r["path"])] for r in records}
        why = ("all files share one commit date" if len(stamps) < 2 else
               f"the newest date holds {len(held)}/{len(records)} files" if len(held) > MAX_TIME_HOLDOUT_SHARE
               * len(records) else None)
        if why:
            return *split_holdout(records, split="hash", fraction=fraction), "hash", why
    return train, held, "time", None


def hold_out(corpus: Sequence[Record], *, split: str, fraction: float, dates: Mapping | None = None,
             since: datetime | None = None) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """(train candidates, held out, info) of the corpus files, decided per repo (module doc, step 1)."""
    by_repo: dict[str, list[Record]] = defaultdict(list)
    for r in corpus:
        by_repo[str(r["repo"])].append(r)
    train: list[Record] = []
    held: list[Record] = []
    per_repo: dict[str, str] = {}
    fallback: dict[str, str] = {}
    cuts: dict[str, str] = {}
    for repo in sorted(by_repo):
        t, h, used, why = _repo_holdout(by_repo[repo], split=split, fraction=fraction, dates=dates, since=since)
        train += t
        held += h
        per_repo[repo] = used
        if why:
            fallback[repo] = f"{why}: hash split"
        if used == "time" and h:
            cuts[repo] = _iso(min(dates[(r["repo"], r["path"])] for r in h))
    info = {"holdout_split": split, "holdout_fraction": fraction,
            "holdout_since": since.isoformat() if since else None, "holdout_split_per_repo": per_repo,
            "holdout_fallback": fallback, "holdout_cut_dates": cuts,
            "holdout_cut_date": min(cuts.values()) if cuts else None}
    return train, held, info


def _key(r: Record) -> str:
    return f"{r.get('repo')}:{r.get('branch', '')}:{r.get('path')}"


def copies_of_references(candidates: Sequence[Record], references: Sequence[Record], settings: DedupSettings,
                         cache_dir: Path | None = None) -> dict[int, tuple[str, int, float]]:
    """Candidate index -> (reason, reference index, Jaccard) for each candidate that is an exact
    (``exact_copy_of_holdout``) or near (``near_copy_of_holdout``) copy of a reference file. ``cache_dir``:
    the blob cache, whose MinHash signatures (corpus dedup's, per repo) are reused; shingle sets are then
    built only for the files LSH pairs up, to verify them."""
    exact = {exact_hash(str(r["content"])): j for j, r in enumerate(references)}
    found: dict[int, tuple[str, int, float]] = {}
    for i, c in enumerate(candidates):
        j = exact.get(exact_hash(str(c["content"])))
        if j is not None:
            found[i] = ("exact_copy_of_holdout", j, 1.0)
    rest = [i for i in range(len(candidates)) if i not in found]
    if not references or not rest:
        return found
    records = [*references, *(candidates[i] for i in rest)]
    docs = [Doc(_key(r), str(r["content"]), str(r["repo"]), str(r["path"])) for r in records]
    sets: dict[int, set[str]] = {}

    def shingled(k: int) -> set[str]:
        if k not in sets:
            sets[k] = doc_shingles(docs[k], settings)
        return sets[k]

    sigs = _signatures(records, settings, cache_dir, shingled)
    live = [k for k, sig in enumerate(sigs) if sig is not None]
    if not live:
        return found
    keys = band_keys(np.vstack([sigs[k] for k in live]), *lsh_bands(settings.num_perm, settings.threshold))
    n_ref = sum(1 for k in live if k < len(references))
    ref_keys = [dict() for _ in range(keys.shape[1])]
    for row in range(n_ref):
        for b, key in enumerate(keys[row].tolist()):
            ref_keys[b].setdefault(key, []).append(live[row])
    for row in range(n_ref, len(live)):
        k = live[row]
        refs = {j for b, key in enumerate(keys[row].tolist()) for j in ref_keys[b].get(key, ())}
        best = max(((jaccard(shingled(k), shingled(j)), j) for j in refs), default=(0.0, -1))
        if best[0] >= settings.threshold:
            found[rest[k - len(references)]] = ("near_copy_of_holdout", best[1], round(best[0], 4))
    return found


def _signatures(records: Sequence[Record], settings: DedupSettings, cache_dir: Path | None,
                shingled) -> list[np.ndarray | None]:
    """Each record's MinHash signature (None: no shingles): from the blob cache's per-repo signature stage
    (what corpus dedup stored for the same text and settings) or, without a cache, sketched here from
    ``shingled(k)``, record k's shingle set."""
    if cache_dir is not None:
        from codellm_assets.core.data.file_stages import sig_array, signatures_partition

        by_repo: dict[str, list[int]] = defaultdict(list)
        for k, r in enumerate(records):
            by_repo[str(r["repo"])].append(k)
        out: list[np.ndarray | None] = [None] * len(records)
        for repo, ks in by_repo.items():
            values, _ = signatures_partition([{"path": str(records[k]["path"]), "content": str(records[k]["content"])}
                                              for k in ks], settings, cache_dir, repo, compact=False)
            for k, value in zip(ks, values):
                out[k] = sig_array(value["sig"])
        return out
    nonempty = [k for k in range(len(records)) if shingled(k)]
    sketches = sketcher(settings.backend)([shingled(k) for k in nonempty], settings.num_perm) if nonempty else []
    out = [None] * len(records)
    for k, sk in zip(nonempty, sketches):
        out[k] = digest(sk)
    return out


def plan_splits(corpus: Sequence[Record], feedback: Sequence[Record] = (), *, holdout_split: str = "time",
                holdout_fraction: float = 0.05, validation_fraction: float = 0.1, dates: Mapping | None = None,
                since: datetime | None = None, dedup: DedupSettings | None = None,
                cache_dir: Path | None = None) -> DatasetSplits:
    """The splits of the training dataset (see the module doc) with the manifest's account of them
    (``cache_dir``: the blob cache, for the corpus dedup's signatures)."""
    dedup = dedup or DedupSettings()
    candidates, held, info = hold_out(corpus, split=holdout_split, fraction=holdout_fraction, dates=dates,
                                      since=since)
    n_corpus = len(candidates)
    pool = [*candidates, *feedback]
    copies = copies_of_references(pool, held, dedup, cache_dir)
    dropped = Counter(reason for reason, _, _ in copies.values())
    examples = [{"train": _key(pool[i]), "holdout": _key(held[j]), "reason": reason, "jaccard": sim}
                for i, (reason, j, sim) in sorted(copies.items())[:MAX_EXAMPLES]]
    corpus_train = [r for i, r in enumerate(pool[:n_corpus]) if i not in copies]
    feedback_train = [r for i, r in enumerate(pool[n_corpus:], n_corpus) if i not in copies]
    splits = split_by_file_hash(corpus_train, validation_fraction, 0.0)
    in_validation = {normalized_content_hash(str(r["content"])) for r in splits["validation"]}
    kept_feedback = [r for r in feedback_train if normalized_content_hash(str(r["content"])) not in in_validation]
    dropped["copy_of_validation"] += len(feedback_train) - len(kept_feedback)
    splits["train"] = sorted([*splits["train"], *kept_feedback],
                             key=lambda r: (str(r.get("repo", "")), str(r.get("path", ""))))
    splits["holdout"] = sorted(held, key=lambda r: (str(r.get("repo", "")), str(r.get("path", ""))))
    info["train_dropped"] = {k: v for k, v in sorted(dropped.items()) if v}
    info["train_dropped_examples"] = examples
    info["feedback_in_train"] = len(kept_feedback)
    return DatasetSplits(splits, info)
