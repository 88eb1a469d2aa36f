"""Deployment: put the registered challenger on the gateway as a canary (or blue/green), and the canary
guard sensor that promotes 5 -> 25 -> 100 % or rolls back, moving the MLflow `champion` alias at 100 %.

The routing table in the metrics store is the one source of truth for weights; the gateway re-reads it
at runtime, and this module is its only writer besides an operator.
"""


import json
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import httpx

from codellm_assets.core import registry
from codellm_assets.core.rollout import decide_canary
from codellm_assets.core.store import Route, RoutesChanged, utcnow
from codellm_assets.defs.automation import RETRAIN_CHAIN
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import GatewayResource, MetricsStoreResource, SettingsResource


def version_name(model_name: str, version: str | int) -> str:
    return f"{model_name}/{version}"


def plan_routes(current: list[Route], new: Route, *, strategy: str, first_weight: int, base_model_path: str) -> list[Route]:
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


@dg.asset(op_tags=k8s_tags_for("deployed_endpoint"), automation_condition=RETRAIN_CHAIN, group_name="deployment",
          description="The registered challenger on the gateway: canary at the first weight (or blue/green), "
                      "recorded in the routing table; the canary guard takes it from there.")
def deployed_endpoint(context: dg.AssetExecutionContext, settings: SettingsResource,
                      metrics_store: MetricsStoreResource, gateway: GatewayResource,
                      registered_model: dict) -> dg.Output[dict]:
    s = settings.get()
    version = version_name(registered_model["name"], registered_model["version"])
    adapter = registry.download_adapter(s.mlflow_tracking_uri, registered_model["name"],
                                        str(registered_model["version"]),
                                        s.models_dir / "adapters" / version.replace("/", "-v"))
    new = Route("canary", version, registered_model["base_model_dir"], str(adapter), s.monitoring.canary_steps[0])
    with metrics_store.open() as store:
        routes = plan_routes(store.routes(), new, strategy=s.monitoring.strategy,
                             first_weight=s.monitoring.canary_steps[0],
                             base_model_path=registered_model["base_model_dir"])
        store.set_routes(routes)
    if s.monitoring.strategy == "bluegreen":
        registry.set_alias(s.mlflow_tracking_uri, registered_model["name"], "champion", str(registered_model["version"]),
                           lock_url=s.registry.lock_url)
    url = gateway.base_url()
    live, detail = gateway_serves(url, version)
    context.log.info(f"{version} deployed ({s.monitoring.strategy}); gateway {url}: {detail}")
    weights = {r.slot: {"version": r.version, "weight": r.weight} for r in routes}
    return dg.Output(
        {"version": version, "strategy": s.monitoring.strategy, "routes": weights, "gateway_url": url,
         "deployed_at": datetime.now(timezone.utc).isoformat()},
        metadata={"version": version, "strategy": s.monitoring.strategy,
                  "canary_weight": next((r.weight for r in routes if r.slot == "canary"), 0),
                  "routes": dg.MetadataValue.json(weights), "gateway_url": dg.MetadataValue.url(url),
                  "gateway_live": live, "gateway_status": detail})


def _promote_routes(routes: list[Route], canary: Route, next_weight: int) -> list[Route]:
    prod = next(r for r in routes if r.slot == "production")
    others = [r for r in routes if r.slot not in ("production", "canary")]
    if next_weight >= 100:  # the canary becomes production; the old production stays at 0 % for a switch back
        return [Route("production", canary.version, canary.base_model_path, canary.adapter_path, 100),
                Route("canary", prod.version, prod.base_model_path, prod.adapter_path, 0), *others]
    return [Route("production", prod.version, prod.base_model_path, prod.adapter_path, 100 - next_weight),
            Route("canary", canary.version, canary.base_model_path, canary.adapter_path, next_weight), *others]


def _rollback(routes: list[Route]) -> list[Route]:
    return [Route(r.slot, r.version, r.base_model_path, r.adapter_path,
                  {"production": 100, "canary": 0}.get(r.slot, r.weight)) for r in routes]


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Canary guard: error rate, p95 latency, buggy-code rate of the canary over the window "
                       "-> promote (5 -> 25 -> 100 %, champion alias at 100 %), hold, or roll back.")
def canary_guard(context: dg.SensorEvaluationContext, settings: SettingsResource,
                 metrics_store: MetricsStoreResource):
    s = settings.get()
    with metrics_store.open() as store:
        routes = store.routes()
        canary = next((r for r in routes if r.slot == "canary" and r.weight > 0), None)
        if canary is None:
            return dg.SkipReason("no canary in the routing table")
        cursor = json.loads(context.cursor) if context.cursor else {}
        stage = f"{canary.version}@{canary.weight}"
        if cursor.get("stage") != stage:
            # After a promotion the new stage's window starts now; a canary seen for the first time is
            # judged on the whole window (its traffic since the deployment counts).
            start = utcnow() if cursor.get("stage") else utcnow() - timedelta(minutes=s.monitoring.window_minutes)
            cursor = {"stage": stage, "since": start.isoformat()}
        since = max(datetime.fromisoformat(cursor["since"]),
                    utcnow() - timedelta(minutes=s.monitoring.window_minutes))
        stats = store.window_stats(slot="canary", version=canary.version, since=since)
        decision = decide_canary(stats, canary.weight, s.monitoring.canary_steps, s.monitoring.canary)
        try:
            if decision.action == "promote":
                store.set_routes(_promote_routes(routes, canary, decision.next_weight), expected=routes)
                if decision.next_weight >= 100:   # the table moved first: only then the alias follows
                    name, _, number = canary.version.rpartition("/")
                    registry.set_alias(s.mlflow_tracking_uri, name, "champion", number, lock_url=s.registry.lock_url)
            elif decision.action == "rollback":
                store.set_routes(_rollback(routes), expected=routes)
        except RoutesChanged as e:
            return dg.SkipReason(f"canary {canary.version}: {decision.action} not applied: {e}")
    context.log.info(f"canary {canary.version}: {decision.action} {decision.current_weight}% -> "
                     f"{decision.next_weight}% ({decision.reason}) {decision.figures}")
    context.update_cursor(json.dumps(cursor))
    observation = dg.AssetObservation(
        asset_key="deployed_endpoint",
        metadata={"decision": decision.action, "reason": decision.reason, "version": canary.version,
                  "weight_before": decision.current_weight, "weight_after": decision.next_weight,
                  "figures": dg.MetadataValue.json(decision.figures)})
    return dg.SensorResult(asset_events=[observation])
