"""The real gateway (uvicorn on a free loopback port) with the in-process transformers backend, driven by
the official openai client: completions, chat, streaming, FIM, feedback, metrics, auth, rate limit, bad
input, routing changes at run time, shadow mirroring."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import TinyModel, make_gateway, serve_app, wait_ready


class Served:
    def __init__(self, url: str, store: Store, gw: Any, key: str, admin: str) -> None:
        self.url, self.store, self.gw, self.key, self.admin = url, store, gw, key, admin

    def client(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key or self.key, max_retries=0)

    def post(self, path: str, body: Any = None, key: str | None = None, **kw: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {key or self.key}"},
                          timeout=30, **kw)


def _start(tmp: Path, tiny: TinyModel, routes: list[Route], **settings: Any) -> Iterator[Served]:
    store = Store(f"sqlite:///{tmp / 'store.db'}")
    key, admin = store.create_api_key("bars"), store.create_api_key("ops", admin=True)
    gw = make_gateway(store, TransformersBackend(micro_batch_ms=2), routes, **settings)
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        yield Served(url, store, gw, key, admin)
    store.close()


@pytest.fixture(scope="module")
def srv(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _start(tmp_path_factory.mktemp("gw"), tiny_model,
                      [Route("production", "base", str(tiny_model.base), None, 100)])


def test_openai_client_completion_chat_and_models(srv: Served) -> None:
    c = srv.client()
    assert [m.id for m in c.models.list().data] == ["codellm", "codellm-starcoder", "base"]   # + FIM-family alias
    raw = c.completions.with_raw_response.create(model="codellm", prompt="def add(a, b):\n", max_tokens=8,
                                                 temperature=0)
    r = raw.parse()
    assert r.id.startswith("cmpl-") and raw.headers["x-codellm-version"] == "base" == r.model
    assert r.system_fingerprint == "codellm:base:production" and r.usage.completion_tokens <= 8
    again = c.completions.create(model="codellm", prompt="def add(a, b):\n", max_tokens=8, temperature=0)
    assert again.choices[0].text == r.choices[0].text and again.id != r.id
    multi = c.completions.create(model="codellm", prompt=["a = ", "b = "], n=2, max_tokens=3, temperature=0.7)
    assert sorted(ch.index for ch in multi.choices) == [0, 1, 2, 3]
    chat = c.chat.completions.create(model="codellm", messages=[{"role": "user", "content": "hello"}],
                                     max_tokens=6, temperature=0)
    assert chat.id.startswith("chatcmpl-") and chat.choices[0].message.role == "assistant"
    assert chat.model == "base"


def test_streaming_completion_and_chat_match_the_plain_answers(srv: Served) -> None:
    c = srv.client()
    plain = c.completions.create(model="codellm", prompt="import os\n", max_tokens=10, temperature=0)
    chunks = list(c.completions.create(model="codellm", prompt="import os\n", max_tokens=10, temperature=0,
                                       stream=True, stream_options={"include_usage": True}))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == plain.choices[0].text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert len({ch.id for ch in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "sum two ints"}]
    chat = c.chat.completions.create(model="codellm", messages=msgs, max_tokens=8, temperature=0)
    streamed = list(c.chat.completions.create(model="codellm", messages=msgs, max_tokens=8, temperature=0,
                                              stream=True))
    assert streamed[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed) == chat.choices[0].message.content
    assert streamed[-1].choices[0].finish_reason in ("stop", "length")


def test_fill_in_the_middle_uses_the_models_fim_tokens(srv: Served) -> None:
    c = srv.client()
    fim = c.completions.create(model="codellm", prompt="def f(x):\n    ", suffix="\n    return y\n",
                               max_tokens=6, temperature=0)
    srv.store.flush()
    row = srv.store.request(fim.id)
    # healed (serving.token_healing): the cursor's indentation is the completion's to write
    assert row["prompt"] == "<fim_prefix>def f(x):<fim_suffix>\n    return y\n<fim_middle>"
    assert row["completion"] == fim.choices[0].text and row["status"] == "ok"


def test_feedback_round_trip_and_metrics(srv: Served) -> None:
    c = srv.client()
    r = c.completions.create(model="codellm", prompt="x = 1\n", max_tokens=4, temperature=0)
    ok = srv.post("/v1/feedback", {"completion_id": r.id, "event": "modify", "final_code": "x = 2\n",
                                   "elapsed_ms": 1200, "survival": {"after_s": 30, "fraction": 0.75}})
    assert ok.status_code == 200 and ok.json()["status"] == "recorded"
    assert srv.post("/v1/feedback", {"completion_id": r.id, "event": "view", "elapsed_ms": 3}).status_code == 200
    unknown = srv.post("/v1/feedback", {"completion_id": "cmpl-unknown", "event": "accept"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "completion_not_found"
    other_team = srv.store.create_api_key("other")
    assert srv.post("/v1/feedback", {"completion_id": r.id, "event": "accept"}, key=other_team).status_code == 404
    assert srv.post("/v1/feedback", {"completion_id": r.id, "event": "love"}).status_code == 400
    srv.store.flush()
    ex = [e for e in srv.store.feedback_examples(events=("modify",)) if e["final_code"] == "x = 2\n"]
    assert ex and ex[0]["prompt"] == "x = 1\n" and ex[0]["completion"] == r.choices[0].text
    metrics = ""
    for _ in range(100):           # the detector runs in the background; wait for its counters
        metrics = httpx.get(f"{srv.url}/metrics").text
        if 'codellm_assessed_completions_total{version="base"}' in metrics:
            break
        time.sleep(0.05)
    for line in ('codellm_feedback_total{event="modify",version="base"} 1.0',
                 'codellm_feedback_total{event="view",version="base"} 1.0',
                 'codellm_requests_total{slot="production",status="ok",version="base"}',
                 'codellm_request_latency_seconds_bucket{le="0.005",slot="production",version="base"}',
                 'codellm_tokens_generated_total{version="base"}', 'codellm_tokens_per_second_count',
                 "codellm_inflight_requests 0.0", "codellm_canary_fallbacks_total 0.0",
                 "codellm_shadow_requests_total 0.0", 'codellm_assessed_completions_total{version="base"}'):
        assert line in metrics, line
    row: dict[str, Any] = {}
    for _ in range(100):           # the detector's verdict lands on the request row, off the request path
        srv.store.flush()
        row = srv.store.request(r.id) or {}
        if row.get("risk_score") is not None:
            break
        time.sleep(0.05)
    assert row["risk_score"] is not None and row["buggy"] is not None and row["syntax_error"] is not None


def test_auth_no_key_wrong_key_revoked_key(srv: Served) -> None:
    with pytest.raises(openai.AuthenticationError):
        srv.client("wrong").completions.create(model="codellm", prompt="x", max_tokens=1)
    no_key = httpx.post(f"{srv.url}/v1/completions", json={"prompt": "x"})
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    key = srv.store.create_api_key("temp")
    assert srv.client(key).completions.create(model="codellm", prompt="x", max_tokens=1).choices
    srv.store.revoke_api_key(key[:11])
    time.sleep(0.3)                # the gateway caches key checks for key_cache_s (0.2 s here)
    with pytest.raises(openai.AuthenticationError):
        srv.client(key).completions.create(model="codellm", prompt="x", max_tokens=1)
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{srv.url}{path}").status_code == 200
    assert httpx.get(f"{srv.url}/v1/models").status_code == 401


@pytest.mark.parametrize("body, status, param", [
    (b"{not json", 400, None),
    ({"prompt": "x", "temperature": -1}, 400, "temperature"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "n": 9}, 400, "n"),
    ({"prompt": "def f():\n" * 400, "max_tokens": 8}, 400, "max_tokens"),     # over the 512-token context
    ({"prompt": "x" * 600_000}, 400, "prompt"),
    ({"prompt": "", "max_tokens": 4}, 400, "prompt"),
    ({"max_tokens": 4}, 400, "prompt"),
])
def test_bad_input_is_refused_before_any_model_work(srv: Served, body: Any, status: int,
                                                    param: str | None) -> None:
    backend = srv.gw.backend
    before = backend.jobs_run
    if isinstance(body, bytes):
        r = httpx.post(f"{srv.url}/v1/completions", content=body, timeout=10,
                       headers={"Authorization": f"Bearer {srv.key}", "Content-Type": "application/json"})
    else:
        r = srv.post("/v1/completions", body)
    assert r.status_code == status and r.json()["error"]["param"] == param, r.text
    assert r.json()["error"]["message"]
    assert backend.jobs_run == before
    with pytest.raises(openai.BadRequestError):
        srv.client().chat.completions.create(model="codellm", messages=[], max_tokens=1)


def test_rate_limit_is_per_key_and_answers_429(tiny_model: TinyModel, tmp_path: Path) -> None:
    for srv in _start(tmp_path, tiny_model, [Route("production", "base", str(tiny_model.base))],
                      rate_limit_per_minute=3):
        c = srv.client()
        for _ in range(3):
            c.completions.create(model="codellm", prompt="x", max_tokens=1)
        with pytest.raises(openai.RateLimitError):
            c.completions.create(model="codellm", prompt="x", max_tokens=1)
        r = srv.post("/v1/completions", {"prompt": "x", "max_tokens": 1})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert srv.client(srv.admin).completions.create(model="codellm", prompt="x", max_tokens=1).choices


def test_routing_changes_at_run_time_and_shadow_never_alters_answers(tiny_model: TinyModel,
                                                                      tmp_path: Path) -> None:
    base = str(tiny_model.base)
    prod = Route("production", "base", base, None, 100)
    for srv in _start(tmp_path, tiny_model, [prod]):
        c = srv.client()
        prompts = [f"def f{i}(x):\n" for i in range(6)]
        plain = [c.completions.create(model="codellm", prompt=p, max_tokens=8, temperature=0).choices[0].text
                 for p in prompts]
        # blue/green through the admin endpoint: all traffic to v2 at once, no restart
        green = [Route("production", "base", base, None, 0),
                 Route("canary", "v2", base, str(tiny_model.adapter), 100)]
        body = {"routes": [r.__dict__ for r in green]}
        assert srv.post("/v1/admin/routing", body).status_code == 403
        assert srv.post("/v1/admin/routing", body, key=srv.admin).status_code == 200
        raw = c.completions.with_raw_response.create(model="codellm", prompt=prompts[0], max_tokens=8,
                                                     temperature=0)
        assert raw.headers["x-codellm-version"] == "v2" and raw.headers["x-codellm-slot"] == "canary"
        assert raw.parse().choices[0].text != plain[0]
        bad = srv.post("/v1/admin/routing", {"routes": [{**prod.__dict__, "weight": 90}]}, key=srv.admin)
        assert bad.status_code == 400 and "sum to 100" in bad.json()["error"]["message"]
        # back to production, mirrored to the shadow, through the store (as the Dagster sensor does)
        srv.store.set_routes([prod, Route("shadow", "v3", base, str(tiny_model.adapter2), 100)])
        deadline = time.monotonic() + 10
        while srv.gw.router.table.shadow is None and time.monotonic() < deadline:
            time.sleep(0.05)
        mirrored = []
        for p in prompts:
            r = c.completions.create(model="codellm", prompt=p, max_tokens=8, temperature=0)
            mirrored.append(r.choices[0].text)
            assert r.model == "base"
            time.sleep(0.3)            # let the background mirror run between user requests
        assert mirrored == plain       # the shadow never changes the user's answer
        deadline = time.monotonic() + 15
        shadows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:     # a mirror preempted by the next user request is an error row
            srv.store.flush()
            shadows = srv.store.shadow_results()
            if any(s["error"] is None for s in shadows):
                break
            time.sleep(0.1)
        assert shadows and all(s["shadow_version"] == "v3" and s["served_version"] == "base" for s in shadows)
        done = [s for s in shadows if s["error"] is None]
        assert done and all(0.0 <= s["similarity"] <= 1.0 and s["shadow_latency_s"] > 0 for s in done)
        metrics = httpx.get(f"{srv.url}/metrics").text
        assert "codellm_shadow_requests_total 0.0" not in metrics


@pytest.mark.parametrize(("reason", "hidden", "kept"), [
    ("vLLM at http://10.2.3.4:8001/v1 unreachable: ConnectError('refused')", "10.2.3.4", "unreachable"),
    ("cannot load canary version m/3: /srv/models/acme-base/config.json missing", "/srv/models", "cannot load"),
    ("vLLM at https://vllm.int.acme.net unreachable", "acme.net", "vLLM at <url>"),
    ("loading the model / first generation pending", "\0", "loading the model / first generation pending"),
    ("adapter m/2 returned HTTP 500 after 3.5 s", "\0", "HTTP 500 after 3.5 s"),
])
def test_public_readiness_reasons_hide_addresses_and_paths(reason: str, hidden: str, kept: str) -> None:
    from codellm_assets.core.serving.app import redact_internal

    out = redact_internal(reason)
    assert hidden not in out and kept in out
