"""The in-process backend on a real tiny Llama + LoRA adapters: outputs match plain transformers/peft,
adapters are selected per request, micro-batching changes nothing but speed, streaming and stop
sequences agree with the non-streaming path, background jobs give way to users."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from codellm_assets.core.serving.backends.base import BackendError, GenerationParams, Preempted
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets_tests.serving.conftest import TinyModel

PROMPTS = ["def add(a, b):\n", "import os\n", "class Foo:\n    def __init__(self):\n", "x = ["]


def _reference(model_dir: Any, adapter: Any, prompt: str, max_new_tokens: int) -> str:
    """Greedy output of plain transformers (+ peft), no gateway code involved."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    ids = tok(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


async def _backend(tiny: TinyModel, **kw: Any) -> TransformersBackend:
    be = TransformersBackend(**kw)
    await be.start()
    await be.load_version(Route("production", "base", str(tiny.base)))
    await be.load_version(Route("canary", "v2", str(tiny.base), str(tiny.adapter)))
    await be.load_version(Route("shadow", "v3", str(tiny.base), str(tiny.adapter2)))
    return be


def _greedy(version: str, max_tokens: int = 12, **kw: Any) -> GenerationParams:
    return GenerationParams(version=version, max_tokens=max_tokens, temperature=0, **kw)


def test_versions_match_plain_transformers_and_peft(tiny_model: TinyModel) -> None:
    async def run() -> dict[str, str]:
        be = await _backend(tiny_model)
        try:   # interleaved: selecting an adapter must not leak into the next request
            out = {}
            for v in ("base", "v2", "base", "v3", "v2"):
                out[v] = (await be.generate(PROMPTS[0], _greedy(v))).texts[0]
            return out
        finally:
            await be.close()

    out = asyncio.run(run())
    assert out["base"] == _reference(tiny_model.base, None, PROMPTS[0], 12)
    assert out["v2"] == _reference(tiny_model.base, tiny_model.adapter, PROMPTS[0], 12)
    assert len({out["base"], out["v2"], out["v3"]}) == 3


def test_micro_batching_gives_the_same_answers_as_one_by_one(tiny_model: TinyModel) -> None:
    async def run() -> tuple[list[str], list[str], int, int]:
        be = await _backend(tiny_model, micro_batch_ms=20, max_batch_size=8)
        try:
            alone = [(await be.generate(p, _greedy("v2"))).texts[0] for p in PROMPTS]
            before = be.batches_run
            together = await asyncio.gather(*(be.generate(p, _greedy("v2")) for p in PROMPTS * 2))
            return alone, [g.texts[0] for g in together], be.batches_run - before, be.jobs_run
        finally:
            await be.close()

    alone, together, batches, _ = asyncio.run(run())
    assert together == alone * 2          # left padding + attention mask: identical greedy outputs
    assert batches < len(PROMPTS) * 2


def test_streaming_equals_generate_and_stop_sequences_are_trimmed(tiny_model: TinyModel) -> None:
    async def run() -> tuple[str, str, list[Any], Any]:
        be = await _backend(tiny_model)
        try:
            full = (await be.generate(PROMPTS[1], _greedy("v2", 16))).texts[0]
            deltas = [d async for d in be.stream(PROMPTS[1], _greedy("v2", 16))]
            stop = full[len(full) // 2: len(full) // 2 + 2]
            stopped = await be.generate(PROMPTS[1], _greedy("v2", 16, stop=[stop]))
            stopped_stream = "".join([d.text async for d in be.stream(PROMPTS[1], _greedy("v2", 16, stop=[stop]))])
            return full, stop, deltas, (stopped, stopped_stream)
        finally:
            await be.close()

    full, stop, deltas, (stopped, stopped_stream) = asyncio.run(run())
    assert "".join(d.text for d in deltas) == full
    assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == 16
    assert stopped.texts[0] == full[:full.index(stop)] and stopped.finish_reasons == ["stop"]
    assert stopped_stream == stopped.texts[0]


def test_n_choices_and_sampling(tiny_model: TinyModel) -> None:
    async def run() -> Any:
        be = await _backend(tiny_model)
        try:
            return await be.generate("x = ", GenerationParams(version="base", max_tokens=6, temperature=1.0,
                                                              top_p=0.9, n=3, seed=7))
        finally:
            await be.close()

    gen = asyncio.run(run())
    assert len(gen.texts) == 3 and gen.completion_tokens <= 18 and gen.prompt_tokens > 0


def test_background_job_yields_to_a_user_job(tiny_model: TinyModel) -> None:
    async def run() -> tuple[Any, Any]:
        be = await _backend(tiny_model, micro_batch_ms=0)
        try:
            shadow = asyncio.create_task(be.generate(PROMPTS[2], GenerationParams(
                version="v3", max_tokens=400, temperature=0, background=True)))
            for _ in range(500):          # wait until the shadow job is generating
                if be.running and be.running[0].params.background:
                    break
                await asyncio.sleep(0.01)
            user = await be.generate(PROMPTS[0], _greedy("base", 4))
            return user, await asyncio.gather(shadow, return_exceptions=True)
        finally:
            await be.close()

    user, (shadow,) = asyncio.run(run())
    assert user.texts[0] and isinstance(shadow, Preempted)


def test_unknown_version_and_bad_adapter_path(tiny_model: TinyModel, tmp_path: Any) -> None:
    async def run() -> None:
        be = await _backend(tiny_model)
        try:
            with pytest.raises(BackendError, match="not loaded"):
                await be.generate("x", _greedy("nope"))
            with pytest.raises(BackendError, match="adapter"):
                await be.load_version(Route("canary", "bad", str(tiny_model.base), str(tmp_path / "missing")))
            with pytest.raises(BackendError, match="base model"):
                await be.load_version(Route("canary", "bad2", str(tmp_path / "missing")))
            assert (await be.health())["ok"] and "bad" not in be.versions()
        finally:
            await be.close()

    asyncio.run(run())
