"""GPU training figures without any download (benchmarks/gpu_check.sh runs this): random-initialised models
of real architectures built from configs (Starcoder2, Qwen2 at ~1.5 B and ~7 B), LoRA and QLoRA (bitsandbytes
nf4) training steps: tokens/s and peak GPU memory. Also writes a servable 1.5 B Qwen2 (random weights, a
tokenizer trained here) plus 4 LoRA adapters for the vLLM part.

    python benchmarks/gpu_train_check.py --out figures.json --serve-dir /tmp/gpu-serve [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

# Real dimensions (the 1.5 B Starcoder2 is the 3 B layout scaled down: Starcoder2 ships 3/7/15 B).
CONFIGS: dict[str, dict[str, Any]] = {
    "qwen2-1.5b": {"arch": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                   "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936},
    "qwen2-7b": {"arch": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064},
    "starcoder2-1.5b": {"arch": "starcoder2", "hidden_size": 2048, "intermediate_size": 8192,
                        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 2,
                        "vocab_size": 49152},
    "starcoder2-7b": {"arch": "starcoder2", "hidden_size": 4608, "intermediate_size": 18432,
                      "num_hidden_layers": 32, "num_attention_heads": 36, "num_key_value_heads": 4,
                      "vocab_size": 49152},
}
TARGETS = {"qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "starcoder2": ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"]}


def make_config(name: str) -> Any:
    from transformers import Qwen2Config, Starcoder2Config

    spec = dict(CONFIGS[name])
    cls = Qwen2Config if spec.pop("arch") == "qwen2" else Starcoder2Config
    return cls(**spec, max_position_embeddings=4096, torch_dtype="bfloat16")


def random_model(name: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("cuda"):
        return AutoModelForCausalLM.from_config(make_config(name), torch_dtype=torch.bfloat16)


def train_steps(model: Any, arch: str, *, steps: int, batch: int, seq: int, vocab: int) -> dict[str, float]:
    import torch
    from peft import LoraConfig, get_peft_model

    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS[arch],
                                                  task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, vocab, (batch, seq), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    timed, t0 = 0, 0.0
    for step in range(steps):
        if step == 2:                       # the first steps warm up kernels and the allocator
            torch.cuda.synchronize()
            t0, timed = time.perf_counter(), 0
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        timed += batch * seq
    torch.cuda.synchronize()
    return {"tokens_per_s": timed / (time.perf_counter() - t0), "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "trainable": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
            "loss": float(loss)}


def qlora_model(name: str, tmp: Path) -> Any:
    """nf4 needs quantised weights from a checkpoint: save the random model once, load it in 4 bit."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = tmp / name
    if not (path / "config.json").exists():
        m = random_model(name)
        m.save_pretrained(path)
        del m
        torch.cuda.empty_cache()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           bnb_4bit_use_double_quant=True)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=q, device_map={"": 0},
                                                torch_dtype=torch.bfloat16)


def servable(out: Path, name: str = "qwen2-1.5b", adapters: int = 4) -> dict[str, str]:
    """A 1.5 B Qwen2 with a tokenizer trained here (vocab 8k <= the model's) and 4 random LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from codellm_assets.testing.tiny_model import _training_text

    base = out / "base"
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([_training_text()], trainers.BpeTrainer(
        vocab_size=8000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(base)
    model = random_model(name)
    model.save_pretrained(base)
    paths = {"base": str(base)}
    for i in range(1, adapters + 1):
        torch.manual_seed(i)
        peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=TARGETS["qwen2"]))
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)        # B = 0 would make the adapter a no-op
        peft_model.save_pretrained(out / f"lora-{i}")
        paths[f"lora-{i}"] = str(out / f"lora-{i}")
        model = peft_model.unload()
    del model
    torch.cuda.empty_cache()
    return paths


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--serve-dir", required=True)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--models", default=",".join(CONFIGS))
    args = ap.parse_args()
    tmp = Path(args.serve_dir) / "checkpoints"
    figures: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "train": {}}
    for name in args.models.split(","):
        arch, vocab = CONFIGS[name]["arch"], CONFIGS[name]["vocab_size"]
        for mode in ("lora", "qlora"):
            t0 = time.perf_counter()
            try:
                model = random_model(name) if mode == "lora" else qlora_model(name, tmp)
                fig = train_steps(model, arch, steps=args.steps, batch=args.batch, seq=args.seq, vocab=vocab)
            except Exception as e:  # noqa: BLE001 - one failing combination must not lose the others' figures
                fig = {"error": repr(e)[:500]}
            fig["wall_s"] = time.perf_counter() - t0
            figures["train"][f"{name}/{mode}"] = fig
            print(f"{name:>16} {mode:>5}: {json.dumps(fig)}", flush=True)
            model = None
            torch.cuda.empty_cache()
    figures["serve"] = servable(Path(args.serve_dir))
    Path(args.out).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
