"""A tiny Llama model, a byte-level BPE tokenizer trained on some Python, and a LoRA adapter that changes
its outputs: real models for the serving tests and the gateway benchmark (built in ~2 s on CPU)."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

FIM_TOKENS = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"]


def _training_text() -> str:
    import difflib
    import string

    return "\n".join(inspect.getsource(m) for m in (textwrap, string, difflib))[:60_000]


def build_tiny_model(out_dir: Path, *, seed: int = 0, heads: int = 4) -> Path:
    """Save a tokenizer + randomly initialised LlamaForCausalLM under ``out_dir``; returns it. ``heads=2``
    gives head_dim 32, the smallest vLLM's CPU attention supports (it rejects the default's 16)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", *FIM_TOKENS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([_training_text()], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=FIM_TOKENS)
    fast.save_pretrained(out_dir)
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=heads,
                         num_key_value_heads=heads, vocab_size=len(fast), max_position_embeddings=512,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    return out_dir


def build_tiny_adapter(base_dir: Path, out_dir: Path, *, seed: int = 1, scale: float = 0.5) -> Path:
    """A LoRA adapter (q_proj/v_proj, r=4) with perturbed weights, so its greedy outputs differ."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(out_dir)
    return out_dir


if __name__ == "__main__":  # python -m codellm_assets.testing.tiny_model DIR
    import sys

    target = Path(sys.argv[1])
    build_tiny_model(target / "base", heads=2)      # servable by vLLM's CPU build too
    build_tiny_adapter(target / "base", target / "adapter")
    print(json.dumps({"base": str(target / "base"), "adapter": str(target / "adapter")}))
