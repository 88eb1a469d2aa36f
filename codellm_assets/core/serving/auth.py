"""API-key authentication (keys live hashed in the store) and a per-key token-bucket rate limit."""

from __future__ import annotations

import asyncio
import math
import threading
import time

from codellm_assets.core.serving.protocol import ApiError
from codellm_assets.core.serving.store import ApiKey, Store

_CACHE_MAX = 10_000


def bearer_key(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The key from ``Authorization: Bearer KEY`` (or an ``api-key``/``x-api-key`` header)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key_header.strip() if api_key_header else None


def request_identity(key: ApiKey, claimed_user: str | None) -> str:
    """Who a request counts as (distinct developers, the sticky canary split): its API key. The client's
    free-text ``user`` is taken only from a key allowed to vouch for its users (``claims_users``), and
    kept under that key, so no client can pose as many developers, or as another key's."""
    claimed = (claimed_user or "").strip()
    if key.claims_users and claimed:
        return f"{key.prefix}/{claimed[:100]}"
    return key.prefix


class KeyAuthenticator:
    """Verifies keys against the store, caching answers (good and bad) for ``cache_s`` seconds: a revoked
    key stops working within that time, and the store is not queried on every request."""

    def __init__(self, store: Store, *, cache_s: float = 2.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}

    async def authenticate(self, key: str | None) -> ApiKey:
        if not key:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>' (create one with "
                           "`codellm keys create --team NAME`)", code="invalid_api_key")
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            info = hit[0]
        else:
            info = await asyncio.to_thread(self.store.api_key_info, key)
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (info, now + self.cache_s)
        if info is None:
            raise ApiError(401, "Incorrect or revoked API key", code="invalid_api_key")
        return info


class RateLimiter:
    """Token bucket per key: ``per_minute`` requests a minute, bursts up to ``per_minute``."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token or raise a 429 ApiError with Retry-After."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise ApiError(429, f"Rate limit reached: {int(self.capacity)} requests per minute for this "
                               f"key; retry in {wait} s", type="requests", code="rate_limit_exceeded",
                               headers={"Retry-After": str(wait)})
            self._buckets[key_id] = (tokens - 1.0, now)
