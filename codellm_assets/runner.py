"""Run the asset graph in process against the project's Dagster instance (what `codellm run` does).

One run per repo partition for the per-repo stages (snapshot -> clean -> scrub, with their checks:
a failing blocking check stops that partition in its run), then one run per downstream asset in
topological order, so progress is visible step by step and a failed step can be re-run alone
(`codellm run --select 'ASSET*'`) and resumes from what is stored.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from codellm_assets import fresh_partitions as fresh
from codellm_assets.settings import PROJECT_ROOT, Settings

PER_REPO_ASSETS = ("repo_snapshots", "clean_files", "scrubbed_corpus")
PER_SOURCE_ASSETS = ("source_documents", "source_corpus")   # one run per sources.connectors entry
# The console shows the assets' own INFO logs (progress, figures), not Dagster's DEBUG event stream; every
# event is still stored in the instance and visible in the UI.
_QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class StepResult:
    name: str
    partition: str | None
    success: bool
    duration_s: float
    run_id: str | None = None
    error: str | None = None
    checks_failed: list[str] = field(default_factory=list)
    peak_rss_gb: float = 0.0        # the process's peak RSS after the step (in process: the steps so far)
    skipped: bool = False           # up to date (fresh_partitions): run_id is the run that made what is stored


def prepare_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME (default: <home>/dagster, with the project's dagster.yaml)."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return dg.DagsterInstance.get()


def ensure_repo_partitions(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    from codellm_assets.defs.shared import repos_partitions

    existing = set(instance.get_dynamic_partitions(repos_partitions.name))
    missing = [r.name for r in settings.repos if r.name not in existing]
    if missing:
        instance.add_dynamic_partitions(repos_partitions.name, missing)
    return [r.name for r in settings.repos]


def ensure_source_partitions(instance: dg.DagsterInstance, settings: Settings) -> list[str]:
    from codellm_assets.defs.shared import sources_partitions

    existing = set(instance.get_dynamic_partitions(sources_partitions.name))
    missing = [c.name for c in settings.sources.connectors if c.name not in existing]
    if missing:
        instance.add_dynamic_partitions(sources_partitions.name, missing)
    return [c.name for c in settings.sources.connectors]


def planned_steps(defs: dg.Definitions, selection: str | None) -> list[str]:
    """Materializable asset names in topological order, restricted to a selection string if given."""
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]
    if selection:
        chosen = dg.AssetSelection.from_string(selection).resolve(graph)
        keys = [k for k in keys if k in chosen]
    return [k.to_user_string() for k in keys]


def source_keys_feeding(defs: dg.Definitions, steps: list[str]) -> list[str]:
    """Observable source assets (git_heads, feedback_events) with a child among the steps."""
    graph = defs.resolve_asset_graph()
    chosen = {dg.AssetKey(s) for s in steps}
    return sorted(k.to_user_string() for k in graph.get_all_asset_keys()
                  if graph.get(k).is_observable and not graph.get(k).is_materializable
                  and graph.get(k).child_keys & chosen)


def _observe_sources(defs: dg.Definitions, job, instance: dg.DagsterInstance, steps: list[str]) -> StepResult | None:
    """Observe the source assets feeding the steps before materializing them, as the sensors do under the daemon:
    the materializations then record the source versions they consumed, and the sensors, starting with an empty
    cursor after this run, find that version in the instance instead of reporting it as new input (which made
    the automation retrain after every `codellm run`). Returns a failed step, or None."""
    sources = source_keys_feeding(defs, steps)
    if not sources:
        return None
    result = _execute(job, instance, sources, None)
    return None if result.success else result


def _failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]


def run_graph(settings: Settings, *, selection: str | None = None, config_path: str | None = None,
              on_step: Callable[[str, str | None], None] | None = None,
              on_done: Callable[[StepResult], None] | None = None, skip_fresh: bool = False) -> list[StepResult]:
    """Materialize the selected graph (default: all) in process; returns one result per step.
    `config_path`: the settings file the definitions' resources load (default: $CODELLM_CONFIG / codellm.yaml).
    `skip_fresh`: a repo partition whose per-repo steps are up to date (fresh_partitions) is not run again; its
    result says so (``skipped``). Every per-repo run is tagged with its inputs' fingerprint either way."""
    from codellm_assets.definitions import build_defs

    defs = build_defs(config_path)
    with _frozen_until_done():
        return _run_steps(defs, settings, selection, on_step, on_done, skip_fresh)


@contextlib.contextmanager
def _frozen_until_done():
    """What is alive once the definitions are loaded (modules, Dagster's definitions) lives for the whole run:
    gc.freeze moves it out of the collector's sight, so release_memory's collection after each step scans only
    what the steps made (measured: 0.47 s per collection on the 100 MB benchmark's re-run without it)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_steps(defs: dg.Definitions, settings: Settings, selection: str | None,
               on_step: Callable[[str, str | None], None] | None, on_done: Callable[[StepResult], None] | None,
               skip_fresh: bool) -> list[StepResult]:
    instance = prepare_instance(settings)
    repos = ensure_repo_partitions(instance, settings)
    sources = ensure_source_partitions(instance, settings)
    job = defs.resolve_implicit_global_asset_job_def()
    steps = planned_steps(defs, selection)
    results: list[StepResult] = []
    observed = _observe_sources(defs, job, instance, steps)
    if observed is not None:   # the store or a repo cannot be read: every consumer would fail the same way
        if on_done:
            on_done(observed)
        return [observed]
    per_repo = [s for s in steps if s in PER_REPO_ASSETS]
    per_source = [s for s in steps if s in PER_SOURCE_ASSETS]
    # a source that fails (a refused token) fails alone: the other partitions and the steps after still run
    for names, partitions in ((per_repo, repos), (per_source, sources if per_source else [])):
        for partition in partitions if names else []:
            if on_step:
                on_step(" → ".join(names), partition)
            results.append(_run_partition(job, instance, settings, names, partition,
                                          per_repo=names is per_repo, skip_fresh=skip_fresh))
            if on_done:
                on_done(results[-1])
    blocked_by_check = any(r.checks_failed for r in results if not r.success and r.partition)
    for name in (s for s in steps if s not in PER_REPO_ASSETS + PER_SOURCE_ASSETS):
        if blocked_by_check or (results and not results[-1].success and results[-1].partition is None):
            break  # a blocking check failed or the previous step failed: nothing flows on
        if on_step:
            on_step(name, None)
        results.append(_execute(job, instance, [name], None))
        if on_done:
            on_done(results[-1])
    return results


def _run_partition(job, instance: dg.DagsterInstance, settings: Settings, names: list[str], partition: str, *,
                   per_repo: bool, skip_fresh: bool) -> StepResult:
    if not per_repo:
        return _execute(job, instance, names, partition)
    start = time.monotonic()
    fingerprint = fresh.partition_fingerprint(instance, settings, partition, names)
    if skip_fresh and (run_id := fresh.up_to_date(instance, settings, partition, names, fingerprint)):
        return StepResult(_label(names), partition, True, time.monotonic() - start, run_id,
                          peak_rss_gb=peak_rss_gb(), skipped=True)
    return _execute(job, instance, names, partition, {fresh.FINGERPRINT_TAG: fingerprint} if fingerprint else {})


def _label(names: list[str]) -> str:
    return names[-1] if len(names) == 1 else "+".join(names)


def _execute(job, instance: dg.DagsterInstance, names: list[str], partition: str | None,
             tags: dict[str, str] | None = None) -> StepResult:
    start = time.monotonic()
    label = _label(names)
    try:
        result = job.execute_in_process(
            instance=instance, partition_key=partition, raise_on_error=False, run_config=_QUIET,
            asset_selection=[dg.AssetKey(n) for n in names],
            tags={"codellm/launched_by": "codellm run", **(tags or {})})
    except Exception as e:  # definition-level errors (bad selection, missing partition)
        return StepResult(label, partition, False, time.monotonic() - start, error=f"{type(e).__name__}: {e}",
                          peak_rss_gb=peak_rss_gb())
    error = None
    result_success, run_id = result.success, result.run_id
    if not result.success:
        failures = [ev for ev in result.all_events if ev.is_step_failure]
        if failures:
            err = failures[0].event_specific_data.error
            while err is not None and err.cause is not None:   # Dagster wraps the asset's own exception
                err = err.cause
            error = f"{err.cls_name}: {err.message.strip()}" if err else "step failed"
    checks = _failed_checks(result)
    del result
    release_memory()
    return StepResult(label, partition, result_success, time.monotonic() - start, run_id, error, checks,
                      peak_rss_gb())


def release_memory() -> None:
    """Give what a step freed back to the OS before the next one: collect reference cycles (a run's events
    and frames), then ask glibc to return its free heap pages. Without it every step ran in process
    leaves its DataFrames' pages behind: on the 300 MB benchmark corpus the ten per-repo runs took the
    process from 0.9 to 1.7 GB with nothing computed."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name and "musl" not in name else None
    except OSError:
        return None


_LIBC = _libc()


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (every step runs in this process: the step after
    which it rose is the one that needed it)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9     # KiB on Linux
