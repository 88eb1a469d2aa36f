"""Deployment: put the registered challenger on the gateway as a canary (or blue/green), and the canary
guard sensor that promotes 5 -> 25 -> 100 % or rolls back, moving the MLflow `champion` alias at 100 %.

The routing table in the metrics store is the one source of truth for weights; the gateway re-reads it
at runtime, and this module is its only writer besides an operator.
"""


import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from codellm_assets.core.monitoring.alerts import Alert
from codellm_assets.core.monitoring.rollout import (
    CanaryDecision,
    decide_canary,
    plan_routes,
    promote_routes,
    rollback_routes,
)
from codellm_assets.core.serving.client import GatewayNotServing, require_gateway_completion
from codellm_assets.core.serving.routes import Route, RoutesChanged
from codellm_assets.core.serving.store import utcnow
from codellm_assets.core.training import registry
from codellm_assets.defs.shared import RETRAIN_CHAIN, deliver_and_log, recorded_gate_verdict
from codellm_assets.k8s_tags import k8s_tags_for
from codellm_assets.resources import GatewayResource, MetricsStoreResource, SettingsResource


def version_name(model_name: str, version: str | int) -> str:
    return f"{model_name}/{version}"


def verify_deployment(metrics_store: MetricsStoreResource, url: str, version: str, timeout_s: float) -> str:
    """A real completion through the gateway from ``version``, with a short-lived key; if none comes, the
    new version leaves the routing table (production back to 100 %) and the deployment fails with why."""
    with metrics_store.open() as store:
        key = store.create_api_key("codellm-deploy")
        try:
            return require_gateway_completion(url, version, key, timeout_s=timeout_s)
        except GatewayNotServing as e:
            routes = store.routes()
            if any(r.version == version and r.slot == "canary" for r in routes):
                store.set_routes(rollback_routes(routes), expected=routes)
            raise dg.Failure(str(e), metadata={"version": version, "gateway_url": url}) from None
        finally:
            store.revoke_api_key(key)


class GateRefused(Exception):
    """A version (or route) without the passed eval gate it needs; the message says what lacks."""


def version_gate(instance: dg.DagsterInstance, s, name: str, number: str):
    """(registry info, gate record) of a version whose record carries a passed eval gate that THIS
    instance recorded (a run of the eval_gate check on that very eval_scores materialization)."""
    try:
        info = registry.get_version(s.mlflow_tracking_uri, name, number)
    except registry.RegistryError as e:
        raise GateRefused(str(e)) from e
    record = registry.read_gate(info)
    if record is None or not record.passed:
        raise GateRefused("its registry record holds no passed eval gate (versions are registered by the "
                          "registered_model asset, which records the gate it passed)")
    recorded = recorded_gate_verdict(instance, record.eval_storage_id)
    if recorded is None or not recorded.passed or recorded.check_run_id != record.check_run_id \
            or recorded.eval_run_id != record.eval_run_id:
        raise GateRefused(f"its gate record (eval_scores materialization {record.eval_storage_id}, check run "
                          f"{record.check_run_id}) does not match a passed eval_gate evaluation in this instance")
    return info, record


def route_gate_refusal(instance: dg.DagsterInstance, s, route: Route) -> str | None:
    """Why ``route`` may not serve more traffic (None: it may). Anything that ``route.needs_gate`` must be a
    registered version whose passed gate evaluated exactly the adapter served."""
    if not route.needs_gate:
        return None
    name, sep, number = route.version.rpartition("/")
    if not sep or not number.isdigit():
        return f"{route.slot} version {route.version!r} is not a registered version (model/number)"
    try:
        _, record = version_gate(instance, s, name, number)
    except GateRefused as e:
        return f"{route.version}: {e}"
    if not route.adapter_path:
        return f"{route.version}: the route names no adapter"
    try:
        sha = registry.validate_adapter(route.adapter_path, route.base_model_path).sha256
    except registry.AdapterValidationError as e:
        return f"{route.version}: the routed adapter does not validate: {e}"
    if sha != record.adapter_sha256:
        return f"{route.version}: the route serves adapter {sha[:12]}, the gate evaluated {record.adapter_sha256[:12]}"
    return None


def gated_adapter(context: dg.AssetExecutionContext, s, name: str, number: str) -> tuple[str, dict]:
    """(local adapter dir, gate summary) of a version whose registry record carries a passed eval gate that
    this instance recorded, for exactly the adapter the registry serves; else a Failure naming what lacks."""
    def refuse(reason: str) -> dg.Failure:
        return dg.Failure(description=f"{name} v{number} not deployed: {reason}")

    try:
        info, record = version_gate(context.instance, s, name, number)
    except GateRefused as e:
        raise refuse(str(e)) from e
    base = (info.tags or {}).get("codellm.base_model", "")
    adapter = registry.download_adapter(s.mlflow_tracking_uri, name, number,
                                        s.models_dir / "adapters" / f"{name}-v{number}")
    try:
        sha = registry.validate_adapter(adapter, base).sha256
    except registry.AdapterValidationError as e:
        raise refuse(f"its adapter does not validate: {e}") from e
    if not sha == record.adapter_sha256 == (info.tags or {}).get("codellm.adapter_sha256"):
        raise refuse(f"the registry serves adapter {sha[:12]}, the gate evaluated {record.adapter_sha256[:12]}")
    return str(adapter), {"eval_storage_id": record.eval_storage_id, "eval_run_id": record.eval_run_id,
                          "check_run_id": record.check_run_id}


@dg.asset(op_tags=k8s_tags_for("deployed_endpoint"), automation_condition=RETRAIN_CHAIN, group_name="deployment",
          description="The registered challenger on the gateway: canary at the first weight (or blue/green), "
                      "recorded in the routing table; the canary guard takes it from there. Refuses a version "
                      "whose registry record lacks a passed eval gate.")
def deployed_endpoint(context: dg.AssetExecutionContext, settings: SettingsResource,
                      metrics_store: MetricsStoreResource, gateway: GatewayResource,
                      registered_model: dict) -> dg.Output[dict]:
    s = settings.get()
    version = version_name(registered_model["name"], registered_model["version"])
    adapter, gate_summary = gated_adapter(context, s, registered_model["name"], str(registered_model["version"]))
    new = Route("canary", version, registered_model["base_model_dir"], str(adapter), s.monitoring.canary_steps[0])
    with metrics_store.open() as store:
        routes = plan_routes(store.routes(), new, strategy=s.monitoring.strategy,
                             first_weight=s.monitoring.canary_steps[0],
                             base_model_path=registered_model["base_model_dir"])
        store.set_routes(routes)
    if s.monitoring.strategy == "bluegreen":
        registry.set_alias(s.mlflow_tracking_uri, registered_model["name"], "champion",
                           str(registered_model["version"]),
                           lock_url=s.registry.lock_url)
    url = gateway.base_url()
    # A real completion from the new version (or a Failure): it is live, no readiness poll needed on top.
    detail = verify_deployment(metrics_store, url, version, s.monitoring.canary.verify_timeout_s)
    context.log.info(f"{version} deployed ({s.monitoring.strategy}); gateway {url}: {detail}")
    weights = {r.slot: {"version": r.version, "weight": r.weight} for r in routes}
    return dg.Output(
        {"version": version, "strategy": s.monitoring.strategy, "routes": weights, "gateway_url": url,
         "deployed_at": datetime.now(UTC).isoformat()},
        metadata={"version": version, "strategy": s.monitoring.strategy,
                  "canary_weight": next((r.weight for r in routes if r.slot == "canary"), 0),
                  "routes": dg.MetadataValue.json(weights), "gateway_url": dg.MetadataValue.url(url),
                  "gate": dg.MetadataValue.json(gate_summary),
                  "gateway_live": True, "gateway_status": detail})


def _alert_if_idle(context, store, canary: Route, cursor: dict, s) -> None:
    """A canary that served nothing for `no_traffic_alert_minutes` (the gateway failed to load it, or
    routes around it) is an alert, once per stage: it would otherwise wait at 0 requests forever."""
    minutes = s.monitoring.canary.no_traffic_alert_minutes
    first_seen = datetime.fromisoformat(cursor.get("first_seen") or cursor["since"])
    if cursor.get("idle_alerted") == cursor["stage"] or utcnow() - first_seen < timedelta(minutes=minutes):
        return
    if store.window_stats(slot="canary", version=canary.version,
                          since=utcnow() - timedelta(minutes=minutes)).requests:
        return
    alert = Alert(kind="canary_idle", title=f"canary {canary.version} served nothing for {minutes} min",
                  asset="deployed_endpoint", severity="WARN",
                  figures={"version": canary.version, "weight": canary.weight, "minutes": minutes})
    deliver_and_log(context, alert, s.alerts)
    context.log.warning(alert.title)
    cursor["idle_alerted"] = cursor["stage"]


def _unless_ungated(context, s, canary: Route, decision: CanaryDecision) -> CanaryDecision:
    """``decision`` (a promotion), or a rollback with an alert when the canary's gate does not hold: a route
    written by hand (`codellm routes set --ungated`, the admin API) or an adapter swapped on disk must never
    widen through automation, however good its traffic looks."""
    refusal = route_gate_refusal(context.instance, s, canary)
    if refusal is None:
        return decision
    alert = Alert(kind="canary_ungated", title=f"canary {canary.version} rolled back: no passed eval gate",
                  asset="deployed_endpoint", severity="ERROR", figures={"version": canary.version,
                                                                         "weight": canary.weight, "reason": refusal})
    deliver_and_log(context, alert, s.alerts)
    context.log.error(f"{alert.title}: {refusal}")
    return CanaryDecision("rollback", f"not promoted: {refusal}", decision.current_weight, 0,
                          {**decision.figures, "gate": refusal})


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
            cursor = {"stage": stage, "since": start.isoformat(), "first_seen": utcnow().isoformat()}
        since = max(datetime.fromisoformat(cursor["since"]),
                    utcnow() - timedelta(minutes=s.monitoring.window_minutes))
        stats = store.window_stats(slot="canary", version=canary.version, since=since)
        _alert_if_idle(context, store, canary, cursor, s)
        decision = decide_canary(stats, canary.weight, s.monitoring.canary_steps, s.monitoring.canary)
        if decision.action == "promote":
            decision = _unless_ungated(context, s, canary, decision)
        try:
            if decision.action == "promote":
                store.set_routes(promote_routes(routes, canary, decision.next_weight), expected=routes)
                if decision.next_weight >= 100:   # the table moved first: only then the alias follows
                    name, _, number = canary.version.rpartition("/")
                    registry.set_alias(s.mlflow_tracking_uri, name, "champion", number, lock_url=s.registry.lock_url)
            elif decision.action == "rollback":
                store.set_routes(rollback_routes(routes), expected=routes)
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
