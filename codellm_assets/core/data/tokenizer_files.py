"""The dataset's tokenizer on disk: its special tokens, training a byte-level BPE tokenizer, loading a real
preset's tokenizer from a local directory, and a hash of its files (a cache key for what is built on it).
Callers import these from :mod:`codellm_assets.core.data.tokenization` too."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD = "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"
SPECIAL_TOKENS = [EOS_TOKEN, FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD]
TOKENIZER_MAX_LENGTH = 2048  # matches the tiny model's max_position_embeddings


class DatasetBuildError(ValueError):
    """The dataset cannot be built from this input; the message says what to change."""
    # Defined here (below tokenization, which re-exports it) so a bad tokenizer path and a bad dataset
    # input raise the one class.


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE tokenizer (EOS/pad ``<|endoftext|>`` + FIM tokens) and save it to ``out_dir``.

    Returns a ``PreTrainedTokenizerFast``; ``AutoTokenizer.from_pretrained(out_dir)`` loads the same.
    Byte-level means any text round-trips exactly through encode/decode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN, additional_special_tokens=[FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD],
        model_max_length=TOKENIZER_MAX_LENGTH, clean_up_tokenization_spaces=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def load_tokenizer(spec: str | Path):
    """Load the tokenizer of a real preset from a local directory (never from a hub).

    ``spec`` is the base model's local path (``model.path`` in codellm.yaml).
    """
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    if not path.is_dir():
        raise DatasetBuildError(
            f"tokenizer path {path} does not exist. Set `model.path` in codellm.yaml to a local copy of the "
            "base model (on a machine with hub access: `huggingface-cli download <hf_id> --local-dir <dir>`, "
            "then copy <dir> here).")
    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise DatasetBuildError(f"{path} holds no loadable tokenizer ({e}); check `model.path` in "
                                "codellm.yaml points at a full model download") from e
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # packing and batching need a pad id; EOS is the usual choice
    return tok


def tokenizer_file_hash(tokenizer_dir: Path) -> str:
    """sha256 over the tokenizer's files (names and bytes): a cache key for things built on it."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(tokenizer_dir).rglob("*") if p.is_file()):
        h.update(f.relative_to(tokenizer_dir).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
