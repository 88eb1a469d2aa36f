"""What callers outside the gateway (the deployment asset) use to check that it serves a version."""

from __future__ import annotations

import time

import httpx


class GatewayNotServing(RuntimeError):
    """The gateway did not answer a completion with the version just deployed."""


def require_gateway_completion(base_url: str, version: str, api_key: str, *, timeout_s: float = 120.0,
                               prompt: str = "def add(a, b):\n") -> str:
    """A real completion through the gateway, pinned to ``version`` (the ``model`` field), must come back
    from that version (its ``x-codellm-version`` header), or :class:`GatewayNotServing` says why: a
    canary the gateway failed to load would otherwise get no traffic while everything looks deployed.
    Retried until ``timeout_s`` (the gateway re-reads the routing table about every second and loads
    the adapter on first use). Returns a one-line description of the answer."""
    deadline = time.monotonic() + timeout_s
    detail = "no answer yet"
    while True:
        try:
            r = httpx.post(f"{base_url}/v1/completions", timeout=max(5.0, min(60.0, timeout_s)),
                           headers={"Authorization": f"Bearer {api_key}"},
                           json={"model": version, "prompt": prompt, "max_tokens": 4, "temperature": 0})
            served = r.headers.get("x-codellm-version")
            if r.status_code == 200 and served == version:
                text = r.json()["choices"][0]["text"]
                return f"completion from {version} via {r.headers.get('x-codellm-slot')}: {text[:40]!r}"
            detail = f"HTTP {r.status_code} from {served or 'no version'}: {r.text[:300]}"
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as e:
            detail = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise GatewayNotServing(f"the gateway at {base_url} did not serve {version} within {timeout_s:g}s: "
                                    f"{detail}")
        time.sleep(1.0)
