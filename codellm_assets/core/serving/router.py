"""Which version answers a request: a weighted production/canary split, sticky per user, plus shadow
mirroring and a canary circuit breaker. Pure logic on an immutable :class:`RoutingTable`; the gateway
swaps the table atomically when the store's routing table changes (no restart).

Stickiness: a user's bucket in [0, 100) is a hash of the user and the current window
(``sticky_window_s``, offset per user so not everyone switches at once); the canary serves buckets below
its weight. Raising the weight 5 -> 25 keeps the first 5 % on the canary (buckets are stable within a
window). Blue/green is the same table at production 0 / canary 100 (or a new production row alone),
written in one transaction.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass

from codellm_assets.core.serving.routes import Route


@dataclass(frozen=True)
class RoutingTable:
    production: Route | None = None
    canary: Route | None = None
    shadow: Route | None = None

    @classmethod
    def from_routes(cls, routes: list[Route]) -> RoutingTable:
        by_slot = {r.slot: r for r in routes}
        return cls(by_slot.get("production"), by_slot.get("canary"), by_slot.get("shadow"))

    def routes(self) -> list[Route]:
        return [r for r in (self.production, self.canary, self.shadow) if r is not None]

    def for_version(self, version: str) -> Route | None:
        """The route serving ``version`` (production first), for requests that name a version."""
        return next((r for r in (self.production, self.canary) if r and r.version == version), None)


@dataclass(frozen=True)
class Decision:
    slot: str
    route: Route


def _unit_hash(text: str) -> float:
    """A stable number in [0, 1) from ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0 ** 64


def sticky_bucket(user: str, window_s: int, now: float) -> float:
    """The user's bucket in [0, 100) for the window containing ``now``."""
    offset = _unit_hash("offset|" + user) * window_s
    window = int((now + offset) // window_s)
    return _unit_hash(f"{user}|{window}") * 100.0


class Router:
    """Chooses a slot per request; counts canary failures and opens a breaker after repeated ones."""

    def __init__(self, *, sticky_window_s: int = 3600, breaker_failures: int = 5,
                 breaker_open_s: float = 30.0, rng: random.Random | None = None) -> None:
        self.sticky_window_s = sticky_window_s
        self.breaker_failures = breaker_failures
        self.breaker_open_s = breaker_open_s
        self.table = RoutingTable()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._consecutive_failures = 0
        self._open_until = 0.0

    def set_table(self, table: RoutingTable) -> None:
        """Swap the table in one assignment (atomic for readers). A new canary resets the breaker."""
        if self.table.canary != table.canary:
            with self._lock:
                self._consecutive_failures, self._open_until = 0, 0.0
        self.table = table

    def choose(self, user: str, *, model: str | None = None, now: float | None = None) -> Decision:
        """The slot for this user now; a request naming a served version (``model``) is pinned to it."""
        table = self.table
        if table.production is None:
            raise LookupError("no production route")
        if model:
            pinned = table.for_version(model)
            if pinned is not None:
                return Decision(pinned.slot, pinned)
        canary = table.canary
        if canary is not None and canary.weight > 0 and not self.breaker_open() and \
                sticky_bucket(user, self.sticky_window_s, time.time() if now is None else now) < canary.weight:
            return Decision("canary", canary)
        return Decision("production", table.production)

    def pick_shadow(self) -> Route | None:
        """The shadow route if this request is to be mirrored (``weight`` percent of requests)."""
        shadow = self.table.shadow
        if shadow is not None and shadow.weight > 0 and self._rng.random() * 100.0 < shadow.weight:
            return shadow
        return None

    # ---- canary breaker ---------------------------------------------------------------------------------
    def breaker_open(self) -> bool:
        return time.monotonic() < self._open_until

    def canary_succeeded(self) -> None:
        with self._lock:
            self._consecutive_failures = 0

    def canary_failed(self) -> None:
        """After ``breaker_failures`` failures in a row the canary gets no traffic for ``breaker_open_s``
        (a hung canary would otherwise cost every canary user the full timeout before the retry)."""
        with self._lock:
            self._consecutive_failures += 1
            if self._consecutive_failures >= self.breaker_failures:
                self._open_until = time.monotonic() + self.breaker_open_s
                self._consecutive_failures = 0
