"""Who a request counts as, through the real gateway (stand-in vLLM servers on loopback): the API key,
not the client's free-text `user` (unless the key may vouch for its users); and the deployment check
that a real completion comes from the version just deployed."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from codellm_assets.core.serving.app import create_app
from codellm_assets.core.serving.backends.vllm_backend import VllmBackend
from codellm_assets.core.serving.client import GatewayNotServing, require_gateway_completion
from codellm_assets.core.serving.router import sticky_bucket
from codellm_assets.core.serving.routes import Route
from codellm_assets.core.serving.store import Store
from codellm_assets_tests.serving.conftest import StandIn, TinyModel, make_gateway, serve_app, wait_ready


def _routes(tiny: TinyModel, prod: StandIn, canary_url: str, weight: int) -> list[Route]:
    return [Route("production", "base", str(tiny.base), None, 100 - weight, prod.url),
            Route("canary", "codellm/2", str(tiny.base), str(tiny.adapter), weight, canary_url)]


def _post(http: httpx.Client, url: str, user: str) -> str:
    r = http.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 1, "user": user})
    assert r.status_code == 200, r.text
    return r.headers["x-codellm-slot"]


def test_one_key_is_one_developer_whatever_user_it_claims(tiny_model: TinyModel, store: Store,
                                                         standin: Callable[..., StandIn]) -> None:
    """A client rotating `user` cannot pose as many developers (to pass min_users) nor pick its canary
    bucket: one key, one identity, one slot."""
    prod, canary = standin("prod"), standin("can")
    key = store.create_api_key("bars")
    with serve_app(create_app(make_gateway(store, VllmBackend(), _routes(tiny_model, prod, canary.url, 50)))) as url:
        wait_ready(url)
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as http:
            slots = {_post(http, url, f"developer-{i}") for i in range(40)}
        store.flush()
    assert len(slots) == 1
    stats = store.window_stats(slot=slots.pop())
    assert (stats.requests, stats.distinct_users) == (40, 1)


def test_a_key_allowed_to_vouch_names_its_developers(tiny_model: TinyModel, store: Store,
                                                     standin: Callable[..., StandIn]) -> None:
    prod, canary = standin("prod"), standin("can")
    proxy = store.create_api_key("ide-proxy", claims_users=True)
    prefix = store.api_key_info(proxy).prefix
    gw = make_gateway(store, VllmBackend(), _routes(tiny_model, prod, canary.url, 50))
    with serve_app(create_app(gw)) as url:
        wait_ready(url)
        with httpx.Client(headers={"Authorization": f"Bearer {proxy}"}, timeout=10) as http:
            for i in range(20):
                user = f"developer-{i}"
                expected = "canary" if sticky_bucket(f"{prefix}/{user}", gw.router.sticky_window_s,
                                                     time.time()) < 50 else "production"
                assert _post(http, url, user) == expected, user
        store.flush()
    assert store.window_stats().distinct_users == 20


def test_deployment_check_needs_a_completion_from_the_new_version(tiny_model: TinyModel, store: Store,
                                                                  standin: Callable[..., StandIn]) -> None:
    """A canary the gateway cannot reach answers from production (the fallback): the check says so
    instead of reporting a deployment that serves nothing."""
    prod, canary = standin("prod"), standin("can")
    key = store.create_api_key("codellm-deploy")
    with serve_app(create_app(make_gateway(store, VllmBackend(), _routes(tiny_model, prod, canary.url, 5)))) as url:
        wait_ready(url)
        assert "completion from codellm/2 via canary" in require_gateway_completion(url, "codellm/2", key,
                                                                                    timeout_s=20)
        canary.kill()
        with pytest.raises(GatewayNotServing, match=r"did not serve codellm/2 within 3s: .*from base"):
            require_gateway_completion(url, "codellm/2", key, timeout_s=3)
        with pytest.raises(GatewayNotServing, match="HTTP 401"):
            require_gateway_completion(url, "base", "cl-not-a-key", timeout_s=1)
