"""The tiny base pre-trained on public code only (model.tiny_pretrain_source: public): what it and its tokenizer
learn from are the installed packages' sources, never the company repo in the training dataset."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from codellm_assets.core.data.company_sample import ensure_company_repo
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.public_corpus import public_corpus
from codellm_assets.core.data.samples import SampleError
from codellm_assets.core.data.tokenization import build_training_dataset
from codellm_assets.core.training.base_model import (
    dataset_tokenizer_args,
    read_base_info,
    resolve_base_model,
    texts_sha256,
)
from codellm_assets.settings import ModelSettings

COMPANY_NAMES = ("quillon", "LedgerVault", "stamp_quorble", "settle_zephyr", "TariffGrid", "load_tariff_grid",
                 "courier_mesh", "dispatch_parcel", "trace_parcel_hops")
SMALL = {"tiny_hidden_size": 32, "tiny_layers": 1, "tiny_heads": 2, "tiny_pretrain_steps": 2,
         "tiny_pretrain_seq_len": 64, "tiny_pretrain_packages": ["click"]}


@pytest.fixture(scope="module")
def company_records(tmp_path_factory):
    repo = ensure_company_repo(tmp_path_factory.mktemp("company") / "acme", services=8)
    return scan_branch(repo, "HEAD", repo_name="acme").records


def _dataset(tmp_path, records, sm: ModelSettings):
    data = tmp_path / "data"
    build_training_dataset(records, data, seq_len=64, validation_fraction=0.2, holdout_fraction=0.0,
                           vocab_size=400, **dataset_tokenizer_args(sm, vocab_size=400))
    return data


def test_public_pretraining_texts_hold_none_of_the_company_names(tmp_path, company_records):
    sm = ModelSettings(**SMALL)
    data = _dataset(tmp_path, company_records, sm)
    cache = tmp_path / "base"
    base = resolve_base_model(sm, tokenizer_dir=data / "tokenizer", dataset_dir=data / "dataset", cache_dir=cache)
    info = read_base_info(base)
    corpus = public_corpus(("click",))
    # what the builder pre-trained on is exactly the public corpus (its digest), and that holds no company name
    assert info["pretrain_source"] == f"public: {corpus.description}" and info["pretrain_steps"] == 2
    assert info["pretrain_sha256"] == texts_sha256(corpus.texts) and len(corpus.texts) > 10
    public_text = "\n".join(corpus.texts)
    assert [n for n in COMPANY_NAMES if n in public_text] == []
    company_text = "\n".join(r["content"] for r in company_records)
    assert all(n in company_text for n in COMPANY_NAMES)          # the dataset it did not see has them all
    # the same settings again: a cache hit; the pre-training source is part of the key
    assert resolve_base_model(sm, tokenizer_dir=data / "tokenizer", dataset_dir=data / "dataset",
                              cache_dir=cache) == base
    on_dataset = resolve_base_model(sm.model_copy(update={"tiny_pretrain_source": "dataset"}),
                                    tokenizer_dir=data / "tokenizer", dataset_dir=data / "dataset", cache_dir=cache)
    assert on_dataset != base and read_base_info(on_dataset)["pretrain_source"] == "dataset"
    more = resolve_base_model(sm.model_copy(update={"tiny_pretrain_packages": ["click", "typer"]}),
                              tokenizer_dir=data / "tokenizer", dataset_dir=data / "dataset", cache_dir=cache)
    assert more not in (base, on_dataset)


def test_the_tokenizer_is_learned_from_public_code_too(tmp_path, company_records):
    public = _dataset(tmp_path / "public", company_records, ModelSettings(**SMALL))
    own = _dataset(tmp_path / "own", company_records, ModelSettings(**SMALL, tiny_pretrain_source="dataset"))
    pub_tok = AutoTokenizer.from_pretrained(str(public / "tokenizer"))
    own_tok = AutoTokenizer.from_pretrained(str(own / "tokenizer"))
    # A public tokenizer splits the company's names into pieces seen in public words; one trained on the
    # company corpus has merges for them (tokens the public-only base would never have trained).
    names = " ".join(COMPANY_NAMES)
    assert len(pub_tok.tokenize(names)) > len(own_tok.tokenize(names)) * 1.5
    assert pub_tok.get_vocab() == dataset_tokenizer_args(ModelSettings(**SMALL), vocab_size=400)[
        "tokenizer"].get_vocab()                                   # deterministic: the same tokenizer every time


def test_a_missing_public_package_is_named():
    with pytest.raises(SampleError, match="tiny_pretrain_packages"):
        public_corpus(("no_such_package_xyz",))
