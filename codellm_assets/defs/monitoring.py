"""Monitoring: IDE feedback as an observable source, the feedback dataset that auto-materializes on
volume, the quality monitor that requests retraining, and alerts on failed checks and runs."""


import hashlib
import json
from collections import Counter
from datetime import timedelta

import dagster as dg
import polars as pl

from codellm_assets.core.monitoring.alerts import Alert, deliver
from codellm_assets.core.monitoring.feedback_examples import example_text, select_feedback, through_the_corpus_gate
from codellm_assets.core.monitoring.rollout import production_quality
from codellm_assets.core.serving.store import utcnow
from codellm_assets.defs.shared import (
    CORPUS_SCHEMA,
    FEEDBACK_REPO,
    company_eval_items,
    deliver_and_log,
    frame_version,
    latest_data_version,
)
from codellm_assets.k8s_tags import GPU_RUN_TAGS, k8s_tags_for
from codellm_assets.resources import MetricsStoreResource, SettingsResource
from codellm_assets.settings import Settings


def feedback_data_version(feedback_count: int, threshold: int) -> str:
    """The source's data version moves once per `threshold` new events: eager automation downstream
    then fires exactly when new feedback since the last batch passes the volume threshold."""
    return f"batch-{feedback_count // threshold}"


def observe_feedback(store, threshold: int) -> dg.ObserveResult:
    count, last_id = store.feedback_count(), store.last_feedback_id()
    return dg.ObserveResult(
        data_version=dg.DataVersion(feedback_data_version(count, threshold)),
        metadata={"feedback_events": count, "last_feedback_id": last_id,
                  "until_next_batch": threshold - count % threshold, "threshold": threshold})


@dg.observable_source_asset(op_tags=k8s_tags_for("feedback_events"), group_name="monitoring",
                            description="IDE feedback stored by the gateway (accept / reject / modify). Its "
                                        "data version moves each time another batch of feedback arrives.")
def feedback_events(settings: SettingsResource, metrics_store: MetricsStoreResource) -> dg.ObserveResult:
    with metrics_store.open() as store:
        return observe_feedback(store, settings.get().monitoring.feedback_volume_threshold)


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Observes the feedback store: records a new `feedback_events` data version when another "
                       "batch of feedback arrived, which the automation sensor turns into a feedback_dataset run.")
def feedback_observer(context: dg.SensorEvaluationContext, settings: SettingsResource,
                      metrics_store: MetricsStoreResource):
    with metrics_store.open() as store:
        observed = observe_feedback(store, settings.get().monitoring.feedback_volume_threshold)
    version = observed.data_version.value
    # An empty cursor (a first start of the daemon after `codellm run`, which observed feedback_events itself)
    # starts from the version the instance last recorded: the same version again is no new feedback.
    last = context.cursor or latest_data_version(context.instance, "feedback_events", observed=True)
    if last == version:
        context.update_cursor(version)
        return dg.SkipReason(f"feedback unchanged ({version})")
    context.update_cursor(version)
    return dg.SensorResult(asset_events=[dg.AssetObservation(
        asset_key="feedback_events", metadata=observed.metadata, tags={"dagster/data_version": version})])


def feedback_examples_frame(rows: list[dict], settings: Settings, extra_eval_items=()) -> tuple[pl.DataFrame, dict]:
    """Feedback rows (``Store.feedback_examples``) -> corpus-shaped training examples that passed the corpus's
    own gate, and the figures (dropped by reason, last events, redactions, decontamination hits)."""
    m = settings.monitoring
    chosen = select_feedback(rows, max_per_key=m.feedback_max_examples_per_key,
                             window=timedelta(hours=m.feedback_cap_window_hours))
    dropped = Counter(chosen.dropped)
    records = []
    for r in chosen.rows:
        text, why = example_text(r)
        if text is None:
            dropped[why] += 1
            continue
        cid = r["completion_id"]
        records.append({"repo": FEEDBACK_REPO, "branch": r.get("version") or "unknown", "commit": f"feedback-{cid}",
                        "path": f"feedback/{cid}.py", "language": "python", "bytes": len(text.encode()),
                        "content": text, "blob_sha": hashlib.sha1(text.encode()).hexdigest()})
    gate = through_the_corpus_gate(records, settings, extra_eval_items)
    dropped.update(gate.dropped)
    figures = {"events_read": len(rows), "last_events": dict(chosen.last_events),
               "dropped_by_reason": {k: v for k, v in sorted(dropped.items()) if v},
               "redactions_by_type": dict(sorted(gate.redactions.items())),
               "decontaminated_examples": dict(list(gate.decontaminated.items())[:10])}
    return pl.DataFrame(gate.kept, schema=CORPUS_SCHEMA), figures


@dg.asset(op_tags=k8s_tags_for("feedback_dataset"), group_name="monitoring", deps=[feedback_events],
          automation_condition=dg.AutomationCondition.eager(),
          description="Accepted and modified completions as clean source (the IDE's prefix + the kept code + "
                      "suffix), one per completion (its last event decides), capped per API key and window, "
                      "through the corpus's gate: quality rules, scrub, the independent leftover check, "
                      "decontamination, dedup. Auto-materializes when new feedback passes the volume threshold.")
def feedback_dataset(context: dg.AssetExecutionContext, settings: SettingsResource,
                     metrics_store: MetricsStoreResource) -> dg.Output[pl.DataFrame]:
    s = settings.get()
    with metrics_store.open() as store:
        rows = store.feedback_examples(after_id=0, events=("accept", "modify", "reject"))
    df, figures = feedback_examples_frame(rows, s, company_eval_items(s))
    context.log.info(f"{len(df)} training examples from {len(rows)} feedback events; dropped "
                     f"{figures['dropped_by_reason']}")
    return dg.Output(df, metadata={
        "examples": len(df), "dagster/row_count": len(df), "events_read": figures["events_read"],
        "by_event": dg.MetadataValue.json(figures["last_events"]),
        "dropped_by_reason": dg.MetadataValue.json(figures["dropped_by_reason"]),
        "dropped_total": sum(figures["dropped_by_reason"].values()),
        "redactions_by_type": dg.MetadataValue.json(figures["redactions_by_type"]),
        "redactions": int(df["redactions"].sum()) if len(df) else 0,
        "decontaminated_examples": dg.MetadataValue.json(figures["decontaminated_examples"])},
        data_version=frame_version(df))   # same examples, same version: no retrain (RETRAIN_CHAIN)


@dg.op(out=dg.Out(dg.Nothing),     # nothing to store: the figures go into the step's metadata
       description="Deletes store rows (requests, feedback, shadow results) older than monitoring.retention_days.")
def delete_expired_store_rows(context: dg.OpExecutionContext, settings: SettingsResource,
                              metrics_store: MetricsStoreResource):
    days = settings.get().monitoring.retention_days
    cutoff = utcnow() - timedelta(days=days)
    with metrics_store.open() as store:
        deleted = store.delete_older_than(cutoff)
    context.log.info(f"retention {days} days: deleted {deleted} (rows before {cutoff.isoformat()} UTC)")
    return dg.Output(None, metadata={"retention_days": days, "cutoff": cutoff.isoformat(),
                                     "deleted": dg.MetadataValue.json(deleted)})


@dg.job(name="store_retention", description="Keeps the metrics store within monitoring.retention_days.")
def store_retention_job():
    delete_expired_store_rows()


store_retention_schedule = dg.ScheduleDefinition(
    job=store_retention_job, cron_schedule="17 3 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: deletes stored requests and feedback older than monitoring.retention_days.")


retrain_job = dg.define_asset_job(
    "retrain", selection=dg.AssetSelection.assets("training_dataset").downstream(),
    description="Tokenize (with feedback) -> adapter (incremental from the champion) -> eval -> register -> canary.",
    tags={"codellm/incremental": "true", **GPU_RUN_TAGS})


@dg.sensor(job=retrain_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Production quality (acceptance rate, buggy-code rate, p95) -> a retraining run with "
                       "the reason as a tag; de-duplicated by run_key, with a cooldown.")
def quality_monitor(context: dg.SensorEvaluationContext, settings: SettingsResource,
                    metrics_store: MetricsStoreResource):
    s = settings.get()
    with metrics_store.open() as store:
        stats = store.window_stats(slot="production", since=utcnow() - timedelta(minutes=s.monitoring.window_minutes))
    verdict = production_quality(stats, s.monitoring.production)
    cursor = json.loads(context.cursor) if context.cursor else {}
    if not verdict.retrain:
        return dg.SkipReason(f"production healthy: {verdict.reasons or verdict.figures}")
    now = utcnow().timestamp()
    cooldown_s = s.monitoring.retrain_cooldown_minutes * 60
    if now - cursor.get("last_request_ts", 0) < cooldown_s:
        return dg.SkipReason(f"retraining wanted ({'; '.join(verdict.reasons)}) but in cooldown "
                             f"({s.monitoring.retrain_cooldown_minutes} min)")
    # One request per cooldown window: the run_key makes a re-evaluated tick idempotent.
    window = int(now // max(cooldown_s, 1))
    context.update_cursor(json.dumps({"last_request_ts": now}))
    context.log.info(f"requesting retraining: {verdict.reasons} {verdict.figures}")
    return dg.RunRequest(run_key=f"retrain-{window}", tags={
        "codellm/reason": "; ".join(verdict.reasons)[:200], "codellm/incremental": "true",
        "codellm/figures": json.dumps(verdict.figures)[:500]})


def _run_url(base: str, run_id: str | None) -> str | None:
    return f"{base.rstrip('/')}/runs/{run_id}" if run_id else None


def _check_alert(record, base_url: str, recovered: bool) -> Alert:
    ev = record.evaluation
    figures = {k: getattr(v, "value", v) for k, v in (ev.metadata or {}).items()
               if isinstance(getattr(v, "value", v), (int, float, str, bool))}
    asset = ev.asset_key.to_user_string()
    return Alert(kind="check_recovered" if recovered else "check_failed",
                 title=f"{asset} / {ev.check_name} {'recovered' if recovered else 'failed'}",
                 asset=asset, check=ev.check_name, severity=ev.severity.value, partition=ev.partition,
                 figures=figures, run_url=_run_url(base_url, record.run_id))


PAGE = 100


def _records_after(instance, key, floor_id: int) -> list:
    """Every execution record of ``key`` with id > ``floor_id`` (oldest first), paging by storage id: not
    only the last page."""
    out, cursor = [], None
    while True:
        page = instance.event_log_storage.get_asset_check_execution_history(key, limit=PAGE, cursor=cursor)
        out += [r for r in page if r.id > floor_id]
        if len(page) < PAGE or page[-1].id <= floor_id:
            return sorted(out, key=lambda r: r.id)
        cursor = page[-1].id


def _run_ended(instance, run_id: str | None) -> bool:
    run = instance.get_run_by_id(run_id) if run_id else None
    return run is None or run.is_finished


def check_alerts(instance, check_keys, cursor: dict, base_url: str) -> tuple[list[Alert], dict]:
    """Every failed evaluation alerts exactly once (however many partitions failed at once); the first pass
    after a failure of a partition announces its recovery. The cursor is the storage id of the last record
    handled; records still planned are kept aside (``pending``) instead of holding the cursor back, and
    dropped once their run ended without evaluating them."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as St
    alerts = []
    for key in check_keys:
        name = key.to_user_string()
        seen = {"last_id": 0, "failing": {}, "pending": [], **cursor.get(name, {})}
        pending = set(seen["pending"])
        floor = min(pending, default=seen["last_id"] + 1) - 1
        for rec in _records_after(instance, key, min(floor, seen["last_id"])):
            if rec.id <= seen["last_id"] and rec.id not in pending:
                continue
            part = rec.partition or ""
            if rec.status not in (St.SUCCEEDED, St.FAILED) or rec.evaluation is None:
                # Its run is going: look again next tick. Its run ended (crashed, or failed before the
                # check): nothing more will come; the run failure has its own alert (run_failure_alert).
                (pending.discard if _run_ended(instance, rec.run_id) else pending.add)(rec.id)
            else:
                failed = not rec.evaluation.passed
                if failed:
                    alerts.append(_check_alert(rec, base_url, recovered=False))
                elif seen["failing"].get(part):
                    alerts.append(_check_alert(rec, base_url, recovered=True))
                seen["failing"][part] = failed
                pending.discard(rec.id)
            seen["last_id"] = max(seen["last_id"], rec.id)
        seen["pending"] = sorted(pending)
        cursor[name] = seen
    return alerts, cursor


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Posts failed asset checks (and their recoveries) to the configured webhook / SMTP.")
def check_alert_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    s = settings.get()
    repo_def = context.repository_def
    check_keys = sorted(repo_def.asset_graph.asset_check_keys, key=lambda k: k.to_user_string())
    cursor = json.loads(context.cursor) if context.cursor else {}
    alerts, cursor = check_alerts(context.instance, check_keys, cursor, s.alerts.ui_base_url)
    for alert in alerts:
        deliver_and_log(context, alert, s.alerts)
    context.update_cursor(json.dumps(cursor))
    if not alerts:
        return dg.SkipReason("no new check failures or recoveries")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, monitor_all_code_locations=False,
                       description="Posts failed runs to the configured webhook / SMTP.")
def run_failure_alert(context: dg.RunFailureSensorContext, settings: SettingsResource):
    s = settings.get()
    run = context.dagster_run
    alert = Alert(kind="run_failed", title=f"run {run.job_name} failed", severity="ERROR",
                  figures={"error": (context.failure_event.message or "")[:300], "run_id": run.run_id},
                  run_url=_run_url(s.alerts.ui_base_url, run.run_id))
    for d in deliver(alert, s.alerts):
        (context.log.info if d.ok else context.log.warning)(f"run-failure alert via {d.channel}: {d.detail}")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "codellm_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    run_tags={"codellm/launched_by": "automation", "codellm/incremental": "true"},
    minimum_interval_seconds=30,
    description="Declarative automation (on by default): feedback volume -> feedback_dataset -> retrain.")
