"""Literal fill-in-the-middle markup in a prompt (Continue renders its FIM template itself and sends it as
text) must reach the model as the FIM tokens. Tokenizers that hold those tokens as added tokens (StarCoder,
Qwen2.5-Coder, DeepSeek-Coder) already match them in text; a vocabulary that only has them as ordinary
pieces (CodeLlama's sentencepiece ``▁<PRE>``) would spell them out character by character. For those, the
markup is cut out of the text and put in by id."""

from __future__ import annotations

import re
from typing import Any

from codellm_assets.core.serving.backends.base import FimTokens


def fim_markup(tokenizer: Any, fim: FimTokens | None) -> dict[str, int]:
    """``{literal text: token id}`` for the FIM tokens the tokenizer does NOT match in text ({} when it
    matches them all, the common case). The literal is the token without sentencepiece's ``▁``; such a
    token also stands for the space before it, so ``" <SUF>"`` is a key too."""
    if fim is None:
        return {}
    vocab = tokenizer.get_vocab()
    out = {}
    for token in (fim.prefix, fim.suffix, fim.middle):
        literal = token.lstrip("▁")
        if tokenizer(literal, add_special_tokens=False)["input_ids"] != [vocab[token]]:
            out[literal] = vocab[token]
            if token.startswith("▁"):
                out[" " + literal] = vocab[token]
    return out


def encode_batch(tokenizer: Any, prompts: list[str], markup: dict[str, int]) -> dict[str, Any]:
    """``tokenizer(prompts, return_tensors="pt", padding=True)`` (left padding as configured), with the
    ``markup`` literals in the prompts encoded as their token ids (the longest literal first)."""
    if not markup or not any(lit in p for p in prompts for lit in markup):
        return tokenizer(prompts, return_tensors="pt", padding=True)
    import torch

    pattern = re.compile("|".join(re.escape(lit) for lit in sorted(markup, key=len, reverse=True)))
    rows = []
    for prompt in prompts:
        ids: list[int] = tokenizer("", add_special_tokens=True)["input_ids"]      # BOS, if the model has one
        pos = 0
        for m in pattern.finditer(prompt):
            if m.start() > pos:
                ids += tokenizer(prompt[pos:m.start()], add_special_tokens=False)["input_ids"]
            ids.append(markup[m.group(0)])
            pos = m.end()
        if pos < len(prompt):
            ids += tokenizer(prompt[pos:], add_special_tokens=False)["input_ids"]
        rows.append(ids)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    left = getattr(tokenizer, "padding_side", "left") == "left"
    input_ids = [([pad] * (width - len(r)) + r) if left else (r + [pad] * (width - len(r))) for r in rows]
    mask = [([0] * (width - len(r)) + [1] * len(r)) if left else ([1] * len(r) + [0] * (width - len(r)))
            for r in rows]
    return {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(mask)}
