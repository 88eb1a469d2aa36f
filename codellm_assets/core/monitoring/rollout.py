"""Canary progression and production-quality decisions: pure functions over window statistics.

The Dagster sensors (defs/monitoring.py) read the store, call these, and act (change routing weights,
move MLflow aliases, request a retraining run). Keeping the decisions here makes every rule a table test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from codellm_assets.core.serving.routes import Route
from codellm_assets.settings import CanaryThresholds, ProductionThresholds


class Stats(Protocol):
    """The shape of `core.store.WindowStats` the decisions need."""

    requests: int
    errors: int
    error_rate: float
    p95_latency_s: float
    p95_latency_per_token_s: float | None
    buggy_code_rate: float | None
    acceptance_rate: float | None
    distinct_users: int
    feedback_events: int


Action = Literal["promote", "hold", "rollback", "complete"]


@dataclass
class CanaryDecision:
    action: Action
    reason: str
    current_weight: int
    next_weight: int
    figures: dict = field(default_factory=dict)


def _figures(stats: Stats) -> dict:
    return {"requests": stats.requests, "distinct_users": stats.distinct_users,
            "error_rate": round(stats.error_rate, 4), "p95_latency_s": round(stats.p95_latency_s, 4),
            "p95_latency_per_token_s": None if stats.p95_latency_per_token_s is None
            else round(stats.p95_latency_per_token_s, 4),
            "buggy_code_rate": None if stats.buggy_code_rate is None else round(stats.buggy_code_rate, 4),
            "acceptance_rate": None if stats.acceptance_rate is None else round(stats.acceptance_rate, 4)}


def hard_failure(stats: Stats, limits: CanaryThresholds) -> str | None:
    """A canary failing outright (>= ``hard_min_errors`` errors at >= ``hard_error_rate``): no need to
    wait for the full sample."""
    if stats.errors >= limits.hard_min_errors and stats.error_rate >= limits.hard_error_rate:
        return f"hard failure: {stats.errors} errors, error rate {stats.error_rate:.1%} >= {limits.hard_error_rate:.1%}"
    return None


def canary_breaches(stats: Stats, limits: CanaryThresholds) -> list[str]:
    """Threshold breaches of the canary; any one rolls it back once the sample is big enough."""
    out = []
    if stats.error_rate > limits.max_error_rate:
        out.append(f"error rate {stats.error_rate:.1%} > {limits.max_error_rate:.1%}")
    # Latency per generated token: a long completion is not a slow one. Per request only when no
    # request in the window has a token count.
    per_token = stats.p95_latency_per_token_s
    if per_token is not None and per_token > limits.max_p95_latency_per_token_s:
        out.append(f"p95 latency {per_token * 1000:.0f} ms/token > {limits.max_p95_latency_per_token_s * 1000:.0f}"
                   " ms/token")
    elif per_token is None and stats.p95_latency_s > limits.max_p95_latency_s:
        out.append(f"p95 latency {stats.p95_latency_s:.2f}s > {limits.max_p95_latency_s:.2f}s")
    if stats.buggy_code_rate is not None and stats.buggy_code_rate > limits.max_buggy_code_rate:
        out.append(f"buggy-code rate {stats.buggy_code_rate:.1%} > {limits.max_buggy_code_rate:.1%}")
    return out


def decide_canary(stats: Stats, current_weight: int, steps: list[int], limits: CanaryThresholds) -> CanaryDecision:
    """Promote along `steps` when the canary held for the window with enough requests AND users.

    Rollback needs the same evidence as promotion (`min_requests`): one slow or failed request out of
    three decides nothing. The exception is a hard failure (`hard_min_errors` errors at
    `hard_error_rate` or more), which rolls back at once. Promotion also needs `min_users` distinct
    users (identities from API keys): one developer's burst decides nothing, and no data never promotes.
    """
    figures = _figures(stats)
    hard = hard_failure(stats, limits)
    if hard:
        return CanaryDecision("rollback", hard, current_weight, 0, figures)
    breaches = canary_breaches(stats, limits) if stats.requests >= limits.min_requests else []
    if breaches:
        return CanaryDecision("rollback", "; ".join(breaches), current_weight, 0, figures)
    if current_weight >= 100:
        return CanaryDecision("complete", "canary already at 100 %", current_weight, 100, figures)
    if stats.requests < limits.min_requests:
        return CanaryDecision("hold", f"{stats.requests} requests < {limits.min_requests} needed",
                              current_weight, current_weight, figures)
    if stats.distinct_users < limits.min_users:
        return CanaryDecision("hold", f"{stats.distinct_users} distinct users < {limits.min_users} needed",
                              current_weight, current_weight, figures)
    nxt = next((s for s in steps if s > current_weight), 100)
    return CanaryDecision("promote", f"held for the window: {stats.requests} requests from "
                                     f"{stats.distinct_users} users within thresholds", current_weight, nxt, figures)


@dataclass
class QualityVerdict:
    retrain: bool
    reasons: list[str]
    figures: dict


def production_quality(stats: Stats, limits: ProductionThresholds) -> QualityVerdict:
    """Whether production quality asks for a retraining run, and why."""
    figures = _figures(stats)
    if stats.requests < limits.min_requests:
        return QualityVerdict(False, [f"only {stats.requests} requests (< {limits.min_requests})"], figures)
    reasons = []
    if stats.acceptance_rate is not None and stats.acceptance_rate < limits.min_acceptance_rate:
        reasons.append(f"acceptance rate {stats.acceptance_rate:.1%} < {limits.min_acceptance_rate:.1%}")
    if stats.buggy_code_rate is not None and stats.buggy_code_rate > limits.max_buggy_code_rate:
        reasons.append(f"buggy-code rate {stats.buggy_code_rate:.1%} > {limits.max_buggy_code_rate:.1%}")
    if stats.p95_latency_s > limits.max_p95_latency_s:
        reasons.append(f"p95 latency {stats.p95_latency_s:.2f}s > {limits.max_p95_latency_s:.2f}s")
    return QualityVerdict(bool(reasons), reasons, figures)


def plan_routes(current: list[Route], new: Route, *, strategy: str, first_weight: int,
                base_model_path: str) -> list[Route]:
    """The routing table after deploying `new`: canary at `first_weight` beside production, or blue/green
    (new version 100 %, previous kept at 0 % for an instant switch back)."""
    prod = next((r for r in current if r.slot == "production"), None) or \
        Route(slot="production", version="base", base_model_path=base_model_path, adapter_path=None, weight=100)
    shadow = [r for r in current if r.slot == "shadow"]
    if strategy == "bluegreen":
        return [Route("production", new.version, new.base_model_path, new.adapter_path, 100),
                Route("canary", prod.version, prod.base_model_path, prod.adapter_path, 0), *shadow]
    return [Route("production", prod.version, prod.base_model_path, prod.adapter_path, 100 - first_weight),
            Route("canary", new.version, new.base_model_path, new.adapter_path, first_weight), *shadow]


def promote_routes(routes: list[Route], canary: Route, next_weight: int) -> list[Route]:
    """The table after promoting `canary` to `next_weight` (at 100 it becomes production)."""
    prod = next(r for r in routes if r.slot == "production")
    others = [r for r in routes if r.slot not in ("production", "canary")]
    if next_weight >= 100:  # the canary becomes production; the old production stays at 0 % for a switch back
        return [Route("production", canary.version, canary.base_model_path, canary.adapter_path, 100),
                Route("canary", prod.version, prod.base_model_path, prod.adapter_path, 0), *others]
    return [Route("production", prod.version, prod.base_model_path, prod.adapter_path, 100 - next_weight),
            Route("canary", canary.version, canary.base_model_path, canary.adapter_path, next_weight), *others]


def rollback_routes(routes: list[Route]) -> list[Route]:
    """The table after a rollback: production back to 100 %, the canary to 0 %."""
    return [Route(r.slot, r.version, r.base_model_path, r.adapter_path,
                  {"production": 100, "canary": 0}.get(r.slot, r.weight)) for r in routes]
