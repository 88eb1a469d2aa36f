"""The per-file data stages, incremental: clean -> scrub -> leftover re-scan -> decontamination -> MinHash
signature.

Each function takes one partition's files (dicts with ``path`` and ``content``), looks every file up in its
stage's :class:`~codellm_assets.core.data.blob_cache.StageCache` and computes only the misses. A stage's
cache key is the content hash of the file *as that stage sees it* (the scrubber sees the clean, possibly
truncated text; clean and signature also read the path), and its directory is named by exactly the settings
and source files the stage depends on:

=========== ================================================ ===========================================
stage       key                                              settings hash
=========== ================================================ ===========================================
clean       path + original content                          ``quality`` + filters.py
scrub       clean content                                    ``scrub`` + the scrub package's sources
leftovers   scrubbed content                                 the leftover policy (from ``scrub``) + sources
decontam    scrubbed content                                 the eval items and n-gram length + decontam.py
signature   language (from the path) + scrubbed content      backend, num_perm, shingle_size, code_aware +
                                                             minhash.py, code_text.py, languages.py
=========== ================================================ ===========================================
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from codellm_assets.core.data import filters
from codellm_assets.core.data.blob_cache import (
    StageCache,
    StageStats,
    cached_map,
    code_version,
    content_key,
    stage_hash,
)
from codellm_assets.core.data.languages import language_from_path
from codellm_assets.settings import DedupSettings, QualitySettings, ScrubSettings

_DATA = Path(__file__).resolve().parent
_SCRUB_SOURCES = sorted((_DATA / "scrub").glob("*.py"))

CLEAN_SCHEMA = pa.schema([("reason", pa.string()), ("content", pa.string())])  # content: None = unchanged
SCRUB_SCHEMA = pa.schema([("content", pa.string()), ("counts", pa.string())])  # counts: JSON {kind: n}
LEFTOVER_SCHEMA = pa.schema([("findings", pa.string())])                        # JSON list of findings
SIGNATURE_SCHEMA = pa.schema([("exact", pa.string()), ("chars", pa.int64()), ("sig", pa.binary())])
DECONTAM_SCHEMA = pa.schema([("hits", pa.string())])                            # JSON list of "<item>:<rule>"


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# ---- clean ----------------------------------------------------------------------------------------
def clean_hash(rules: QualitySettings) -> str:
    return stage_hash(rules.model_dump(mode="json"), code_version(_DATA / "filters.py"))


def _clean_batch(rules: QualitySettings, batch: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out = []
    for path, content in batch:
        reason = filters.excluded_reason(path, rules)
        kept = content
        if reason is None:
            reason, kept = filters._content_reason(content, rules)
        out.append({"reason": reason, "content": None if kept is content else kept})
    return out


def clean_partition(records: list[dict[str, Any]], rules: QualitySettings, root: Path, partition: str,
                    workers: int = 1) -> tuple[filters.FilterResult, StageStats]:
    """:func:`filters.apply_quality_rules` over one partition, each verdict cached per (path, content)."""
    result = filters.FilterResult()
    valid = [r for r in records if isinstance(r.get("path"), str) and isinstance(r.get("content"), str)]
    result.dropped[filters.MALFORMED] += len(records) - len(valid)
    if not result.dropped[filters.MALFORMED]:
        del result.dropped[filters.MALFORMED]
    cache = StageCache(root, "clean", clean_hash(rules), partition, CLEAN_SCHEMA)
    keys = [content_key(r["path"], r["content"]) for r in valid]
    values, stats = cached_map(cache, keys, [(r["path"], r["content"]) for r in valid],
                               partial(_clean_batch, rules), sizes=[_utf8(r["content"]) for r in valid],
                               workers=workers)
    for record, value in zip(valid, values):
        if value["reason"] is not None:
            result.dropped[value["reason"]] += 1
        elif value["content"] is None:
            result.kept.append(record)
        else:
            result.truncated += 1
            result.kept.append({**record, "content": value["content"], "bytes": _utf8(value["content"])})
    return result, stats


# ---- scrub ----------------------------------------------------------------------------------------
def scrub_hash(opts: ScrubSettings) -> str:
    return stage_hash(opts.model_dump(mode="json"), code_version(*_SCRUB_SOURCES))


def _scrub_batch(opts: ScrubSettings, batch: list[str]) -> list[dict[str, Any]]:
    import json

    from codellm_assets.core.data.scrub.scrubber import scrub_text

    out = []
    for text in batch:
        res = scrub_text(text, opts)
        out.append({"content": None if res.text == text else res.text,
                    "counts": json.dumps(dict(sorted(res.counts.items())))})
    return out


def scrub_partition(records: list[dict[str, Any]], opts: ScrubSettings, root: Path, partition: str,
                    workers: int = 1) -> tuple[list[dict[str, Any]], dict[str, int], StageStats]:
    """Scrubbed copies of the records (``content``, ``bytes``, ``redactions``) and redactions by type."""
    import json
    from collections import Counter

    cache = StageCache(root, "scrub", scrub_hash(opts), partition, SCRUB_SCHEMA)
    texts = [r["content"] for r in records]
    values, stats = cached_map(cache, [content_key(t) for t in texts], texts, partial(_scrub_batch, opts),
                               sizes=[_utf8(t) for t in texts], workers=workers)
    totals: Counter[str] = Counter()
    rows = []
    for record, value in zip(records, values):
        counts = json.loads(value["counts"])
        totals.update(counts)
        text = record["content"] if value["content"] is None else value["content"]
        rows.append({**record, "content": text, "bytes": _utf8(text), "redactions": sum(counts.values())})
    return rows, dict(totals), stats


# ---- leftover re-scan -----------------------------------------------------------------------------
def _leftover_batch(policy: Any, batch: list[str]) -> list[dict[str, Any]]:
    import json

    from codellm_assets.core.data.scrub.leftovers import find_leftovers

    return [{"findings": json.dumps([dataclasses.asdict(f) for f in find_leftovers(t, policy)])} for t in batch]


def leftovers_partition(texts: list[str], opts: ScrubSettings, root: Path, partition: str,
                        workers: int = 1) -> tuple[list[list[Any]], StageStats]:
    """:func:`find_leftovers` per scrubbed text (cached): a list of Findings per text."""
    import json

    from codellm_assets.core.data.scrub.leftovers import Finding, LeftoverPolicy

    policy = LeftoverPolicy.from_scrub_settings(opts)
    digest = stage_hash(dataclasses.asdict(policy), code_version(*_SCRUB_SOURCES))
    cache = StageCache(root, "leftovers", digest, partition, LEFTOVER_SCHEMA)
    values, stats = cached_map(cache, [content_key(t) for t in texts], texts, partial(_leftover_batch, policy),
                               sizes=[_utf8(t) for t in texts], workers=workers)
    return [[Finding(**f) for f in json.loads(v["findings"])] for v in values], stats


# ---- MinHash signature ----------------------------------------------------------------------------
def signature_hash(settings: DedupSettings) -> str:
    used = {k: getattr(settings, k) for k in ("backend", "num_perm", "shingle_size", "code_aware",
                                              "prose_weight", "normalisation_version")}
    return stage_hash(used, code_version(*(_DATA / f for f in ("minhash.py", "code_text.py", "languages.py"))))


def _signature_batch(settings: DedupSettings, batch: list[tuple[str, str]]) -> list[dict[str, Any]]:
    from codellm_assets.core.data.dedup import exact_hash, text_shingles
    from codellm_assets.core.data.minhash import digest, sketcher

    shingled = [text_shingles(text, path, settings) for path, text in batch]
    nonempty = [sh for sh in shingled if sh]
    sketches = iter(sketcher(settings.backend)(nonempty, settings.num_perm) if nonempty else [])
    out = []
    for (_path, text), sh in zip(batch, shingled):
        sig = digest(next(sketches)).astype("<u8").tobytes() if sh else None
        out.append({"exact": exact_hash(text), "chars": len(text), "sig": sig})
    return out


def signature_key(path: str, text: str) -> str:
    return content_key(language_from_path(path) or "", text)


def signatures_partition(records: list[dict[str, Any]], settings: DedupSettings, root: Path, partition: str,
                         workers: int = 1, compact: bool = True) -> tuple[list[dict[str, Any]], StageStats]:
    """Per record: ``exact`` (whitespace-normalised hash), ``chars`` and ``sig`` (num_perm uint64 as
    bytes; None for a file without shingles), cached. ``compact``: see :func:`blob_cache.cached_map`."""
    cache = StageCache(root, "signature", signature_hash(settings), partition, SIGNATURE_SCHEMA)
    keys = [signature_key(r["path"], r["content"]) for r in records]
    return cached_map(cache, keys, [(r["path"], r["content"]) for r in records],
                      partial(_signature_batch, settings), sizes=[_utf8(r["content"]) for r in records],
                      workers=workers, compact=compact)


def sig_array(sig: bytes | None) -> np.ndarray | None:
    return None if sig is None else np.frombuffer(sig, dtype="<u8").astype(np.uint64)


# ---- decontamination ------------------------------------------------------------------------------
def _decontam_batch(index: Any, batch: list[str]) -> list[dict[str, Any]]:
    import json

    return [{"hits": json.dumps(index.hits(t))} for t in batch]


def decontam_stage(index: Any, root: Path, partition: str) -> StageCache:
    """The decontamination stage's cache of one partition: named by the eval items (index.fingerprint)."""
    digest = stage_hash({"index": index.fingerprint}, code_version(_DATA / "decontam.py"))
    return StageCache(root, "decontam", digest, partition, DECONTAM_SCHEMA)


def decontam_partition(texts: list[str], index: Any, root: Path, partition: str,
                       seen: set[str]) -> tuple[list[list[str]], StageStats]:
    """``index.hits`` (core/data/decontam.py DecontamIndex) per text, cached: a re-run scans only the texts
    it has not seen against the same eval items (the scan reads every n-gram of the text). One batch of a
    partition: its keys are added to ``seen``, and the caller compacts (``decontam_stage(...).compact(seen)``)
    once it has seen them all."""
    import json

    keys = [content_key(t) for t in texts]
    seen.update(keys)
    values, stats = cached_map(decontam_stage(index, root, partition), keys, texts,
                               partial(_decontam_batch, index), sizes=[_utf8(t) for t in texts], compact=False)
    return [json.loads(v["hits"]) for v in values], stats
