"""`codellm run` (materialize the graph in process, with progress) and `codellm summary`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from codellm_assets.settings import SettingsError, load_settings

console = Console(stderr=True)


def run(
    select: str | None = typer.Option(None, "--select", "-s",
                                         help="Dagster asset selection, e.g. 'deduped_corpus*' (it and everything "
                                              "downstream) or 'lora_adapter'"),
    config: Path | None = typer.Option(None, "--config", help="settings file (default: codellm.yaml)"),
    force: bool = typer.Option(False, "--force", help="run every repo partition again, even those whose heads, "
                                                      "settings and code match their last good run"),
) -> None:
    """Materialize the asset graph in process on this machine (default: everything), with progress.
    A repo partition that is up to date (same heads, per-repo settings and code as its last good run) is
    skipped unless --force."""
    try:
        settings = load_settings(config)
    except SettingsError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    from codellm_assets.definitions import defs
    from codellm_assets.runner import PER_REPO_ASSETS, planned_steps, run_graph

    try:
        steps = planned_steps(defs, select)
    except Exception as e:
        console.print(f"[red]bad --select {select!r}: {e}[/red]")
        raise typer.Exit(2) from None
    if not steps:
        console.print(f"[yellow]--select {select!r} matches no asset[/yellow]")
        raise typer.Exit(2) from None
    total = len(settings.repos) * any(s in PER_REPO_ASSETS for s in steps) + \
        len([s for s in steps if s not in PER_REPO_ASSETS])
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=total)

        def on_step(name: str, partition: str | None) -> None:
            progress.update(task, description=escape(f"{name}" + (f" [{partition}]" if partition else "")))

        def on_done(r) -> None:
            mark = "[green]✓[/green]" if r.success else "[red]✗[/red]"
            where = escape(f" [{r.partition}]") if r.partition else ""
            if r.skipped:
                progress.console.print(f"[dim]- {r.name}{where} up to date (run {r.run_id[:8]}), skipped[/dim]")
                progress.advance(task)
                return
            progress.console.print(f"{mark} {r.name}{where} {r.duration_s:.1f}s  peak RSS {r.peak_rss_gb:.2f} GB" +
                                   (f"  [red]{escape(r.error)}[/red]" if r.error else "") +
                                   (f"  [yellow]checks failed: {escape(', '.join(r.checks_failed))}[/yellow]"
                                    if r.checks_failed else ""))
            progress.advance(task)

        results = run_graph(settings, selection=select, config_path=str(config) if config else None,
                            on_step=on_step, on_done=on_done, skip_fresh=not force)
    failed = [r for r in results if not r.success]
    if failed:
        first = failed[0]
        console.print(f"[red]{len(failed)} step(s) failed.[/red] Fix the cause above, then re-run from there: "
                      f"codellm run --select '{first.name.split('+')[0]}*'")
        raise typer.Exit(1)
    skipped = sum(r.skipped for r in results)
    console.print(f"[green]materialized {len(results) - skipped} step(s)[/green]" +
                  (f", {skipped} repo partition(s) up to date (--force runs them)" if skipped else ""))


def summary(config: Path | None = typer.Option(None, "--config")) -> None:
    """Where to look: the Dagster UI, the gateway, MLflow, and the latest figures."""
    settings = load_settings(config)
    import dagster as dg

    from codellm_assets.runner import prepare_instance

    instance = prepare_instance(settings)
    table = Table(title="codellm", show_lines=False)
    table.add_column("asset")
    table.add_column("latest materialization")
    for name in ("repo_snapshots", "deduped_corpus", "training_dataset", "lora_adapter", "eval_scores",
                 "registered_model", "deployed_endpoint", "packaged_model"):
        ev = instance.get_latest_materialization_event(dg.AssetKey(name))
        if ev is None and not instance.get_materialized_partitions(dg.AssetKey(name)):
            table.add_row(name, "[yellow]never[/yellow]")
            continue
        meta = ev.asset_materialization.metadata if ev and ev.asset_materialization else {}
        shown = {k: v.value for k, v in meta.items() if k in (
            "files_kept", "dedup_ratio", "train_tokens", "val_loss_adapter", "val_loss_base", "pass@1",
            "version", "canary_weight", "files", "formats")}
        table.add_row(name, json.dumps(shown, default=str) if shown else "materialized")
    console.print(table)
    s = settings.serving
    console.print(f"Settings:    {settings.config_file}   (home {settings.home_dir})")
    console.print(f"Dagster UI:  make dev  ->  http://127.0.0.1:3000   (DAGSTER_HOME={instance.root_directory})")
    console.print(f"Gateway:     http://{s.host}:{s.port}/v1   (codellm keys create --team NAME for a key)")
    console.print(f"MLflow:      make mlflow  ->  {settings.registry.ui_url}   (store {settings.mlflow_tracking_uri})")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("summary")(summary)
