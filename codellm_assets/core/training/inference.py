"""Loading a base model (+ LoRA adapter) for inference, and batched completion with stop sequences.

Re-exported by :mod:`codellm_assets.core.training.base_model`; the eval asset and the transformers serving backend
use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# HumanEval-style body completion: stop when the model starts the next top-level statement.
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")


def inference_device(device: str | None = "auto") -> str:
    """``auto``: the first GPU when torch sees one (a 164-task HumanEval on a 3B model runs for hours on CPU),
    else the CPU."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_for_inference(base_dir: str | Path, adapter_dir: str | Path | None = None, *, merge: bool = False,
                       dtype=None, device: str | None = "auto"):
    """(model, tokenizer) from a local base directory, with an optional peft adapter (merged on request).

    The tokenizer comes from ``adapter_dir`` when it holds one (a fine-tune may add tokens), else from the
    base. Everything loads with ``local_files_only=True``; the model is in eval mode, left padding set, on
    ``device`` (``auto``: the GPU when there is one, in bf16 where supported, else fp16; the CPU in fp32).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = Path(base_dir)
    if not (base_dir / "config.json").is_file():
        raise FileNotFoundError(f"{base_dir} is not a model directory (no config.json); materialize the "
                                "base_model asset or set `model.path` in codellm.yaml")
    tok_dir = Path(adapter_dir) if adapter_dir and (Path(adapter_dir) / "tokenizer_config.json").is_file() \
        else base_dir
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = inference_device(device)
    if dtype is None and device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True,
                                                 dtype=dtype or torch.float32)
    model.to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        if not (Path(adapter_dir) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter_dir} is not a peft adapter (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model, tokenizer


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` cut before the earliest occurrence of any stop sequence."""
    cut = len(text)
    for s in stop or ():
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


def _stop_criteria(tokenizer, prompt_len: int, stop: Sequence[str]):
    """Per-row stopping once a row's generated text contains a stop sequence (decoding only the tail)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    longest = max(len(s) for s in stop)

    class _StopOnText(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = []
            for row in input_ids[:, prompt_len:]:
                # a stop string spans at most `longest` characters, hence at most that many tokens
                tail = tokenizer.decode(row[-(longest + 1):], skip_special_tokens=True)
                done.append(any(s in tail for s in stop))
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_StopOnText()])


def generate_completions(model, tokenizer, prompts: Sequence[str], *, max_new_tokens: int = 64,
                         temperature: float = 0.0, stop: Sequence[str] | None = None, num_samples: int = 1,
                         seed: int = 0, batch_size: int = 8, top_p: float = 0.95) -> list[list[str]]:
    """``num_samples`` completions per prompt (text after the prompt, cut at the first stop sequence).

    Batched with left padding; greedy at ``temperature == 0``, else nucleus sampling. Prompts longer than
    the model's context minus ``max_new_tokens`` keep their end (left truncation). Seeded per batch.
    """
    import torch

    if max_new_tokens < 1 or num_samples < 1:
        raise ValueError("max_new_tokens and num_samples must be >= 1")
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    max_prompt = max(1, context - max_new_tokens)
    device = next(model.parameters()).device
    results: list[list[str]] = []
    for start in range(0, len(prompts), batch_size):
        batch = list(prompts[start:start + batch_size])
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt)
        enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        prompt_len = enc["input_ids"].shape[1]
        torch.manual_seed(seed + start)
        kwargs = {"max_new_tokens": max_new_tokens, "num_return_sequences": num_samples,
                      "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs["stopping_criteria"] = _stop_criteria(tokenizer, prompt_len, stop)
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        texts = tokenizer.batch_decode(out[:, prompt_len:], skip_special_tokens=True)
        for i in range(len(batch)):
            results.append([truncate_at_stop(t, stop) for t in texts[i * num_samples:(i + 1) * num_samples]])
    return results
