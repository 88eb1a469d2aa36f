"""Session fixtures for the training and registry tests: a tiny base model, its tokenizer and a small
tokenized "company code" dataset, built here from scratch (no download, no dependency on core/training/base_model.py).

The dataset has the same on-disk format as ``core.tokenize.build_training_dataset``: an HF
``datasets.DatasetDict`` with splits ``train`` / ``validation`` and one column ``input_ids`` of
fixed-length packed sequences, the tokenizer saved beside it (``<dataset>/tokenizer``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

SEQ_LEN = 64
VOCAB = 512


@dataclass(frozen=True)
class TinySetup:
    base_dir: Path  # a saved LlamaForCausalLM + tokenizer (save_pretrained)
    dataset_dir: Path  # a saved DatasetDict (train / validation, column input_ids)
    seq_len: int
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


def _site_packages_sources(limit_bytes: int = 600_000) -> list[str]:
    """Generic Python (click, jinja2) from the venv: the 'public code' the tiny base is pre-trained on."""
    import click
    import jinja2

    texts: list[str] = []
    total = 0
    for pkg in (click, jinja2):
        for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
            text = path.read_text(encoding="utf-8", errors="replace")
            texts.append(text)
            total += len(text)
            if total >= limit_bytes:
                return texts
    return texts


def company_code(n_files: int, seed: int) -> list[str]:
    """Synthetic 'company code': a house style with company-only names the base has never seen."""
    rng = random.Random(seed)
    nouns = ["ledger", "invoice", "payroll", "widget", "tenant", "quota", "shipment", "audit"]
    verbs = ["post", "load", "sync", "close", "open", "check"]
    files = []
    for _ in range(n_files):
        noun, verb = rng.choice(nouns), rng.choice(verbs)
        k = rng.randint(2, 9)
        files.append(
            f"from acme.core import AcmeClient\n\n\n"
            f"def acme_{verb}_{noun}(client: AcmeClient, {noun}_id: int) -> dict:\n"
            f'    """{verb.title()} the Acme {noun}."""\n'
            f"    record = client.{verb}_{noun}({noun}_id=({noun}_id * {k}))\n"
            f"    return acme_result(record, tenant=client.tenant)\n"
        )
    return files


def _train_tokenizer(texts: list[str]):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        texts,
        vocab_size=VOCAB,
        min_frequency=2,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        show_progress=False,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|pad|>"
    )


def pack(tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """Concatenate documents separated by EOS and cut into full ``seq_len`` blocks (remainder dropped)."""
    stream: list[int] = []
    for text in texts:
        stream.extend(tokenizer(text)["input_ids"] + [tokenizer.eos_token_id])
    return [stream[i : i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def _pretrain(model, blocks: list[list[int]], steps: int = 30) -> None:
    """A few full-parameter steps on generic Python so the base is not random noise."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    data = torch.tensor(blocks)
    model.train()
    for _ in range(steps):
        batch = data[torch.randint(len(data), (8,), generator=gen)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory: pytest.TempPathFactory) -> TinySetup:
    import torch
    from datasets import Dataset, DatasetDict
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    public = _site_packages_sources()
    company_train, company_val = company_code(160, seed=1), company_code(24, seed=2)
    tokenizer = _train_tokenizer(public + company_train)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=SEQ_LEN * 2,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    _pretrain(model, pack(tokenizer, public, SEQ_LEN))
    base_dir = root / "base"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    dataset_dir = root / "dataset"
    DatasetDict(
        {
            "train": Dataset.from_dict({"input_ids": pack(tokenizer, company_train, SEQ_LEN)}),
            "validation": Dataset.from_dict({"input_ids": pack(tokenizer, company_val, SEQ_LEN)}),
        }
    ).save_to_disk(str(dataset_dir))
    tokenizer.save_pretrained(dataset_dir / "tokenizer")
    return TinySetup(base_dir=base_dir, dataset_dir=dataset_dir, seq_len=SEQ_LEN)
