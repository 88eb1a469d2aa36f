"""Global dedup + decontamination over partitions stored as Parquet, touching texts as little as it can.

1. **Index** (one streaming pass, row-group batches): per file its names and length, its decontamination
   verdict (:func:`file_stages.decontam_partition`), and its MinHash signature and exact hash
   (:func:`file_stages.signatures_partition`), each cached by content (computed and stored on a miss).
   Only the signature index stays in memory (~2 KB a file at 256 permutations), never the texts.
2. **Dedup** (:func:`dedup.dedup_signatures`): exact groups from the hashes, LSH band shards over the
   signatures, and only the candidate pairs the MinHash estimate keeps are verified: their texts are
   streamed back from the partitions (one more pass that reads just those rows).
3. **Keep-list**: the kept doc ids, applied partition by partition by the caller.

Doc ids are ``repo:branch:path`` (unique across partitions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from codellm_assets.core.data import dedup
from codellm_assets.core.data.blob_cache import StageStats
from codellm_assets.core.data.decontam import build_decontam_index, humaneval_items
from codellm_assets.core.data.file_stages import decontam_partition, decontam_stage, sig_array, signatures_partition
from codellm_assets.settings import DedupSettings

READ_BATCH = 2048   # rows per streamed batch


def doc_id(row: dict) -> str:
    return f"{row['repo']}:{row['branch']}:{row['path']}"


def stream_rows(path: Path, columns: list[str], batch_size: int = READ_BATCH) -> Iterator[list[dict]]:
    """A partition's rows in batches of dicts (only ``columns``), one row group batch at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
        yield batch.to_pylist()


@dataclass
class CorpusDedup:
    """The outcome: kept ids per partition, and the dedup / decontamination details for metadata."""

    kept: dict[str, set[str]]
    dedup: dedup.DedupResult
    decontam_hits: dict[str, list[str]]
    eval_items: int
    files_in: int
    signatures: StageStats = field(default_factory=StageStats)
    texts_read_for_verify: int = 0
    decontamination: StageStats = field(default_factory=StageStats)     # the cached verdicts' reuse


def dedup_partitions(sources: dict[str, Path], settings: DedupSettings, cache_root: Path,
                     extra_eval_items: Iterable[str | tuple[str, str]] = (), workers: int = 1,
                     progress: Callable[[str], None] | None = None) -> CorpusDedup:
    """Decontaminate, then exact + near dedup the files of ``sources`` ({partition: Parquet path with
    repo, branch, path, content}). Same keep-list as :func:`dedup.dedup_and_decontaminate` over the
    concatenated files."""
    say = progress or (lambda _m: None)
    index = None
    if settings.decontaminate:
        index = build_decontam_index([*humaneval_items(), *extra_eval_items], settings.decontam_ngram)
    infos: list[dedup.DocInfo] = []
    exact: list[str] = []
    sigs: list[np.ndarray | None] = []
    where: list[tuple[str, int]] = []       # (partition, row number) of each indexed file
    hits: dict[str, list[str]] = {}
    totals = StageStats()
    decontam = StageStats()
    files_in = 0
    say("index")
    for partition, path in sorted(sources.items()):
        row_no = 0
        seen: set[str] = set()
        for batch in stream_rows(path, ["repo", "branch", "path", "content"]):
            verdicts = [[]] * len(batch)
            if index is not None:
                verdicts, stats = decontam_partition([r["content"] for r in batch], index, cache_root, partition,
                                                     seen)
                decontam.add(stats)
            clean = []
            for offset, (row, found) in enumerate(zip(batch, verdicts, strict=True)):
                if found:
                    hits[doc_id(row)] = found
                else:
                    clean.append((row_no + offset, row))
            row_no += len(batch)
            files_in += len(batch)
            values, stats = signatures_partition([r for _, r in clean], settings, cache_root, partition, workers,
                                                 compact=False)
            totals.add(stats)
            for (n, row), value in zip(clean, values):
                infos.append(dedup.DocInfo(doc_id(row), row["repo"], row["path"], value["chars"]))
                exact.append(value["exact"])
                sigs.append(sig_array(value["sig"]))
                where.append((partition, n))
        if index is not None:
            decontam_stage(index, cache_root, partition).compact(seen)
    reader = _TextReader(sources, where)
    result = dedup.dedup_signatures(infos, exact, sigs, reader, settings, progress)
    kept_ids = set(result.kept_ids)
    kept: dict[str, set[str]] = {p: set() for p in sources}
    for info, (partition, _) in zip(infos, where):
        if info.id in kept_ids:
            kept[partition].add(info.id)
    return CorpusDedup(kept=kept, dedup=result, decontam_hits=hits,
                       eval_items=index.size if index is not None else 0, files_in=files_in,
                       signatures=totals, texts_read_for_verify=reader.read, decontamination=decontam)


class _TextReader:
    """Streams the texts of wanted doc indices back from their partitions (only those rows are kept)."""

    def __init__(self, sources: dict[str, Path], where: list[tuple[str, int]]) -> None:
        self.sources, self.where, self.read = sources, where, 0

    def __call__(self, wanted: list[int]) -> Iterator[tuple[int, str]]:
        by_partition: dict[str, dict[int, int]] = {}
        for i in wanted:
            partition, n = self.where[i]
            by_partition.setdefault(partition, {})[n] = i
        for partition, rows in sorted(by_partition.items()):
            row_no = 0
            for batch in stream_rows(self.sources[partition], ["content"]):
                for offset, row in enumerate(batch):
                    i = rows.get(row_no + offset)
                    if i is not None:
                        self.read += 1
                        yield i, row["content"]
                row_no += len(batch)


def seen_in(files: Sequence[Mapping], texts: Sequence[str], settings: DedupSettings) -> set[int]:
    """Indices of ``files`` (dicts with path, content) whose dedup shingles are contained, to the dedup
    threshold, in those of one of ``texts``: what "the model has read this file" means when the file was
    since scrubbed, edited or truncated (a long file's first max_lines). Brute force over the pairs a size
    bound leaves (containment <= |theirs| / |mine|)."""
    if not files or not texts:
        return set()
    theirs = [dedup.text_shingles(t, "seen.py", settings) for t in texts]
    found: set[int] = set()
    for i, f in enumerate(files):
        mine = dedup.text_shingles(str(f["content"]), str(f.get("path") or "seen.py"), settings)
        if not mine:
            continue
        for other in theirs:
            if len(other) >= settings.threshold * len(mine) and \
                    len(mine & other) >= settings.threshold * len(mine):
                found.add(i)
                break
    return found
