"""Streaming packing: token ids -> fixed-length sequences written as Arrow shards, never a list of them all.

Documents are concatenated as ``doc EOS doc EOS ...`` and cut into ``seq_len`` windows as they come: only the
tail shorter than one window is carried from one batch of documents to the next, and each batch's windows are
written to an Arrow IPC stream (the file format HF ``datasets`` memory-maps: ``Dataset.from_file``) and
dropped. The train split drops the last partial window; validation pads it with EOS (attention_mask 0,
labels -100). Columns: input_ids, attention_mask (int8), labels, each a fixed-size list of ``seq_len``.

Token ids come from :class:`TokenEncoder`, which caches each document's ids per repo partition by content
hash (+ whether it got FIM) under a hash of the tokenizer's files and the dataset settings that change ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from codellm_assets.core.data.blob_cache import StageCache, StageStats, code_version, content_key, stage_hash

# Characters of documents encoded (and packed) at a time. Measured on the 100 MB benchmark corpus (44 MB after
# dedup), training_dataset's peak RSS / build time: 16 M 1.16 GB / 85 s, 4 M 0.92 GB / 67 s, 1 M 0.88 GB / 82 s
# (each batch's ids are Python lists, and a batch also writes one token-cache shard per repo).
BATCH_CHARS = 4_000_000
TOKEN_SCHEMA = pa.schema([("ids", pa.list_(pa.int32()))])


@dataclass
class PackedSplit:
    """What one split's packing wrote: sequences, real tokens (documents + one EOS each) and files."""

    path: Path
    sequences: int = 0
    tokens: int = 0
    documents: int = 0


def _table(ids: np.ndarray, mask: np.ndarray, seq_len: int) -> pa.Table:
    labels = np.where(mask == 1, ids, -100).astype(np.int32)

    def column(a: np.ndarray) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), seq_len)

    return pa.table({"input_ids": column(ids), "attention_mask": column(mask), "labels": column(labels)})


def pack_to_arrow(batches: Iterable[Sequence[Sequence[int]]], path: Path, seq_len: int, eos_id: int, *,
                  pad: bool) -> PackedSplit:
    """Pack batches of documents' token ids into ``path`` (Arrow stream); see the module docstring."""
    out = PackedSplit(Path(path))
    carry = np.zeros(0, dtype=np.int32)
    writer = None
    try:
        for docs in batches:
            if not docs:
                continue
            pieces = [carry]
            for ids in docs:
                pieces += [np.asarray(ids, dtype=np.int32), np.array([eos_id], dtype=np.int32)]
                out.tokens += len(ids) + 1
                out.documents += 1
            flat = np.concatenate(pieces)
            n = len(flat) // seq_len
            carry = flat[n * seq_len:].copy()
            if n:
                writer = _write(writer, path, flat[:n * seq_len].reshape(n, seq_len), None, seq_len)
                out.sequences += n
        if pad and len(carry):
            rest = len(carry)
            ids = np.full((1, seq_len), eos_id, dtype=np.int32)
            ids[0, :rest] = carry
            mask = np.zeros((1, seq_len), dtype=np.int8)
            mask[0, :rest] = 1
            writer = _write(writer, path, ids, mask, seq_len)
            out.sequences += 1
        if writer is None:    # an empty split is still a valid (empty) shard
            writer = _write(None, path, np.zeros((0, seq_len), np.int32), None, seq_len)
    finally:
        if writer is not None:
            writer.close()
    return out


def _write(writer, path: Path, ids: np.ndarray, mask: np.ndarray | None, seq_len: int):
    table = _table(ids, np.ones_like(ids, dtype=np.int8) if mask is None else mask, seq_len)
    if writer is None:
        writer = pa.ipc.new_stream(str(path), table.schema)
    writer.write_table(table)
    return writer


# ---- token ids, cached per file -------------------------------------------------------------------
@dataclass
class TokenEncoder:
    """Token ids per record, in batches, from the cache or ``encode`` (texts -> ids) on a miss.

    ``encode(records, fim)`` must be deterministic given the tokenizer, ``settings`` and ``key_extra`` of
    each record (the FIM draw is seeded by the document's content, so it is); ``key_extra(record)``: what
    else a record's ids depend on (its repository context's index, core/data/fim_context.py)."""

    encode: Callable[[list[Mapping[str, Any]], bool], list[list[int]]]
    cache_root: Path | None
    tokenizer_hash: str
    settings: Mapping[str, Any]
    stats: StageStats = field(default_factory=StageStats)
    keys_by_partition: dict[str, set[str]] = field(default_factory=dict)
    key_extra: Callable[[Mapping[str, Any]], str] | None = None

    def _digest(self) -> str:
        return stage_hash({"tokenizer": self.tokenizer_hash, **self.settings}, code_version(
            Path(__file__).with_name("tokenization.py"), Path(__file__).with_name("encoding.py")))

    def batches(self, records: Iterable[Mapping[str, Any]], *, fim: bool) -> Iterator[list[Sequence[int]]]:
        """Token ids of ``records`` (in order), a batch of about BATCH_CHARS characters at a time (int32
        arrays with a cache; without one, what ``encode`` returns)."""
        batch: list[Mapping[str, Any]] = []
        chars = 0
        for r in records:
            batch.append(r)
            chars += len(r["content"])
            if chars >= BATCH_CHARS:
                yield self._ids(batch, fim)
                batch, chars = [], 0
        if batch:
            yield self._ids(batch, fim)

    def _ids(self, batch: list[Mapping[str, Any]], fim: bool) -> list[Sequence[int]]:
        texts = [str(r["content"]) for r in batch]
        if self.cache_root is None:
            self.stats.computed += len(texts)
            return self.encode(batch, fim)
        extra = self.key_extra if fim and self.key_extra else (lambda r: "")
        keys = [content_key(t) + (":fim" if fim else "") + extra(r) for t, r in zip(texts, batch)]
        digest = self._digest()
        found: dict[str, np.ndarray] = {}   # int32 arrays: slices of the cached column, or just encoded
        by_partition: dict[str, list[int]] = {}
        for i, r in enumerate(batch):
            by_partition.setdefault(str(r.get("repo") or "_"), []).append(i)
        for partition, idx in by_partition.items():
            cache = StageCache(self.cache_root, "tokens", digest, partition, TOKEN_SCHEMA)
            self.keys_by_partition.setdefault(partition, set()).update(keys[i] for i in idx)
            found.update(cache.lookup_arrays((keys[i] for i in idx), "ids"))
            misses = [i for i in dict.fromkeys(i for i in idx if keys[i] not in found)]
            unique = list({keys[i]: i for i in misses}.values())
            if unique:
                ids = self.encode([batch[i] for i in unique], fim)
                cache.add([{"key": keys[i], "ids": x} for i, x in zip(unique, ids)])
                found.update({keys[i]: np.asarray(x, dtype=np.int32) for i, x in zip(unique, ids)})
            n_miss, miss_chars = len(misses), sum(len(texts[i]) for i in misses)
            self.stats.computed += n_miss
            self.stats.reused += len(idx) - n_miss
            self.stats.bytes_computed += miss_chars          # characters, for the metadata
            self.stats.bytes_reused += sum(len(texts[i]) for i in idx) - miss_chars
        return [found[k] for k in keys]

    def compact(self) -> None:
        """Drop cached ids of files no longer in the dataset (once the cache has many shards)."""
        if self.cache_root is None:
            return
        for partition, keys in self.keys_by_partition.items():
            StageCache(self.cache_root, "tokens", self._digest(), partition, TOKEN_SCHEMA).compact(keys)
