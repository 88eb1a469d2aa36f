"""The real gateway in front of a REAL vLLM server (the CPU build in .venv-vllm, started once per session) on
the tiny model: the official openai client, base and adapters, a canary split, adapters loaded at run time,
a vLLM restart under the gateway, FIM rendering, context-length errors passed through."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from codellm_assets.commands.serving import _fim_from_preset
from codellm_assets.core.data.fim import unheal
from codellm_assets.core.evaluation.remote_generate import OpenAICompletions, vllm_challenger
from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.vllm_backend import VllmBackend, lora_name
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import RealVllm, make_gateway, serve_app, wait_ready

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def _served(v: RealVllm) -> set[str]:
    return {m["id"] for m in httpx.get(f"{v.url}/v1/models", timeout=10).json()["data"]}


def _direct(v: RealVllm, model: str, prompt: str, max_tokens: int = 8) -> dict[str, Any]:
    r = httpx.post(f"{v.url}/v1/completions", timeout=60, json={"model": model, "prompt": prompt,
                                                                  "max_tokens": max_tokens, "temperature": 0})
    r.raise_for_status()
    return r.json()


def _routes(v: RealVllm, *, canary: str | None = None, weight: int = 0, base_path: str | None = None) -> list[Route]:
    base = base_path or str(v.base)
    routes = [Route("production", "codellm/2", base, str(v.adapter2), 100 - weight)]
    if canary:
        routes.append(Route("canary", canary, base, str(v.adapter3), weight))
    return routes


def test_openai_client_base_adapter_and_streaming(real_vllm: RealVllm, store: Store) -> None:
    v = real_vllm
    routes = [Route("production", "base", str(v.base), None, 100),
              Route("canary", "codellm/2", str(v.base), str(v.adapter2), 0)]
    key = store.create_api_key("bars")
    with serve_app(create_app(make_gateway(store, VllmBackend(v.url), routes))) as url:
        wait_ready(url, timeout=120)
        c = _client(url, key)
        prompt = "def add(a, b):\n"
        for model, vllm_model in (("base", "base"), ("codellm/2", "codellm-2")):
            r = c.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
            assert r.model == model
            assert r.choices[0].text == _direct(v, vllm_model, prompt)["choices"][0]["text"]  # vLLM's own answer
            assert r.usage.completion_tokens == 8
            chunks = list(c.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0,
                                               stream=True))
            assert len([ch for ch in chunks if ch.choices and ch.choices[0].text]) >= 2   # really streamed
            assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == r.choices[0].text
        base_text = c.completions.create(model="base", prompt=prompt, max_tokens=8, temperature=0)
        adapter_text = c.completions.create(model="codellm/2", prompt=prompt, max_tokens=8, temperature=0)
        assert base_text.choices[0].text != adapter_text.choices[0].text        # the LoRA is applied


def test_canary_split_and_adapters_loaded_at_run_time(real_vllm: RealVllm, store: Store) -> None:
    v = real_vllm
    assert lora_name("codellm/3") not in _served(v)
    key = store.create_api_key("bars", claims_users=True)   # a team proxy: may name its developers
    gw = make_gateway(store, VllmBackend(v.url), _routes(v, canary="codellm/3", weight=50))
    with serve_app(create_app(gw)) as url:
        wait_ready(url, timeout=120)
        assert "codellm-3" in _served(v)                      # loaded by the gateway: /v1/load_lora_adapter
        c = _client(url, key)
        seen: dict[str, str] = {}
        texts: dict[str, str] = {}
        for i in range(24):
            user = f"dev{i % 8}"
            raw = c.completions.with_raw_response.create(model="codellm", prompt="import os\n", max_tokens=6,
                                                         temperature=0, user=user)
            r = raw.parse()
            assert seen.setdefault(user, r.model) == r.model == raw.headers["x-codellm-version"]   # sticky
            texts.setdefault(r.model, r.choices[0].text)
            assert texts[r.model] == r.choices[0].text
        assert set(seen.values()) == {"codellm/2", "codellm/3"}
        assert texts["codellm/2"] != texts["codellm/3"]        # two different adapters answered
        # a new version registered while the gateway runs: loaded at run time, then served
        store.set_routes([_routes(v, weight=10)[0], Route("canary", "codellm/4", str(v.base), str(v.adapter4), 10)])
        deadline = time.monotonic() + 30
        while "codellm-4" not in _served(v) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "codellm-4" in _served(v)
        r = c.completions.create(model="codellm/4", prompt="import os\n", max_tokens=6, temperature=0)
        assert r.model == "codellm/4"
        assert r.choices[0].text == _direct(v, "codellm-4", "import os\n", 6)["choices"][0]["text"]


def test_lost_adapter_is_reloaded_and_the_request_served(real_vllm: RealVllm, store: Store) -> None:
    """vLLM forgets a runtime-loaded adapter (as after a restart): the request that hits the 404 re-loads it
    and is answered; nothing reaches the client."""
    v = real_vllm
    key = store.create_api_key("bars")
    backend = VllmBackend(v.url)
    gw = make_gateway(store, backend, _routes(v, canary="codellm/3", weight=0), route_refresh_s=60)
    with serve_app(create_app(gw)) as url:
        wait_ready(url, timeout=120)
        c = _client(url, key)
        before = c.completions.create(model="codellm/3", prompt="x = ", max_tokens=6, temperature=0)
        httpx.post(f"{v.url}/v1/unload_lora_adapter", json={"lora_name": "codellm-3"}, timeout=30).raise_for_status()
        assert "codellm-3" not in _served(v)
        after = c.completions.create(model="codellm/3", prompt="x = ", max_tokens=6, temperature=0)
        assert after.choices[0].text == before.choices[0].text and backend.reloads == 1
        httpx.post(f"{v.url}/v1/unload_lora_adapter", json={"lora_name": "codellm-3"}, timeout=30).raise_for_status()
        streamed = list(c.completions.create(model="codellm/3", prompt="x = ", max_tokens=6, temperature=0,
                                             stream=True))
        assert "".join(ch.choices[0].text for ch in streamed if ch.choices) == before.choices[0].text
        assert backend.reloads == 2


def test_fim_rendered_with_the_preset_tokens(real_vllm: RealVllm, store: Store) -> None:
    """No local tokenizer (the route names the preset, as in k8s without mounted tokenizer files): the FIM
    layout comes from presets.yaml; with the local tokenizer it is detected from the vocabulary."""
    v = real_vllm
    key = store.create_api_key("bars")
    fim = _fim_from_preset("tiny")
    assert fim is not None and fim.prefix == "<fim_prefix>" and fim.spm       # the tiny preset is SPM
    # healed (serving.token_healing): the space after `return` is the completion's to write
    layouts = {"tiny": "<fim_prefix><fim_suffix>\n\nprint(f(2))\n<fim_middle>def f(x):\n    return",
               # the local test model records no layout: PSM, what its vocabulary implies
               str(v.base): "<fim_prefix>def f(x):\n    return<fim_suffix>\n\nprint(f(2))\n<fim_middle>"}
    for base_path, expected in layouts.items():
        gw = make_gateway(store, VllmBackend(v.url, fim=fim), [Route("production", "base", base_path, None, 100)])
        with serve_app(create_app(gw)) as url:
            wait_ready(url, timeout=120)
            r = _client(url, key).completions.create(model="codellm", prompt="def f(x):\n    return ",
                                                     suffix="\n\nprint(f(2))\n", max_tokens=4, temperature=0)
            store.flush()
            rendered = store.request(r.id)["prompt"]
            assert rendered == expected
            direct = _direct(v, "base", rendered, 4)
            assert r.choices[0].text == unheal(direct["choices"][0]["text"], " ")
            assert r.usage.prompt_tokens == direct["usage"]["prompt_tokens"]   # FIM tokens are single tokens


def test_context_length_error_passed_through_as_400(real_vllm: RealVllm, store: Store) -> None:
    """Without a local tokenizer the gateway cannot count: vLLM's own 400 reaches the client, not a 503."""
    v = real_vllm
    key = store.create_api_key("bars")
    gw = make_gateway(store, VllmBackend(v.url), [Route("production", "base", "tiny", None, 100)])
    with serve_app(create_app(gw)) as url:
        wait_ready(url, timeout=120)
        with pytest.raises(openai.BadRequestError) as e:
            _client(url, key).completions.create(model="codellm", prompt="def f(x): return x\n" * 100,
                                                 max_tokens=8)
        assert "maximum context length is 256" in str(e.value)
        with pytest.raises(openai.BadRequestError):
            list(_client(url, key).completions.create(model="codellm", prompt="def f(x): return x\n" * 100,
                                                      max_tokens=8, stream=True))


def test_evaluation_generates_on_the_serving_vllm_in_batches(real_vllm: RealVllm) -> None:
    """serving.backend vllm: the challenger adapter is loaded into the serving vLLM under its own name, its
    HumanEval/company prompts go out 16 per request, and the slot is freed afterwards."""
    v = real_vllm
    gen = vllm_challenger(v.url, v.base, v.adapter4)
    assert gen is not None and gen.model in _served(v)
    prompts = [f"def f{i}(x):\n" for i in range(20)]                  # two requests: 16 + 4 prompts
    out = gen.generate(prompts, max_new_tokens=6, num_samples=2)          # greedy: one sample, repeated
    assert len(out) == 20 and all(len(o) == 2 and o[0] == o[1] and isinstance(o[0], str) for o in out)
    sampled = gen.generate(prompts[:3], max_new_tokens=6, num_samples=2, temperature=1.0)
    assert all(len(o) == 2 for o in sampled)
    base = OpenAICompletions(v.url, "base").generate(prompts, max_new_tokens=6)
    assert sum(o[0] != b[0] for o, b in zip(out, base)) >= 10          # the adapter answered, not the base
    gen.close()
    assert gen.model not in _served(v)
    notes: list[str] = []
    assert vllm_challenger(v.url, v.adapter2, v.adapter4, log=notes.append) is None    # vLLM serves another base
    assert "generating locally" in notes[0]
    assert vllm_challenger(None, v.base, v.adapter4) is None


def test_vllm_restarted_under_the_gateway(real_vllm: RealVllm, store: Store, tmp_path: Path) -> None:
    """Last on purpose (it restarts the session's server). The restarted vLLM serves only its --lora-modules;
    the gateway's maintenance loop notices the changed model list and re-loads the canary adapter before any
    request asks, and traffic after the restart is answered."""
    v = real_vllm
    key = store.create_api_key("bars")
    backend = VllmBackend(v.url)
    gw = make_gateway(store, backend, _routes(v, canary="codellm/3", weight=50), route_refresh_s=0.5)
    with serve_app(create_app(gw)) as url:
        wait_ready(url, timeout=120)
        c = _client(url, key)
        before = {m: c.completions.create(model=m, prompt="class A:\n", max_tokens=6, temperature=0).choices[0].text
                  for m in ("codellm/2", "codellm/3")}
        restart_s = v.restart()
        assert "codellm-3" not in _served(v) or backend.reloads       # forgotten unless already re-loaded
        deadline = time.monotonic() + 30
        while "codellm-3" not in _served(v) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "codellm-3" in _served(v), "the gateway did not re-load the canary adapter after the restart"
        assert backend.reloads >= 1
        for i in range(8):           # both slots answer, same greedy text as before the restart
            r = c.completions.create(model="codellm", prompt="class A:\n", max_tokens=6, temperature=0,
                                     user=f"dev{i}")
            assert r.choices[0].text == before[r.model]
        print(f"vLLM restart: ready again in {restart_s:.1f} s")
