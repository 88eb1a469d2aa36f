"""The vllm backend path: the real gateway proxies to stand-in vLLM servers (real subprocesses on loopback,
killed by pid). Canary death under load loses no user request; a slow canary times out onto production;
the shadow never delays or alters answers; readiness reflects a dead engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.vllm_backend import VllmBackend, lora_name
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import StandIn, TinyModel, make_gateway, serve_app, wait_ready


def _routes(tiny: TinyModel, prod: StandIn, canary: StandIn | None = None, canary_weight: int = 0,
            shadow: StandIn | None = None) -> list[Route]:
    base = str(tiny.base)       # a local tokenizer: the gateway renders FIM/chat and checks context length
    routes = [Route("production", "base", base, None, 100 - canary_weight, prod.url)]
    if canary:
        routes.append(Route("canary", "codellm/2", base, str(tiny.adapter), canary_weight, canary.url))
    if shadow:
        routes.append(Route("shadow", "codellm/3", base, str(tiny.adapter2), 100, shadow.url))
    return routes


def _gateway(store: Store, routes: list[Route], **settings: Any) -> Any:
    return make_gateway(store, VllmBackend(), routes, **settings)


def test_proxy_completions_chat_stream_and_runtime_lora_loading(tiny_model: TinyModel, store: Store,
                                                                standin: Callable[..., StandIn]) -> None:
    prod, canary = standin("prod"), standin("can")
    key = store.create_api_key("bars", claims_users=True)   # an IDE proxy: `user` names the developer
    with serve_app(create_app(_gateway(store, _routes(tiny_model, prod, canary, 50)))) as url:
        wait_ready(url)
        assert lora_name("codellm/2") in canary.stats()["loras"]      # POST /v1/load_lora_adapter
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        seen = {}
        for i in range(40):                                            # sticky: one version per user
            user = f"dev{i % 20}"
            raw = c.completions.with_raw_response.create(model="codellm", prompt="def f():\n", max_tokens=3,
                                                         user=user)
            r = raw.parse()
            assert seen.setdefault(user, r.model) == r.model == raw.headers["x-codellm-version"]
            assert r.choices[0].text.startswith(" prod" if r.model == "base" else " can")
        assert set(seen.values()) == {"base", "codellm/2"}
        pinned = c.completions.create(model="base", prompt="x", max_tokens=4, stop=["zzz"])
        assert pinned.model == "base" and pinned.usage.completion_tokens == 4
        chunks = list(c.completions.create(model="base", prompt="x", max_tokens=4, stop=["zzz"], stream=True))
        assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == pinned.choices[0].text
        chat = c.chat.completions.create(model="base", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert chat.choices[0].message.content.startswith(" prod")
        store.flush()
        assert store.request(chat.id)["prompt"] == "<|user|>\nhi\n<|assistant|>\n"   # no template: role tags


def test_bad_input_never_reaches_the_backend(tiny_model: TinyModel, store: Store,
                                             standin: Callable[..., StandIn]) -> None:
    prod = standin("prod")
    key = store.create_api_key("bars")
    with serve_app(create_app(_gateway(store, _routes(tiny_model, prod)))) as url:
        wait_ready(url)
        before = prod.stats()["completions"]
        headers = {"Authorization": f"Bearer {key}"}
        for body in ({"prompt": "x", "top_p": 1.5}, {"prompt": "def f():\n" * 400, "max_tokens": 4},
                     {"prompt": ["a"] * 17}, {"messages": "hi"}):
            path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
            assert httpx.post(f"{url}{path}", json=body, headers=headers).status_code == 400
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "x"}).status_code == 401
        assert prod.stats()["completions"] == before


def test_killing_the_canary_under_load_loses_no_request(tiny_model: TinyModel, store: Store,
                                                        standin: Callable[..., StandIn]) -> None:
    # 30 ms a token: a stream takes ~250 ms, so some canary streams are surely in flight at the kill
    prod, canary = standin("prod", delay_ms=5, token_delay_ms=30), standin("can", delay_ms=5, token_delay_ms=30)
    key = store.create_api_key("bars", claims_users=True)   # 36 developers behind one IDE proxy
    gw = _gateway(store, _routes(tiny_model, prod, canary, 50), rate_limit_per_minute=10 ** 6)
    with serve_app(create_app(gw)) as url:
        wait_ready(url)

        async def client(i: int, http: httpx.AsyncClient, stop_at: float) -> list[tuple[int, str]]:
            out = []
            n = 0
            while time.monotonic() < stop_at:
                body = {"prompt": f"def f{n}():\n", "max_tokens": 8, "user": f"dev{i}-{n % 3}",
                        "stream": n % 2 == 1}
                r = await http.post(f"{url}/v1/completions", json=body)
                text = r.text if body["stream"] or r.status_code != 200 else r.json()["choices"][0]["text"]
                out.append((r.status_code, text))
                n += 1
            return out

        async def load() -> list[tuple[int, str]]:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
                stop_at = time.monotonic() + 3.0
                tasks = [asyncio.create_task(client(i, http, stop_at)) for i in range(12)]
                await asyncio.sleep(1.0)
                canary.kill()                           # SIGKILL mid-load, streams in flight
                return [r for t in await asyncio.gather(*tasks) for r in t]

        results = asyncio.run(load())
        assert len(results) > 50
        assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:3]
        streams = [text for _, text in results if text.startswith("data:")]
        assert streams and all(t.rstrip().endswith("data: [DONE]") and '"error"' not in t for t in streams)
        assert all(text.strip() for _, text in results)
        # streams cut by the kill were finished by production from where the canary stopped
        assert any('" can' in t and '" prod' in t for t in streams)
        assert gw.metrics.canary_fallbacks._value.get() >= 1
        store.flush()
        canary_stats = store.window_stats(slot="canary")
        assert canary_stats.errors >= 1 and store.window_stats(slot="production").errors == 0


def test_slow_canary_times_out_onto_production(tiny_model: TinyModel, store: Store,
                                               standin: Callable[..., StandIn]) -> None:
    prod, canary = standin("prod"), standin("can", delay_ms=3000)
    key = store.create_api_key("bars")
    routes = _routes(tiny_model, prod, canary, 100)
    with serve_app(create_app(_gateway(store, routes, canary_timeout_s=0.4))) as url:
        wait_ready(url)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        t0 = time.monotonic()
        r = c.completions.create(model="codellm", prompt="x", max_tokens=3)
        assert time.monotonic() - t0 < 2.0 and r.model == "base" and r.choices[0].text.startswith(" prod")
        store.flush()
        assert store.window_stats(slot="canary").errors == 1
        assert store.request(f"{r.id}:canary")["status"] == "timeout"


def test_shadow_neither_delays_nor_alters_the_answer(tiny_model: TinyModel, store: Store,
                                                     standin: Callable[..., StandIn]) -> None:
    prod, shadow = standin("prod"), standin("shadow", delay_ms=1500)
    key = store.create_api_key("bars")
    gw = _gateway(store, _routes(tiny_model, prod))
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        plain = c.completions.create(model="codellm", prompt="def g():\n", max_tokens=5).choices[0].text
        store.set_routes(_routes(tiny_model, prod, shadow=shadow))
        deadline = time.monotonic() + 10                   # picked up within route_refresh_s, no restart
        while gw.router.table.shadow is None and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        r = c.completions.create(model="codellm", prompt="def g():\n", max_tokens=5)
        assert time.monotonic() - t0 < 1.0 and r.choices[0].text == plain
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not store.shadow_results():
            store.flush()
            time.sleep(0.1)
        (row,) = store.shadow_results()
        assert row["completion_id"] == r.id and row["error"] is None and row["shadow_latency_s"] >= 1.4
        assert 0.0 <= row["similarity"] < 1.0 and row["latency_diff_s"] > 1.0


def test_readiness_follows_real_generation(tiny_model: TinyModel, store: Store,
                                           standin: Callable[..., StandIn], tmp_path: Path) -> None:
    prod = standin("prod")
    key = store.create_api_key("bars")
    with serve_app(create_app(_gateway(store, _routes(tiny_model, prod), readiness_interval_s=0.3))) as url:
        wait_ready(url)
        prod.kill()
        with pytest.raises(openai.InternalServerError):
            openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0).completions.create(
                model="codellm", prompt="x", max_tokens=2)
        r = httpx.get(f"{url}/readyz")
        # a probe learns why, not where: the backend's address is for admins (and the log)
        assert r.status_code == 503 and "unreachable" in r.json()["reason"]
        assert prod.url.split("//")[1] not in r.text and "<url>" in r.json()["reason"]
        admin = store.create_api_key("ops", admin=True)
        r = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 503 and prod.url.split("//")[1] in r.json()["reason"]
        r = httpx.get(f"{url}/readyz", headers={"Authorization": f"Bearer {key}"})   # not an admin key
        assert prod.url.split("//")[1] not in r.text
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_client_leaving_mid_stream_is_recorded_as_cancelled(tiny_model: TinyModel, store: Store,
                                                              standin: Callable[..., StandIn]) -> None:
    prod = standin("prod", token_delay_ms=50)
    key = store.create_api_key("bars")
    gw = _gateway(store, _routes(tiny_model, prod))
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        with httpx.stream("POST", f"{url}/v1/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"prompt": "x", "max_tokens": 60, "stream": True}, timeout=10) as r:
            cid = r.headers["x-request-id"]
            next(r.iter_lines())                          # one chunk, then hang up (~3 s of stream left)
        deadline = time.monotonic() + 5
        row = None
        while time.monotonic() < deadline:
            store.flush()
            row = store.request(cid)
            if row is not None:
                break
            time.sleep(0.05)
        assert row is not None and row["status"] == "cancelled"
        assert gw.metrics.inflight._value.get() == 0
        assert store.window_stats().errors == 0          # a user leaving is not the model's error


def test_95_5_over_http_sends_exactly_the_predicted_users_to_the_canary(
        tiny_model: TinyModel, store: Store, standin: Callable[..., StandIn]) -> None:
    from codellm_assets.core.serving.router import sticky_bucket

    prod, canary = standin("prod"), standin("can")
    key = store.create_api_key("bars", claims_users=True)   # an IDE proxy: `user` names the developer
    prefix = store.api_key_info(key).prefix
    gw = _gateway(store, _routes(tiny_model, prod, canary, 5))
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        users = [f"developer-{i}" for i in range(250)]
        window = gw.router.sticky_window_s
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
            for i, user in enumerate(users):
                bucket = sticky_bucket(f"{prefix}/{user}", window, time.time())
                expected = "canary" if bucket < 5 else "production"
                slots = {http.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 1, "user": user})
                         .headers["x-codellm-slot"] for _ in range(3 if i < 30 else 1)}   # sticky
                assert slots == {expected}, user
        store.flush()
        canary_users = store.window_stats(slot="canary").distinct_users
        assert 2 <= canary_users <= 30                 # about 5 % of 250 (12.5 expected)


def test_the_first_request_after_start_is_served_not_503(tiny_model: TinyModel, store: Store,
                                                         standin: Callable[..., StandIn]) -> None:
    """The vllm gateway accepts connections only after its first routing pass (a script that waits for
    /healthz and sends at once must not get 503 'still loading')."""
    class SlowLoad(VllmBackend):          # loading a tokenizer on a busy machine takes seconds
        async def load_version(self, route: Route) -> None:
            await asyncio.sleep(1.0)
            await super().load_version(route)

    prod = standin("prod")
    key = store.create_api_key("bars")
    with serve_app(create_app(make_gateway(store, SlowLoad(), _routes(tiny_model, prod)))) as url:
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2},
                       headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert r.status_code == 200, r.text
