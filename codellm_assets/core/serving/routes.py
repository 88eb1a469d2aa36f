"""The routing table's types: which version serves which slot at what weight. Shared by the store (its
persistence), the router and the backends, and the rollout planning in core/monitoring."""

from __future__ import annotations

from dataclasses import dataclass

SLOTS = ("production", "canary", "shadow")


@dataclass
class Route:
    """One row of the routing table. ``weight``: production/canary share in percent (the two sum to 100);
    for the shadow slot, the percent of requests mirrored. ``endpoint``: the vLLM server that serves this
    version (vllm backend; default ``serving.vllm_url``)."""

    slot: str
    version: str
    base_model_path: str
    adapter_path: str | None = None
    weight: int = 100
    endpoint: str | None = None

    @property
    def needs_gate(self) -> bool:
        """The configured base model serves without an eval gate; anything with an adapter needs one."""
        return not (self.version == "base" and not self.adapter_path)


def validate_routes(routes: list[Route]) -> None:
    """Raise ValueError naming the problem when ``routes`` is not a usable routing table."""
    slots = [r.slot for r in routes]
    for r in routes:
        if r.slot not in SLOTS:
            raise ValueError(f"route slot '{r.slot}' is not one of {list(SLOTS)}")
        if not isinstance(r.weight, int) or not 0 <= r.weight <= 100:
            raise ValueError(f"route '{r.slot}': weight {r.weight!r} must be an integer 0..100")
        if not r.version or not r.base_model_path:
            raise ValueError(f"route '{r.slot}': version and base_model_path are required")
    dupes = sorted({s for s in slots if slots.count(s) > 1})
    if dupes:
        raise ValueError(f"one route per slot; duplicated: {dupes}")
    if routes and "production" not in slots:
        raise ValueError("a routing table needs a 'production' route")
    by_slot = {r.slot: r for r in routes}
    if "production" in by_slot:
        total = by_slot["production"].weight + (by_slot["canary"].weight if "canary" in by_slot else 0)
        if total != 100:
            raise ValueError(f"production and canary weights must sum to 100 (got {total}); e.g. 95 and 5, "
                             "or 0 and 100 for a blue/green switch")


class RoutesChanged(RuntimeError):
    """A compare-and-set of the routing table lost against another writer."""
