"""Token ids of the training documents: batch encoding with fill-in-the-middle and repository context
(:func:`encode_documents`), the cached per-file encoder the dataset build packs from (:func:`token_encoder`),
and the token counts the repository context is measured with (:func:`token_counter`).

The FIM layout and literal special-token text are described in core/data/tokenization.py's module doc.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codellm_assets.core.data.context_render import LineCounter
from codellm_assets.core.data.fim import FIM_FORMAT, fim_choices, fim_token_ids, fim_windows, is_spm
from codellm_assets.core.data.fim_context import RepoContextSampler
from codellm_assets.core.data.packing import TokenEncoder
from codellm_assets.core.data.tokenizer_files import (
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    DatasetBuildError,
    tokenizer_file_hash,
)


def pack_sequences(token_id_lists: Iterable[Sequence[int]], seq_len: int, eos_id: int,
                   *, pad_id: int | None = None) -> list[list[int]]:
    """Concatenate documents as ``doc EOS doc EOS ...`` and cut into windows of exactly ``seq_len``.

    The last partial window is dropped, or, with ``pad_id``, padded to ``seq_len`` with ``pad_id``.
    """
    if seq_len < 1:
        raise DatasetBuildError(f"seq_len must be >= 1, got {seq_len}")
    flat: list[int] = []
    for ids in token_id_lists:
        flat.extend(ids)
        flat.append(eos_id)
    n_full = len(flat) // seq_len
    seqs = [flat[i * seq_len:(i + 1) * seq_len] for i in range(n_full)]
    rest = flat[n_full * seq_len:]
    if rest and pad_id is not None:
        seqs.append(rest + [pad_id] * (seq_len - len(rest)))
    return seqs


def plain_backend(tokenizer):
    """A copy of the tokenizer's Rust backend that encodes literal special-token text as plain text, with no
    truncation or padding: how every document, and every count of its context, is encoded."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())   # a copy: we change its settings
    backend.encode_special_tokens = True
    backend.no_truncation()
    backend.no_padding()
    return backend


def encode_documents(tokenizer, docs: Sequence[str], *, fim_rate: float = 0.0, seed: int = 0,
                     fim_tokens: Sequence[str] | None = None, fim_window: int | None = None,
                     fim_spm_rate: float = 0.0, contexts: Sequence[Callable[[str, str], str] | None] | None = None,
                     context_tokens: int = 0) -> list[list[int]]:
    """Batch-encode documents (fast, Rust ``encode_batch``), with FIM applied at the character level.

    Literal special-token text in a document is encoded as plain text. ``fim_tokens`` are the
    (prefix, middle, suffix) token names; default: this project's ``<fim_prefix>`` etc. ``fim_window``
    (tokens, the training window): a longer FIM document becomes several FIM pieces joined by EOS, each
    one fitting a window (see :func:`fim.fim_windows`). ``fim_spm_rate``: the share of FIM examples laid
    out suffix-prefix-middle (:func:`fim.fim_token_ids`), the rest PSM. ``contexts``: per document, None or
    (prefix, suffix) -> the repository context of a cut (core/data/fim_context.py), at most
    ``context_tokens`` tokens, which the document's FIM pieces leave free in the window.
    """
    backend = plain_backend(tokenizer)
    contexts = contexts or [None] * len(docs)
    choices = fim_windows(backend, docs, fim_choices(docs, fim_rate, seed), fim_window, seed,
                          reserve=[context_tokens if c else 0 for c in contexts])
    fim_ids: list[int] = []
    if any(c is not None for c in choices):
        names = list(fim_tokens or (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX))
        fim_ids = [tokenizer.convert_tokens_to_ids(n) for n in names]
        unk = tokenizer.unk_token_id
        if any(i is None or (i == unk and n != tokenizer.unk_token) for i, n in zip(fim_ids, names)):
            raise DatasetBuildError(f"the tokenizer has no FIM tokens {names}; set dataset.fim_rate: 0 or "
                                    "use a base model whose preset lists FIM tokens")
    pieces: list[str] = []
    for doc, choice, ctx in zip(docs, choices, contexts):
        if choice is None:
            pieces.append(doc)
            continue
        for pre, mid, suf in choice:
            pieces += [pre, mid, suf, ctx(pre, suf) if ctx else ""]
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets: less work
    encoded = [e.ids for e in encode(pieces, add_special_tokens=False)]
    out: list[list[int]] = []
    i = 0
    for choice in choices:
        if choice is None:
            out.append(encoded[i])
            i += 1
            continue
        ids: list[int] = []
        for cut in choice:
            pre, mid, suf, ctx_ids = encoded[i:i + 4]
            i += 4
            if ids:
                ids.append(tokenizer.eos_token_id)
            ids += fim_token_ids(pre, mid, suf, fim_ids, is_spm(cut, fim_spm_rate, seed), ctx_ids)
        out.append(ids)
    return out


def token_encoder(tokenizer, tokenizer_dir: Path, cache_dir: Path | None, *, fim_rate: float, seed: int,
                   fim_tokens: Sequence[str] | None, fim_window: int | None, fim_spm_rate: float,
                   context: RepoContextSampler | None = None) -> TokenEncoder:
    """Per-file token ids, cached under the tokenizer's file hash and the settings that change ids (and,
    for a document with repository context, its repo's train files: RepoContextSampler.key)."""
    count = token_counter(tokenizer) if context is not None else None   # its line counts live as long

    def encode(records: list[Mapping[str, Any]], fim: bool) -> list[list[int]]:
        texts = [str(r["content"]) for r in records]
        contexts = None
        if fim and count is not None:
            contexts = [context.for_record(r, count) for r in records]
        return encode_documents(tokenizer, texts, fim_rate=fim_rate if fim else 0.0, seed=seed,
                                fim_tokens=fim_tokens, fim_window=fim_window, fim_spm_rate=fim_spm_rate,
                                contexts=contexts, context_tokens=context.budget if context else 0)

    return TokenEncoder(encode, cache_dir, tokenizer_file_hash(tokenizer_dir) if cache_dir else "",
                        {"fim_rate": fim_rate, "seed": seed, "fim_tokens": list(fim_tokens or []),
                         "fim_window": fim_window, "fim_format": FIM_FORMAT, "fim_spm_rate": fim_spm_rate},
                        key_extra=context.key if context else None)


def token_counter(tokenizer) -> LineCounter:
    """Tokens of a text as encode_documents encodes it (special-token text as plain text), with the
    cached, batched line counts render_context sums (code_index.LineCounter)."""
    backend = plain_backend(tokenizer)
    encode_many = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return LineCounter(lambda text: len(backend.encode(text, add_special_tokens=False).ids),
                       lambda texts: [len(e.ids) for e in encode_many(texts, add_special_tokens=False)],
                       sums_exact=splits_before_each_line(backend))


def splits_before_each_line(backend) -> bool:
    """Whether a text's tokens are its lines' tokens put together, for lines that end in a newline and start
    with a non-space character: no normalizer, and a byte-level pre-tokenizer with GPT-2's regex (which never
    joins a newline to the character after it; this project's trained BPE). A SentencePiece-style
    tokenizer (a prefix space per text) or another regex may not be: render_context then checks each block."""
    config = json.loads(backend.to_str())
    pre = config.get("pre_tokenizer") or {}
    return config.get("normalizer") is None and pre.get("type") == "ByteLevel" and bool(pre.get("use_regex")) \
        and not pre.get("add_prefix_space")
