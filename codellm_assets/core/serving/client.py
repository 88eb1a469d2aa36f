"""What callers outside the gateway (the deployment and evaluation assets) use to ask it about itself."""

from __future__ import annotations

import time

import httpx


def gateway_serves(base_url: str, version: str, timeout_s: float = 15.0) -> tuple[bool, str]:
    """Whether a live gateway serves `version`: its /readyz lists the versions it generates with (it
    re-reads the routing table about every second)."""
    deadline = time.monotonic() + timeout_s
    detail = "not reachable"
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=2)
            if ready.status_code == 200 and version in ready.json().get("versions", []):
                return True, "serving"
            detail = f"readyz {ready.status_code}: {ready.text[:200]}"
        except httpx.HTTPError as e:
            return False, f"not reachable ({type(e).__name__})"
        time.sleep(0.5)
    return False, detail
