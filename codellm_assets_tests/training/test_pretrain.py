"""The tiny base's pre-training loop: its learning-rate schedule, its precision, and the cache key naming both."""

from __future__ import annotations

import pytest
import torch

from codellm_assets.core.data.tokenization import train_bpe_tokenizer
from codellm_assets.core.training import base_model as M
from codellm_assets.core.training import pretrain as P
from codellm_assets.settings import ModelSettings

CORPUS = [f"def add_{i}(a, b):\n    total = a + b + {i}\n    return total\n\n\nclass Cell{i}:\n    size = {i}\n"
          for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_bpe_tokenizer(CORPUS, 400, tmp_path_factory.mktemp("tok"))


def test_lr_factor_warms_up_then_decays_to_the_floor():
    steps = 100
    f = [P.lr_factor(s, steps) for s in range(steps)]
    warmup = steps // 10
    assert f[0] == pytest.approx(1 / warmup) and f[warmup - 1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:warmup], f[1:warmup], strict=False))      # rising
    assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1:], strict=False))  # then never rising
    assert f[-1] == pytest.approx(P.MIN_LR_FRACTION)
    assert P.lr_factor(0, 1) == 1.0 and P.lr_factor(5, 3) == pytest.approx(P.MIN_LR_FRACTION)  # past the end


@pytest.mark.parametrize(("configured", "expected"), [("fp32", "fp32"), ("bf16", "bf16")])
def test_explicit_precision_is_kept(configured, expected):
    assert P.resolve_precision(configured) == expected


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    assert P.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: False)
    assert P.resolve_precision("auto") == "fp32"
    with pytest.raises(ValueError, match="tiny_pretrain_precision"):
        P.resolve_precision("fp8")


def test_bf16_autocast_pretraining_learns_and_keeps_fp32_weights(tokenizer):
    from transformers import AutoModelForCausalLM

    seqs = P.pretrain_sequences(CORPUS, tokenizer, 48, max_rows=32, seed=0)
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(M._tiny_config(tokenizer, 32, 1, 2))
        losses[precision] = P.pretrain(model, seqs, steps=30, batch_size=4, lr=1e-2, precision=precision)
        assert all(p.dtype == torch.float32 for p in model.parameters())   # autocast: the weights stay fp32
    for curve in losses.values():
        assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 1.0
    assert losses["bf16"] != losses["fp32"]          # bf16 really ran (another rounding, other losses)
    assert abs(losses["bf16"][-1] - losses["fp32"][-1]) < 0.5


def test_the_cache_key_names_the_resolved_precision(tmp_path, tokenizer, monkeypatch):
    tokenizer.save_pretrained(tmp_path / "tok")
    keys = {p: M.base_cache_key(ModelSettings(tiny_pretrain_precision=p), tmp_path / "tok") for p in ("fp32", "bf16")}
    assert keys["fp32"] != keys["bf16"]
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    assert M.base_cache_key(ModelSettings(tiny_pretrain_precision="auto"), tmp_path / "tok") == keys["bf16"]
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: False)
    assert M.base_cache_key(ModelSettings(), tmp_path / "tok") == keys["fp32"]


def test_the_peak_learning_rate_is_a_setting_the_cache_key_and_the_loop_follow(tmp_path, tokenizer, monkeypatch):
    tokenizer.save_pretrained(tmp_path / "tok")
    assert ModelSettings().tiny_pretrain_lr == P.PRETRAIN_LR
    assert M.base_cache_key(ModelSettings(tiny_pretrain_lr=1e-2), tmp_path / "tok") != \
        M.base_cache_key(ModelSettings(), tmp_path / "tok")
    seen = []
    monkeypatch.setattr(M, "pretrain", lambda model, seqs, **kw: seen.append(kw["lr"]) or [1.0])
    M.build_tiny_base(tokenizer, tmp_path / "base", hidden_size=32, layers=1, heads=2, pretrain_texts_or_dataset=CORPUS,
                      pretrain_steps=2, lr=7e-3)
    assert seen == [7e-3]
