"""Tests for base-model presets, the tiny base builder and its cache, ensure_base_model, and generation."""

from __future__ import annotations

import json
import os

import pytest
import torch

from codellm_assets.core.data.fim import read_layout
from codellm_assets.core.data.tokenization import build_training_dataset, train_bpe_tokenizer
from codellm_assets.core.training import base_model as M
from codellm_assets.core.training.base_model import (
    ModelError,
    build_tiny_base,
    ensure_base_model,
    fim_spm_rate,
    generate_completions,
    get_preset,
    load_for_inference,
    preset_names,
    read_current,
    resolve_base_model,
)
from codellm_assets.core.training.inference import truncate_at_stop
from codellm_assets.settings import ModelSettings, Settings

CORPUS = [
    f"def scale_{i}(values, factor={i}):\n    result = []\n    for v in values:\n"
    f"        result.append(v * factor)\n    return result\n\n\nclass Box{i}:\n"
    f"    def __init__(self, size):\n        self.size = size + {i}\n"
    for i in range(80)
]
SMALL = {"hidden_size": 64, "layers": 2, "heads": 4}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_bpe_tokenizer(CORPUS, 600, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tiny_base(tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "tiny"
    info = build_tiny_base(tokenizer, out, pretrain_texts_or_dataset=CORPUS, pretrain_steps=25, seed=0,
                           threads=2, **SMALL)
    return out, info


# ---- presets -------------------------------------------------------------------------------------

def test_get_preset_bad_name_lists_valid_ones():
    with pytest.raises(ModelError) as e:
        get_preset("gpt-5")
    for name in ("tiny", "starcoder2-3b", "codellama-7b", "deepseek-coder-1.3b", "qwen2.5-coder-7b",
                 "mistral-7b"):
        assert name in str(e.value)
    assert "model.preset" in str(e.value)


@pytest.mark.parametrize("name", preset_names())
def test_presets_are_complete_and_consistent(name):
    p = get_preset(name)
    assert p.vllm_max_model_len <= p.context_length
    assert {"q_proj", "v_proj"} <= set(p.lora_target_modules)
    assert p.lora_alpha >= p.lora_r > 0
    assert p.qlora == (p.params_b >= 13)  # 4-bit base recommended from 13B up
    if p.is_real:
        assert "/" in p.hf_id
    if p.fim:
        assert all(p.fim_tokens())


@pytest.mark.parametrize("name,hf_id,fim_prefix", [
    ("starcoder2-15b", "bigcode/starcoder2-15b", "<fim_prefix>"),
    ("codellama-34b", "codellama/CodeLlama-34b-hf", None),
    ("deepseek-coder-6.7b", "deepseek-ai/deepseek-coder-6.7b-base", "<｜fim▁begin｜>"),
    ("qwen2.5-coder-32b", "Qwen/Qwen2.5-Coder-32B", "<|fim_prefix|>"),
    ("mistral-7b", "mistralai/Mistral-7B-v0.3", None),
])
def test_preset_table(name, hf_id, fim_prefix):
    p = get_preset(name)
    assert p.hf_id == hf_id
    assert (p.fim_tokens() or (None,))[0] == fim_prefix


def test_fim_layout_per_preset_sets_the_default_spm_rate(tmp_path, monkeypatch):
    bm = M
    assert [n for n in preset_names() if get_preset(n).fim_layout == "spm"] == ["tiny"]
    assert fim_spm_rate(ModelSettings()) == 1.0 and fim_spm_rate(ModelSettings(), 0.25) == 0.25
    assert fim_spm_rate(ModelSettings(preset="starcoder2-3b", path="x")) == 0.0
    bad = tmp_path / "presets.yaml"
    bad.write_text(bm.PRESETS_FILE.read_text().replace("layout: spm", "layout: msp"))
    monkeypatch.setattr(bm, "PRESETS_FILE", bad)
    bm._load_presets.cache_clear()
    try:
        with pytest.raises(ModelError, match=r"\['tiny'\].*fim.layout must be one of"):
            get_preset("tiny")
    finally:
        monkeypatch.undo()
        bm._load_presets.cache_clear()


@pytest.mark.parametrize("path,match", [(None, "model.path` in codellm.yaml is not set"),
                                        ("missing/dir", "no config.json")])
def test_real_preset_without_local_weights_gives_clear_error(tmp_path, path, match):
    settings = Settings(home=str(tmp_path / "home"), model=ModelSettings(preset="deepseek-coder-1.3b", path=path),
                        base_dir=str(tmp_path))
    with pytest.raises(ModelError, match=match) as e:
        ensure_base_model(settings)
    assert "huggingface-cli download deepseek-ai/deepseek-coder-1.3b-base --local-dir" in str(e.value)


def test_real_preset_with_local_path_resolves_and_sets_current(tiny_base, tmp_path):
    base_dir, _ = tiny_base
    settings_model = ModelSettings(preset="qwen2.5-coder-1.5b", path=str(base_dir))
    cache = tmp_path / "models" / "base"
    got = resolve_base_model(settings_model, tokenizer_dir=base_dir, dataset_dir=None, cache_dir=cache)
    assert got == base_dir.resolve() and read_current(cache) == base_dir.resolve()
    settings = Settings(home=str(tmp_path / "home"), model=settings_model)
    assert ensure_base_model(settings) == base_dir.resolve()


# ---- the tiny base -------------------------------------------------------------------------------

def test_tiny_base_saves_and_reloads_with_equal_logits(tiny_base, tokenizer):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, info = tiny_base
    assert (out / "model.safetensors").is_file() and (out / "tokenizer_config.json").is_file()
    saved = json.loads((out / "base_info.json").read_text())
    assert saved["preset"] == "tiny" and saved["params"] == info.params and saved["pretrain_steps"] == 25
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok) == len(tokenizer)
    assert model.config.max_position_embeddings >= 2048 and model.config.hidden_size == 64
    ids = torch.tensor([tok(CORPUS[3])["input_ids"][:40]])
    again = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert not list(out.parent.glob(".*tmp*"))


def test_short_pretraining_lowers_loss(tiny_base):
    _, info = tiny_base
    assert len(info.losses) == 25
    assert info.final_loss < info.initial_loss - 1.0
    assert sum(info.losses[-5:]) / 5 < sum(info.losses[:5]) / 5


def test_resolve_base_model_caches_by_settings_and_tokenizer(tmp_path):
    records = [{"repo": "r", "branch": "main", "commit": "c" * 40, "path": f"m{i}.py", "language": "python",
                "content": text} for i, text in enumerate(CORPUS)]
    data = tmp_path / "data"
    build_training_dataset(records, data, vocab_size=500, seq_len=64, validation_fraction=0.1,
                           holdout_fraction=0.05)
    cache = tmp_path / "models" / "base"
    sm = ModelSettings(tiny_hidden_size=32, tiny_layers=1, tiny_heads=2, tiny_pretrain_steps=3,
                       tiny_pretrain_source="dataset")   # public pre-training: test_public_pretraining.py
    kw = {"tokenizer_dir": data / "tokenizer", "dataset_dir": data / "dataset", "cache_dir": cache}
    first = resolve_base_model(sm, **kw)
    info = json.loads((first / "base_info.json").read_text())
    assert info["pretrain_steps"] == 3 and read_current(cache) == first
    assert read_layout(first) == get_preset("tiny").fim_layout == "spm"     # served as it was trained
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(sm, **kw) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # cache hit: not rebuilt
    changed = resolve_base_model(sm.model_copy(update={"tiny_pretrain_steps": 2}), **kw)
    assert changed != first and read_current(cache) == changed
    (data / "tokenizer" / "tokenizer_config.json").write_text(
        (data / "tokenizer" / "tokenizer_config.json").read_text().replace("2048", "1024"))
    assert resolve_base_model(sm, **kw) not in (first, changed)  # tokenizer changed: rebuilt


def test_ensure_base_model_fallback_then_materialized(tmp_path, tiny_base):
    settings = Settings(home=str(tmp_path / "home"), base_dir=str(tmp_path),  # not a git repo: package source
                        model=ModelSettings(tiny_hidden_size=32, tiny_layers=1, tiny_heads=2))
    fallback = ensure_base_model(settings)
    assert fallback.parent == settings.models_dir / "base-fallback"
    model, tok = load_for_inference(fallback)
    assert model.config.hidden_size == 32 and len(tok) > 256
    stamp = (fallback / "model.safetensors").stat().st_mtime_ns
    assert ensure_base_model(settings) == fallback
    assert (fallback / "model.safetensors").stat().st_mtime_ns == stamp
    # once the base_model asset has materialized (the `current` pointer), that is what serving gets
    base_root = settings.models_dir / "base"
    M.write_current(base_root, tiny_base[0])
    assert ensure_base_model(settings) == tiny_base[0].resolve()


# ---- inference -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text,stop,expected", [
    ("    return x\ndef g():", ["\ndef "], "    return x"),
    ("a\nclass B\nprint(1)", ["\nprint(", "\nclass "], "a"),
    ("no stop here", ["\ndef "], "no stop here"),
    ("x", None, "x"),
    ("x\n#c", ["", "\n#"], "x"),
])
def test_truncate_at_stop(text, stop, expected):
    assert truncate_at_stop(text, stop) == expected


def test_generate_completions_batched_and_stops(tiny_base):
    model, tok = load_for_inference(tiny_base[0])
    prompts = ["def scale_3(values", "class Box", "    for v in values:\n"]
    free = generate_completions(model, tok, prompts, max_new_tokens=16, temperature=0.0, seed=0)
    assert len(free) == 3 and all(len(c) == 1 and isinstance(c[0], str) and c[0] for c in free)
    alone = generate_completions(model, tok, prompts[:1], max_new_tokens=16, temperature=0.0, seed=0)
    assert alone[0] == free[0]  # left padding does not change a prompt's greedy completion
    text = free[0][0]
    assert len(text) >= 6, text
    stop = text[3:6]  # a stop sequence the greedy completion is known to reach
    stopped = generate_completions(model, tok, prompts[:1], max_new_tokens=16, temperature=0.0, stop=[stop])
    assert stopped[0][0] == text[:text.index(stop)]
    sampled = generate_completions(model, tok, prompts, max_new_tokens=8, temperature=1.0, num_samples=3, seed=1)
    assert [len(s) for s in sampled] == [3, 3, 3]
    assert sampled == generate_completions(model, tok, prompts, max_new_tokens=8, temperature=1.0,
                                           num_samples=3, seed=1)


def test_load_for_inference_with_adapter_merged_matches(tiny_base, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_base[0]), local_files_only=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    plain, _ = load_for_inference(tiny_base[0])
    with_adapter, _ = load_for_inference(tiny_base[0], tmp_path / "adapter")
    merged, _ = load_for_inference(tiny_base[0], tmp_path / "adapter", merge=True)
    with torch.no_grad():
        a, b, c = (m(ids).logits for m in (plain, with_adapter, merged))
    assert not torch.allclose(a, b)  # the adapter does something
    assert torch.allclose(b, c, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_for_inference(tmp_path)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_model_path_overrides_tiny_and_feeds_the_dataset_tokenizer(tiny_base, tmp_path):
    settings = Settings(home=str(tmp_path / "home"), model=ModelSettings(preset="tiny", path=str(tiny_base[0])))
    assert ensure_base_model(settings) == tiny_base[0].resolve()
    args = M.dataset_tokenizer_args(settings.model)
    assert len(args["tokenizer"]) == json.loads((tiny_base[0] / "base_info.json").read_text())["vocab_size"]
    assert args["fim_tokens"] == ("<fim_prefix>", "<fim_middle>", "<fim_suffix>")
    assert M.dataset_tokenizer_args(ModelSettings(tiny_pretrain_source="dataset")) == {
        "tokenizer": None, "tokenizer_source": None, "fim_tokens": None}     # tiny on the dataset: trained there
    public = M.dataset_tokenizer_args(ModelSettings(tiny_pretrain_packages=["click"]), vocab_size=400)
    assert len(public["tokenizer"]) == 400 and "public code: click" in public["tokenizer_source"]


def test_pretrain_time_budget_stops_early(tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(M._tiny_config(tokenizer, 32, 1, 2))
    seqs = M.pretrain_sequences(CORPUS, tokenizer, 64, max_rows=16, seed=0)
    assert len(M.pretrain(model, seqs, steps=50, batch_size=2, time_budget_s=0.0)) == 1
    assert len(M.pretrain(model, seqs, steps=3, batch_size=2, time_budget_s=60.0)) == 3
