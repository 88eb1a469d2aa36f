"""Literal FIM markup in a prompt reaches the model as the FIM tokens, also when the tokenizer has them only
as ordinary vocabulary pieces (CodeLlama's case): the tiny model twice, once with its FIM tokens as added
tokens and once with them demoted to plain vocabulary, must see the same ids and give the same answer."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from codellm_assets.core.serving.backends.base import GenerationParams
from codellm_assets.core.serving.backends.markup import encode_batch, fim_markup
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.testing.tiny_model import FIM_TOKENS
from codellm_assets_tests.serving.conftest import TinyModel

PROMPT = "<fim_prefix>def add(a, b):\n    return <fim_suffix>\n\nprint(add(1, 2))\n<fim_middle>"


def _demote_fim_tokens(base: Path, out: Path) -> Path:
    """A copy whose tokenizer keeps the FIM tokens in its vocabulary but no longer as added tokens."""
    shutil.copytree(base, out)
    tj = json.loads((out / "tokenizer.json").read_text())
    tj["added_tokens"] = [t for t in tj["added_tokens"] if t["content"] not in FIM_TOKENS]
    (out / "tokenizer.json").write_text(json.dumps(tj))
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    for k in ("extra_special_tokens", "additional_special_tokens"):
        cfg.pop(k, None)
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg.get("added_tokens_decoder", {}).items()
                                   if v.get("content") not in FIM_TOKENS}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


def test_fim_markup_is_encoded_as_the_fim_tokens_either_way(tiny_model: TinyModel, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    plain_dir = _demote_fim_tokens(tiny_model.base, tmp_path / "plain")
    special, plain = AutoTokenizer.from_pretrained(tiny_model.base), AutoTokenizer.from_pretrained(plain_dir)
    for tok in (special, plain):
        tok.pad_token = tok.eos_token
    assert len(plain(PROMPT)["input_ids"]) > len(special(PROMPT)["input_ids"]) + 6    # markup spelled out
    assert fim_markup(special, _fim(special)) == {}
    markup = fim_markup(plain, _fim(plain))
    assert set(markup) == {"<fim_prefix>", "<fim_suffix>", "<fim_middle>"}
    want = special([PROMPT, "x = 1"], return_tensors="pt", padding=True)
    got = encode_batch(plain, [PROMPT, "x = 1"], markup)
    assert got["input_ids"].tolist() == want["input_ids"].tolist()
    assert got["attention_mask"].tolist() == want["attention_mask"].tolist()

    async def both() -> tuple[list[str], list[int]]:
        backend = TransformersBackend(micro_batch_ms=0)
        await backend.start()
        try:
            await backend.load_version(Route("production", "special", str(tiny_model.base), None, 100))
            await backend.load_version(Route("canary", "plain", str(plain_dir), None, 0))
            gens = [await backend.generate(PROMPT, GenerationParams(version=v, max_tokens=12, temperature=0))
                    for v in ("special", "plain")]
            return [g.texts[0] for g in gens], [g.prompt_tokens for g in gens]
        finally:
            await backend.close()

    texts, prompt_tokens = asyncio.run(both())
    assert texts[0] == texts[1] and prompt_tokens[0] == prompt_tokens[1] == len(want["input_ids"][0])


def _fim(tok):  # noqa: ANN001, ANN202
    from codellm_assets.core.serving.backends.base import detect_fim

    return detect_fim(tok)


@pytest.mark.parametrize("prompt, expected", [
    ("<fim_prefix>def f(x):\n    <fim_suffix>\n    return y\n<fim_middle>", ("def f(x):\n    ", "\n    return y\n")),
    ("<|fim_prefix|>a = <|fim_suffix|>\nb = 2<|fim_middle|>", ("a = ", "\nb = 2")),
    ("<PRE> def f(x): <SUF>\nreturn y <MID>", ("def f(x):", "\nreturn y")),
    ("def f(x):\n", None),                                     # a plain prompt is the IDE's text as it is
    ("<fim_prefix>a<fim_suffix>b<fim_suffix>c<fim_middle>", None),   # not one template: not taken apart
])
def test_a_rendered_fim_template_is_taken_apart_into_the_ides_text(prompt, expected):
    from codellm_assets.core.serving.backends.base import split_fim_prompt

    assert split_fim_prompt(prompt) == expected
