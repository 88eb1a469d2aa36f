"""The gateway's routing table and readiness, as a mixin of ``Gateway``: apply the store's routing table
(production must load, a failing canary/shadow is retried), accept admin updates, and probe the production
version with a real tiny generation for /readyz."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from codellm_assets.core.serving.backends.base import Backend, GenerationParams
from codellm_assets.core.serving.metrics import GatewayMetrics
from codellm_assets.core.serving.protocol import ApiError
from codellm_assets.core.serving.router import Router, RoutingTable
from codellm_assets.core.serving.routes import Route, validate_routes
from codellm_assets.core.serving.store import Store
from codellm_assets.settings import ServingSettings

log = logging.getLogger(__name__)
ROUTE_RETRY_S = 5.0
PROBE_TIMEOUT_S = 60.0


class RoutingReadiness:
    """The routing-table and readiness half of ``Gateway`` (which sets the collaborators below)."""

    settings: ServingSettings
    store: Store
    backend: Backend
    router: Router
    metrics: GatewayMetrics
    default_routes: list[Route] | Callable[[], list[Route]]

    def _init_routing(self) -> None:
        self._applied_sig: tuple[Any, ...] | None = None
        self._failed_sig: tuple[Any, ...] | None = None
        self._defaults_resolved: list[Route] | None = None
        self._routes_lock = asyncio.Lock()
        self._complete_table = False
        self._retry_at = 0.0
        self.route_error: str | None = None
        self._last_ok = 0.0
        self._last_outcome_ok = False
        self._last_check = 0.0
        self.last_error: str | None = None

    # ---- routing table ----------------------------------------------------------------------------------
    async def refresh_routes(self, routes: list[Route] | None = None) -> None:
        """Apply the store's routing table (or ``routes``) if it changed. Production must load; a canary or
        shadow that fails to load is left out and retried every ROUTE_RETRY_S. Serialized: the periodic
        refresh never applies a table it read before an admin update."""
        async with self._routes_lock:
            await self._refresh_routes(routes)

    async def _refresh_routes(self, routes: list[Route] | None) -> None:
        if routes is None:
            routes = await asyncio.to_thread(self.store.routes)
        if not routes:
            try:
                routes = await self._default_table()
            except Exception as e:  # noqa: BLE001 - e.g. the base model cannot be built: say so on /readyz
                self.route_error = f"no routing table in the store and no default model: {e}"
                log.error("%s", self.route_error)
                return
        sig = tuple((r.slot, r.version, r.base_model_path, r.adapter_path, r.weight, r.endpoint) for r in routes)
        now = time.monotonic()
        if sig == self._applied_sig and (self._complete_table or now < self._retry_at):
            return
        if sig == self._failed_sig and now < self._retry_at:
            return
        loaded, errors = [], []
        for r in routes:
            try:
                await self.backend.load_version(r)
                loaded.append(r)
            except Exception as e:  # noqa: BLE001 - a bad path, a dead server: keep serving what works
                errors.append(f"{r.slot} {r.version}: {e}")
        self.route_error = "; ".join(errors) or None
        if errors:
            log.error("routing table not fully loaded: %s", self.route_error)
            self._retry_at = now + ROUTE_RETRY_S
        if not any(r.slot == "production" for r in loaded):
            self._failed_sig = sig
            return
        self.router.set_table(RoutingTable.from_routes(loaded))
        self._applied_sig, self._complete_table = sig, not errors
        self.metrics.routing_weight.clear()
        for r in loaded:
            self.metrics.routing_weight.labels(slot=r.slot, version=r.version).set(r.weight)

    async def _default_table(self) -> list[Route]:
        """The routes served while the store has none: a list, or a callable resolved once (in a thread:
        it may build the base model)."""
        if callable(self.default_routes):
            if self._defaults_resolved is None:
                self._defaults_resolved = await asyncio.to_thread(self.default_routes)
            return self._defaults_resolved
        return self.default_routes

    async def set_routes(self, routes: list[Route]) -> None:
        """Admin update: validate, load every version (ApiError 400 if one fails), store, apply now."""
        try:
            validate_routes(routes)
        except ValueError as e:
            raise ApiError(400, str(e), param="routes") from e
        for r in routes:
            try:
                await self.backend.load_version(r)
            except Exception as e:   # any load failure is the table's fault: refuse it
                raise ApiError(400, f"cannot load {r.slot} version {r.version}: {e}", param="routes") from e
        await asyncio.to_thread(self.store.set_routes, routes)
        await self.refresh_routes(routes)

    # ---- readiness --------------------------------------------------------------------------------------
    def _mark(self, ok: bool, error: str | None = None) -> None:
        now = time.monotonic()
        self._last_check = now
        self._last_outcome_ok = ok
        if ok:
            self._last_ok = now
        else:
            self.last_error = error
        self.metrics.ready.set(1 if self.ready() else 0)

    def ready(self) -> bool:
        fresh = time.monotonic() - self._last_ok < 3 * self.settings.readiness_interval_s
        return self._last_outcome_ok and fresh and self.router.table.production is not None

    def _probe_due(self) -> bool:
        if self.router.table.production is None:
            return False
        since = time.monotonic() - max(self._last_check, self._last_ok)
        return since >= (self.settings.readiness_interval_s if self._last_outcome_ok else 1.0)

    async def probe(self) -> bool:
        """A real tiny generation on the production version (a /health that answers is not enough)."""
        prod = self.router.table.production
        if prod is None:
            return False
        try:
            await asyncio.wait_for(self.backend.generate(
                "def", GenerationParams(version=prod.version, max_tokens=1, temperature=0)), PROBE_TIMEOUT_S)
            self._mark(True)
        except Exception as e:  # noqa: BLE001
            self._mark(False, f"probe generation failed: {e!r}")
        return self._last_outcome_ok
