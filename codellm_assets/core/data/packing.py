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

import hashlib
import json
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
MAX_SHARD_BYTES = 256 * 2**20       # per Arrow shard of a split, as `save_to_disk(max_shard_size="256MB")` did
ROW_BYTES_PER_TOKEN = 9             # input_ids and labels int32, attention_mask int8


@dataclass
class PackedSplit:
    """What one split's packing wrote: its shard files, sequences, real tokens (documents + one EOS each)."""

    dir: Path
    files: list[Path] = field(default_factory=list)
    sequences: int = 0
    tokens: int = 0
    documents: int = 0


def _table(ids: np.ndarray, mask: np.ndarray, seq_len: int) -> pa.Table:
    labels = np.where(mask == 1, ids, -100).astype(np.int32)

    def column(a: np.ndarray) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.ravel()), seq_len)

    return pa.table({"input_ids": column(ids), "attention_mask": column(mask), "labels": column(labels)})


class _ShardWriter:
    """Arrow IPC streams of at most ``rows_per_shard`` sequences each, named as ``datasets`` names the shards
    of a saved split (``data-00000-of-00003.arrow``) once the count is known (:meth:`close`)."""

    def __init__(self, split_dir: Path, seq_len: int, rows_per_shard: int) -> None:
        self.dir, self.seq_len, self.rows_per_shard = Path(split_dir), seq_len, max(1, rows_per_shard)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.parts: list[Path] = []
        self._writer, self._rows = None, 0

    def write(self, ids: np.ndarray, mask: np.ndarray | None = None) -> None:
        mask = np.ones_like(ids, dtype=np.int8) if mask is None else mask
        start = 0
        while start < len(ids):
            if self._writer is None or self._rows >= self.rows_per_shard:
                self._next()
            take = min(len(ids) - start, self.rows_per_shard - self._rows)
            table = _table(ids[start:start + take], mask[start:start + take], self.seq_len)
            self._writer.write_table(table)
            self._rows += take
            start += take

    def _next(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.parts.append(self.dir / f".part-{len(self.parts):05d}.arrow")
        schema = _table(np.zeros((0, self.seq_len), np.int32), np.zeros((0, self.seq_len), np.int8),
                        self.seq_len).schema
        self._writer, self._rows = pa.ipc.new_stream(str(self.parts[-1]), schema), 0

    def close(self) -> list[Path]:
        if self._writer is None:          # an empty split is still a valid (empty) shard
            self._next()
        self._writer.close()
        self._writer = None
        n = len(self.parts)
        final = [self.dir / f"data-{i:05d}-of-{n:05d}.arrow" for i in range(n)]
        for part, name in zip(self.parts, final):
            part.rename(name)
        return final


def pack_to_arrow(batches: Iterable[Sequence[Sequence[int]]], split_dir: Path, seq_len: int, eos_id: int, *,
                  pad: bool, max_shard_bytes: int = MAX_SHARD_BYTES) -> PackedSplit:
    """Pack batches of documents' token ids into Arrow shards under ``split_dir`` (see the module docstring),
    each at most about ``max_shard_bytes``."""
    out = PackedSplit(Path(split_dir))
    writer = _ShardWriter(out.dir, seq_len, max_shard_bytes // (seq_len * ROW_BYTES_PER_TOKEN))
    carry = np.zeros(0, dtype=np.int32)
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
            writer.write(flat[:n * seq_len].reshape(n, seq_len))
            out.sequences += n
    if pad and len(carry):
        rest = len(carry)
        ids = np.full((1, seq_len), eos_id, dtype=np.int32)
        ids[0, :rest] = carry
        mask = np.zeros((1, seq_len), dtype=np.int8)
        mask[0, :rest] = 1
        writer.write(ids, mask)
        out.sequences += 1
    out.files = writer.close()
    return out


def write_dataset_dict(root: Path, splits: Mapping[str, PackedSplit]) -> None:
    """Make ``root`` (holding one directory of shards per split, from :func:`pack_to_arrow`) what
    ``datasets.DatasetDict.save_to_disk`` writes - ``dataset_dict.json``, and per split ``state.json`` and
    ``dataset_info.json`` - without copying a byte of the shards (``save_to_disk`` reads them all back
    through memory maps: at 300 MB of corpus half a GB of resident pages, and the time of a copy); then
    check with ``datasets.load_from_disk`` that it loads with every sequence."""
    import datasets

    root = Path(root)
    for packed in splits.values():
        with pa.memory_map(str(packed.files[0])) as source:
            schema = pa.ipc.open_stream(source).schema
        datasets.DatasetInfo(features=datasets.Features.from_arrow_schema(schema)).write_to_directory(
            str(packed.dir))
        fingerprint = hashlib.sha256("".join(f"{f.name}:{f.stat().st_size};" for f in packed.files)
                                     .encode()).hexdigest()[:16]
        state = {"_data_files": [{"filename": f.name} for f in packed.files], "_fingerprint": fingerprint,
                 "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                 "_output_all_columns": False, "_split": None}
        (packed.dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    loaded = datasets.load_from_disk(str(root))
    rows = {name: loaded[name].num_rows for name in splits}
    packed = {name: p.sequences for name, p in splits.items()}
    if rows != packed:
        raise ValueError(f"the dataset written under {root} loads with {rows} sequences, not {packed}: the "
                         "installed `datasets` reads its layout differently; pin the version pyproject.toml names")


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
