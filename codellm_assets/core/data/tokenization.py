"""The tokenized training dataset: split by file hash, tokenizer, FIM, packing, and the on-disk dataset.

Layout written by :func:`build_training_dataset` (atomically: built in a temp dir, then renamed)::

    out_dir/dataset/          HF DatasetDict (train, validation): input_ids, attention_mask, labels
    out_dir/holdout.parquet   held-out files (never trained on): repo, branch, commit, path, language, content
    out_dir/tokenizer/        the tokenizer, loadable with AutoTokenizer.from_pretrained
    out_dir/manifest.json     lineage: every source repo/branch/commit, counts, settings hash, its own hash

Splits are decided per file by a hash of its normalized content, so a file (and any copy of it in
another repo) lands in exactly one split, and the assignment does not change between runs.

Packing (streamed, :mod:`codellm_assets.core.data.packing`: batches of documents are encoded, with each
file's ids cached, and packed into Arrow shards; no list of every token id is ever built): documents are
concatenated as ``doc EOS doc EOS ...`` and cut into ``seq_len`` windows. The
train split drops the last partial window (standard for pre-training; at most ``seq_len - 1`` tokens);
the validation split pads it with EOS (attention_mask 0, labels -100) so small corpora still have a
validation set and every validation token is scored.

Fill-in-the-middle (StarCoder style): with probability ``fim_rate`` per train document, the text is cut
at two random character positions into prefix/middle/suffix, each part is tokenized on its own and the
document becomes ``<fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle`` (PSM) or, for
``fim_spm_rate`` of the examples, ``<fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle`` (SPM). The
choice is seeded per document (seed + content hash), so it is independent of document order. A FIM document longer
than the training window is cut per window first (context-level FIM, core/data/fim.py), so each example
is whole in one window: the middle the model writes and the prefix and suffix it reads.

Literal special-token text inside source files (this very module contains ``<fim_prefix>``) is encoded as
ordinary text, never as the special token: only the builder inserts special ids.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codellm_assets.core.data.blob_cache import StageStats
from codellm_assets.core.data.encoding import encode_documents as encode_documents
from codellm_assets.core.data.encoding import pack_sequences as pack_sequences
from codellm_assets.core.data.encoding import token_encoder
from codellm_assets.core.data.fim import fim_choices as fim_choices
from codellm_assets.core.data.fim import fim_format as fim_format
from codellm_assets.core.data.fim import fim_split as fim_split
from codellm_assets.core.data.fim import line_chunks as line_chunks
from codellm_assets.core.data.fim_context import RepoContextSampler
from codellm_assets.core.data.packing import TokenEncoder, pack_to_arrow, write_dataset_dict
from codellm_assets.core.data.tokenizer_files import EOS_TOKEN as EOS_TOKEN
from codellm_assets.core.data.tokenizer_files import FIM_MIDDLE as FIM_MIDDLE
from codellm_assets.core.data.tokenizer_files import FIM_PAD as FIM_PAD
from codellm_assets.core.data.tokenizer_files import FIM_PREFIX as FIM_PREFIX
from codellm_assets.core.data.tokenizer_files import FIM_SUFFIX as FIM_SUFFIX
from codellm_assets.core.data.tokenizer_files import SPECIAL_TOKENS as SPECIAL_TOKENS
from codellm_assets.core.data.tokenizer_files import TOKENIZER_MAX_LENGTH as TOKENIZER_MAX_LENGTH
from codellm_assets.core.data.tokenizer_files import DatasetBuildError as DatasetBuildError
from codellm_assets.core.data.tokenizer_files import load_tokenizer as load_tokenizer
from codellm_assets.core.data.tokenizer_files import tokenizer_file_hash as tokenizer_file_hash
from codellm_assets.core.data.tokenizer_files import train_bpe_tokenizer as train_bpe_tokenizer
from codellm_assets.core.data.train_weights import weighted_passes
from codellm_assets.core.fsutil import replace_dir

SPLITS = ("train", "validation", "holdout")

Record = Mapping[str, Any]


# ---- split ---------------------------------------------------------------------------------------

def normalized_content_hash(content: str) -> str:
    """sha256 of the content with line endings unified and trailing whitespace stripped per line."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    normalized = "\n".join(line.rstrip() for line in lines).strip("\n")
    return hashlib.sha256(normalized.encode("utf-8", "surrogatepass")).hexdigest()


def _unit_interval(digest: str) -> float:
    return int(digest[:16], 16) / float(1 << 64)


def split_by_file_hash(records: Iterable[Record], validation_fraction: float,
                       holdout_fraction: float) -> dict[str, list[Record]]:
    """Assign each file to "train", "validation" or "holdout" by a hash of its normalized content.

    ``u = hash / 2**64``; ``u < holdout_fraction`` -> holdout, then ``< holdout + validation`` -> validation.
    Stable across runs and disjoint by content. With a small corpus a non-zero fraction could leave a split
    empty; then the train file(s) whose ``u`` is nearest above the boundary move to it (still deterministic),
    as long as train keeps at least one file. Each split is sorted by (repo, path).
    """
    if not 0 <= validation_fraction < 1 or not 0 <= holdout_fraction < 1 \
            or validation_fraction + holdout_fraction >= 1:
        raise DatasetBuildError(
            f"validation_fraction={validation_fraction} and holdout_fraction={holdout_fraction} must each be "
            "in [0, 1) and sum to less than 1 (dataset.validation_fraction / dataset.holdout_fraction)")
    keyed = [(_unit_interval(normalized_content_hash(str(r["content"]))), r) for r in records]
    bounds = {"holdout": holdout_fraction, "validation": holdout_fraction + validation_fraction}
    splits: dict[str, list[tuple[float, Record]]] = {s: [] for s in SPLITS}
    for u, rec in keyed:
        name = "holdout" if u < bounds["holdout"] else "validation" if u < bounds["validation"] else "train"
        splits[name].append((u, rec))
    for name, fraction in (("holdout", holdout_fraction), ("validation", validation_fraction)):
        if fraction > 0 and not splits[name] and len(splits["train"]) >= 2:
            splits["train"].sort(key=lambda t: t[0])
            splits[name].append(splits["train"].pop(0))
    return {name: sorted((r for _, r in items), key=lambda r: (str(r.get("repo", "")), str(r.get("path", ""))))
            for name, items in splits.items()}


def _cached_bpe_tokenizer(train: Sequence[Record], texts: Iterable[str], vocab_size: int, out_dir: Path,
                          cache_dir: Path | None):
    """:func:`train_bpe_tokenizer`, or the one trained before on exactly the same train files (BPE training
    is deterministic): the files are copied from ``cache_dir/tokenizer/<hash of the train texts>``."""
    if cache_dir is None:
        return train_bpe_tokenizer(texts, vocab_size, out_dir)
    from transformers import PreTrainedTokenizerFast

    h = hashlib.sha256(f"{vocab_size}:{tokenizer_code_version()}".encode())
    for r in train:
        h.update(hashlib.blake2b(str(r["content"]).encode("utf-8", "surrogatepass"), digest_size=16).digest())
    cached = Path(cache_dir) / "tokenizer" / h.hexdigest()[:16]
    if not cached.is_dir():
        fresh = cached.parent / f".{cached.name}.tmp-{uuid.uuid4().hex[:8]}"
        train_bpe_tokenizer(texts, vocab_size, fresh)
        replace_dir(fresh, cached)
        for old in cached.parent.iterdir():      # one tokenizer kept: the latest train split's
            if old != cached:
                shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(cached, out_dir)
    return PreTrainedTokenizerFast.from_pretrained(str(out_dir))


def tokenizer_code_version() -> str:
    """A hash of the code that trains and writes the tokenizer (this module and tokenizer_files)."""
    from codellm_assets.core.data import tokenizer_files

    return hashlib.sha256(Path(__file__).read_bytes() + Path(tokenizer_files.__file__).read_bytes()).hexdigest()[:16]


# ---- the dataset on disk -------------------------------------------------------------------------

@dataclass
class DatasetSummary:
    """What :func:`build_training_dataset` produced (also the asset's metadata)."""
    out_dir: str
    tokens: dict[str, int]
    sequences: dict[str, int]
    files_per_split: dict[str, int]
    files_per_language: dict[str, int]
    vocab_size: int
    seq_len: int
    manifest_hash: str
    seconds: float = 0.0
    tokenizer_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)       # also written to the manifest
    cache: dict[str, Any] = field(default_factory=dict)       # token cache reuse (not in the manifest)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _lineage(records: list[Record], splits: dict[str, list[Record]]) -> list[dict[str, Any]]:
    """One row per (repo, branch, commit): files and bytes used (all splits) and per split."""
    split_of = {id(r): name for name, rs in splits.items() for r in rs}
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in records:
        key = (str(r.get("repo", "")), str(r.get("branch", "")), str(r.get("commit", "")))
        row = rows.setdefault(key, {"repo": key[0], "branch": key[1], "commit": key[2], "files": 0,
                                    "bytes": 0, "files_per_split": {s: 0 for s in SPLITS}})
        row["files"] += 1
        row["bytes"] += len(str(r["content"]).encode("utf-8", "surrogatepass"))
        row["files_per_split"][split_of[id(r)]] += 1
    return [rows[k] for k in sorted(rows)]


def build_training_dataset(records: Iterable[Record], out_dir: Path, *, tokenizer=None, seq_len: int = 256,
                           validation_fraction: float = 0.1, holdout_fraction: float = 0.05,
                           fim_rate: float = 0.0, seed: int = 0, settings_hash: str = "",
                           vocab_size: int = 4096, tokenizer_source: str | None = None,
                           fim_tokens: Sequence[str] | None = None, fim_spm_rate: float = 0.0,
                           cache_dir: Path | None = None,
                           split: Callable[[list[Record]], tuple[dict[str, list[Record]], dict]] | None = None,
                           repo_weights: Mapping[str, float] | None = None, context_rate: float = 0.0,
                           context_tokens: int = 0, context_repos: Iterable[str] | None = None) -> DatasetSummary:
    """Split, tokenize, pack and save the training dataset with its lineage manifest (see module doc).

    ``tokenizer``: a loaded (real preset) tokenizer, or None to train a byte-level BPE of ``vocab_size``
    on the train split only. FIM (``fim_rate``, ``fim_spm_rate`` of it SPM) applies to the train split.
    ``cache_dir``: where each file's token ids are cached (:class:`packing.TokenEncoder`); None: no cache.
    ``split``: records with text -> (splits, what the manifest records about them); default:
    :func:`split_by_file_hash`. ``repo_weights``: repo -> training weight (train_weights.weighted_passes;
    the validation split is never weighted). ``context_rate`` of the FIM documents of ``context_repos``
    (None: every repo) carry up to ``context_tokens`` of repository context from the train split
    (core/data/fim_context.py).
    Returns a summary.
    """
    import time

    import polars as pl

    started = time.monotonic()
    all_records = list(records)
    # a record without decoded text (bytes, None) is skipped and counted, never a crash of the whole build
    records = [r for r in all_records if isinstance(r.get("content"), str) and r["content"]]
    skipped = len(all_records) - len(records)
    if not records:
        raise DatasetBuildError(f"no files with text content to build the dataset from ({skipped} skipped): "
                                "the deduplicated corpus is empty; check the repos in codellm.yaml and the "
                                "quality rules")
    if split is None:
        splits, split_info = split_by_file_hash(records, validation_fraction, holdout_fraction), \
            {"holdout_split": "hash_of_content"}
    else:
        splits, split_info = split(records)
        records = [r for rs in splits.values() for r in rs]   # what the split dropped is not in the dataset
    if not splits["train"]:
        raise DatasetBuildError("the train split is empty; lower dataset.validation_fraction/holdout_fraction")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        train_texts = (str(r["content"]) for r in splits["train"])   # a generator: BPE training streams
        if tokenizer is None:
            tokenizer = _cached_bpe_tokenizer(splits["train"], train_texts, vocab_size, tmp / "tokenizer", cache_dir)
            tokenizer_source = tokenizer_source or f"byte-level BPE trained on the train split ({vocab_size})"
        else:
            tokenizer.save_pretrained(tmp / "tokenizer")
            tokenizer_source = tokenizer_source or str(getattr(tokenizer, "name_or_path", "") or "given")
        eos = tokenizer.eos_token_id
        if eos is None:
            raise DatasetBuildError("the tokenizer has no EOS token; packing needs one to separate files")
        fim_args = {"fim_rate": fim_rate, "fim_tokens": fim_tokens, "fim_window": seq_len,
                    "fim_spm_rate": fim_spm_rate}
        sampler = RepoContextSampler.build(splits["train"], rate=context_rate, budget=context_tokens, seed=seed,
                                           repos=context_repos, cache_dir=cache_dir) if fim_rate > 0 else None
        encoder = token_encoder(tokenizer, tmp / "tokenizer", cache_dir, seed=seed, context=sampler, **fim_args)
        passes = weighted_passes(splits["train"], repo_weights or {})
        encoders = [encoder] + [token_encoder(tokenizer, tmp / "tokenizer", cache_dir, seed=seed + k,
                                               context=sampler and sampler.reseeded(seed + k), **fim_args)
                                for k in range(1, len(passes))]
        train_stream = (batch for enc, rs in zip(encoders, passes) for batch in enc.batches(rs, fim=fim_rate > 0))
        packed = {"train": pack_to_arrow(train_stream, tmp / "dataset" / "train", seq_len, eos, pad=False),
                  "validation": pack_to_arrow(encoder.batches(splits["validation"], fim=False),
                                              tmp / "dataset" / "validation", seq_len, eos, pad=True)}
        if packed["train"].sequences == 0:
            raise DatasetBuildError(f"the train split has fewer than seq_len={seq_len} tokens; lower "
                                    "dataset.seq_len in codellm.yaml or add repos")
        # the shards are the dataset: written in the layout load_from_disk reads, never copied
        write_dataset_dict(tmp / "dataset", packed)
        holdout_cols = ["repo", "branch", "commit", "path", "language", "blob_sha", "content"]
        pl.DataFrame([{c: (None if r.get(c) is None else str(r.get(c))) for c in holdout_cols}
                      for r in splits["holdout"]], schema={c: pl.String for c in holdout_cols}) \
            .write_parquet(tmp / "holdout.parquet")
        holdout_tokens = sum(len(ids) + 1 for batch in encoder.batches(splits["holdout"], fim=False)
                             for ids in batch)
        for enc in encoders:
            enc.compact()
        tokens = {"train": packed["train"].tokens, "validation": packed["validation"].tokens,  # + one EOS per file
                  "holdout": holdout_tokens}
        summary = DatasetSummary(
            out_dir=str(out_dir), tokens=tokens, sequences={k: t.sequences for k, t in packed.items()},
            files_per_split={k: len(v) for k, v in splits.items()},
            files_per_language=dict(sorted(Counter(str(r.get("language") or "unknown") for r in records)
                                           .items())),
            vocab_size=len(tokenizer), seq_len=seq_len, manifest_hash="", tokenizer_source=tokenizer_source,
            extra={**split_info, "fim_rate": fim_rate, "fim_spm_rate": fim_spm_rate, "seed": seed,
                   "skipped_no_text_content": skipped,
                   "train_weights": dict(sorted((repo_weights or {}).items())),
                   "train_files_per_pass": [len(p) for p in passes],
                   **_context_info(sampler, passes, context_rate, context_tokens),
                   "train_tokens_dropped": tokens["train"] - packed["train"].sequences * seq_len},
            cache={"tokens": _token_stats(encoders)})
        summary.manifest_hash = _write_manifest(tmp, records, splits, summary, settings_hash)
        summary.seconds = round(time.monotonic() - started, 2)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _context_info(sampler: RepoContextSampler | None, passes: Sequence[Sequence[Record]], rate: float,
                  tokens: int) -> dict[str, Any]:
    """The repository-context part of the manifest: the settings and the documents drawn per repo."""
    if sampler is None:
        return {"context_rate": rate if tokens else 0.0, "context_tokens": tokens, "context_documents": {}}
    drawn: Counter = Counter()
    for k, rs in enumerate(passes):
        drawn.update(sampler.reseeded(sampler.seed + k).info(rs)["context_documents"])
    return {**sampler.info(()), "context_documents": dict(sorted(drawn.items()))}


def _token_stats(encoders: Sequence[TokenEncoder]) -> dict[str, Any]:
    """The token cache's work over every pass (pass 0's encoder holds the totals' extras)."""
    total = StageStats(extra=dict(encoders[0].stats.extra))
    for enc in encoders:
        total.add(enc.stats)
    return total.to_json()


def _write_manifest(tmp: Path, records: list[Record], splits: dict[str, list[Record]],
                    summary: DatasetSummary, settings_hash: str) -> str:
    languages_per_split: dict[str, dict[str, int]] = defaultdict(dict)
    for name, rs in splits.items():
        languages_per_split[name] = dict(sorted(Counter(str(r.get("language") or "unknown") for r in rs).items()))
    manifest = {
        "format": "codellm.training_dataset/1",
        "settings_hash": settings_hash,
        "sources": _lineage(records, splits),
        "seq_len": summary.seq_len,
        "tokens": summary.tokens, "sequences": summary.sequences, "files_per_split": summary.files_per_split,
        "files_per_language": summary.files_per_language, "files_per_language_per_split": languages_per_split,
        "tokenizer": {"vocab_size": summary.vocab_size, "source": summary.tokenizer_source,
                      "files_hash": tokenizer_file_hash(tmp / "tokenizer")},
        "holdout_files": [{"repo": r.get("repo"), "commit": r.get("commit"), "path": r.get("path")}
                          for r in splits["holdout"]],
        # Content hash of every file per split: the blocking no-overlap check reads these.
        "split_file_hashes": {name: sorted(normalized_content_hash(str(r["content"])) for r in rs)
                              for name, rs in splits.items()},
        **summary.extra,
    }
    body = json.dumps(manifest, sort_keys=True, ensure_ascii=False)
    manifest["manifest_hash"] = hashlib.sha256(body.encode()).hexdigest()
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False))
    return manifest["manifest_hash"]


def verify_manifest(manifest: Mapping[str, Any]) -> bool:
    """True when the manifest's ``manifest_hash`` matches its content (nothing edited since)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest() \
        == manifest.get("manifest_hash")
