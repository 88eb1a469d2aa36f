"""`codellm serve` (the OpenAI-compatible gateway), `codellm keys …` (team API keys) and
`codellm routes …` (the production/canary/shadow routing table the gateway re-reads every second)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from codellm_assets.settings import Settings, SettingsError, load_settings

console = Console(stderr=True)
keys_app = typer.Typer(help="API keys per team (stored hashed; a key is shown once).", no_args_is_help=True)
routes_app = typer.Typer(help="The routing table: production / canary / shadow versions and weights.",
                         no_args_is_help=True)
ConfigOpt = typer.Option(None, "--config", "-c", help="settings file (default: $CODELLM_CONFIG or codellm.yaml)")


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except SettingsError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None


def _store(settings: Settings) -> Any:
    from codellm_assets.core.serving.store import Store

    try:
        return Store(settings.store_url, scrub=settings.scrub)
    except Exception as e:  # noqa: BLE001 - a bad URL or unwritable path: say which
        console.print(f"[red]cannot open the store {settings.store_url}: {e}[/red]\n"
                      "Set serving.store_url in the settings file to a writable SQLite path or a Postgres URL.")
        raise typer.Exit(2) from None


def _fim_from_preset(preset: str) -> Any:
    """The preset's FIM tokens from core/training/presets.yaml (used when vLLM's tokenizer is not local)."""
    import yaml

    from codellm_assets.core.serving.backends.base import FimTokens
    from codellm_assets.core.training.base_model import PRESETS_FILE as presets_file

    if not presets_file.exists():
        return None
    fim = (yaml.safe_load(presets_file.read_text()) or {}).get(preset, {}).get("fim")
    return FimTokens.from_preset(fim) if fim else None


def _default_routes(settings: Settings, backend: str) -> Any:
    """What to serve while the store has no routing table: the configured base model as version 'base'."""
    from codellm_assets.core.serving.routes import Route

    if backend == "vllm":
        base = settings.model.path or settings.model.preset
        return [Route(slot="production", version="base", base_model_path=str(base), weight=100)]

    def resolve() -> list[Route]:
        try:
            from codellm_assets.core.training.base_model import ensure_base_model
        except ImportError as e:
            raise RuntimeError("codellm_assets.core.training.base_model.ensure_base_model is unavailable "
                               f"({e}); register a "
                               "model with `codellm routes set`") from e
        return [Route(slot="production", version="base", base_model_path=str(ensure_base_model(settings)),
                      weight=100)]

    return resolve


def serve(host: str | None = typer.Option(None, help="bind address (default serving.host, 127.0.0.1)"),
          port: int | None = typer.Option(None, help="port (default serving.port)"),
          backend: str | None = typer.Option(None, help="transformers | vllm (default serving.backend)"),
          vllm_url: str | None = typer.Option(None, help="vLLM server URL for the vllm backend"),
          access_log: bool = typer.Option(False, help="log every HTTP request"),
          detach: bool = typer.Option(False, "--detach", help="run in the background (pid file under home); "
                                      "returns once /readyz answers"),
          stop: bool = typer.Option(False, "--stop", help="stop a gateway started with --detach"),
          config: Path | None = ConfigOpt) -> None:
    """Serve the model: an OpenAI-compatible API with feedback, metrics, keys and canary routing."""
    import uvicorn

    from codellm_assets.core.serving.app import create_app
    from codellm_assets.core.serving.gateway import Gateway

    settings = _settings(config)
    s = settings.serving.model_copy(update={k: v for k, v in {
        "host": host, "port": port, "backend": backend, "vllm_url": vllm_url}.items() if v is not None})
    if stop:
        from codellm_assets.commands.daemon import stop_detached

        raise typer.Exit(0 if stop_detached(settings.home_dir / "gateway.pid", console) else 1)
    if detach:
        from codellm_assets.commands.daemon import start_detached

        args = [a for a in ("--host", s.host, "--port", str(s.port), "--backend", s.backend)]
        if config:
            args += ["--config", str(config)]
        if s.vllm_url:
            args += ["--vllm-url", s.vllm_url]
        ok = start_detached(["serve", *args], pid_file=settings.home_dir / "gateway.pid",
                            log_file=settings.home_dir / "gateway.log",
                            ready_url=f"http://{s.host}:{s.port}/readyz", console=console)
        raise typer.Exit(0 if ok else 1)
    if s.backend not in ("transformers", "vllm"):
        console.print(f"[red]--backend {s.backend}: use transformers or vllm[/red]")
        raise typer.Exit(2)
    if s.backend == "vllm":
        if not s.vllm_url:
            console.print("[red]the vllm backend needs serving.vllm_url (or --vllm-url), e.g. "
                          "http://127.0.0.1:8100; docs/vllm.md shows how to start vLLM[/red]")
            raise typer.Exit(2)
        from codellm_assets.core.serving.backends.vllm_backend import VllmBackend

        model_backend: Any = VllmBackend(s.vllm_url, fim=_fim_from_preset(settings.model.preset))
    else:
        from codellm_assets.core.serving.backends.transformers_backend import TransformersBackend

        model_backend = TransformersBackend(micro_batch_ms=s.micro_batch_ms, max_batch_size=s.max_batch_size,
                                            threads=s.threads or None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from codellm_assets.core.serving.repo_context import RepoContext

    gateway = Gateway(s, _store(settings), model_backend, default_routes=_default_routes(settings, s.backend),
                      public_model=settings.registry.model_name, owns_store=True,
                      repo_context=RepoContext.from_settings(settings) if s.repo_context_tokens else None)
    console.print(f"codellm gateway on http://{s.host}:{s.port} (backend {s.backend}, store {settings.store_url})")
    uvicorn.run(create_app(gateway), host=s.host, port=s.port, log_level="info", access_log=access_log,
                timeout_graceful_shutdown=30)


@keys_app.command("create")
def keys_create(team: str = typer.Option(..., "--team", help="the team the key belongs to"),
                admin: bool = typer.Option(False, help="may change the routing table over HTTP"),
                claims_users: bool = typer.Option(False, help="may name the developer per request ('user'): "
                                                  "for a team proxy; otherwise the key is the developer"),
                config: Path | None = ConfigOpt) -> None:
    """Create a key; the key itself is printed as the LAST line (only its hash is stored)."""
    with _store(_settings(config)) as store:
        try:
            key = store.create_api_key(team, admin=admin, claims_users=claims_users)
        except ValueError as e:
            console.print(f"[red]--team: {e}[/red]")
            raise typer.Exit(2) from None
    console.print(f"created {'an admin' if admin else 'a'} key for team '{team}' (shown once; store it now):")
    typer.echo(key)


@keys_app.command("list")
def keys_list(config: Path | None = ConfigOpt) -> None:
    """List keys by prefix (never the key)."""
    with _store(_settings(config)) as store:
        rows = store.list_api_keys()
    table = Table("prefix", "team", "admin", "created", "revoked")
    for r in rows:
        table.add_row(r["prefix"], r["team"], "yes" if r["admin"] else "", str(r["created"])[:19],
                      str(r["revoked"])[:19] if r["revoked"] else "")
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(prefix: str = typer.Argument(..., help="the key's prefix as `keys list` shows it"),
                config: Path | None = ConfigOpt) -> None:
    """Revoke a key (the gateway refuses it within a few seconds)."""
    with _store(_settings(config)) as store:
        n = store.revoke_api_key(prefix)
    if not n:
        console.print(f"[red]no active key with prefix '{prefix}'; see `codellm keys list`[/red]")
        raise typer.Exit(1)
    console.print(f"revoked {n} key(s) with prefix {prefix}")


@routes_app.command("show")
def routes_show(config: Path | None = ConfigOpt) -> None:
    """Print the routing table as JSON (empty: the gateway serves the configured base model)."""
    with _store(_settings(config)) as store:
        routes = store.routes()
    typer.echo(json.dumps([r.__dict__ for r in routes], indent=2))


@routes_app.command("set")
def routes_set(routes_json: str = typer.Argument(..., help="a JSON list of routes, or a path to a JSON file: "
                                                 "[{slot, version, base_model_path, adapter_path, weight, "
                                                 "endpoint}]"),
               ungated: str | None = typer.Option(None, "--ungated", metavar="REASON",
                                                  help="break glass: route versions without a passed eval "
                                                       "gate, for REASON (printed; the canary guard still "
                                                       "rolls back an ungated canary instead of promoting it)"),
               config: Path | None = ConfigOpt) -> None:
    """Replace the routing table in one transaction (running gateways pick it up within a second). Every
    route with an adapter must be a registered version whose passed eval gate (recorded in this Dagster
    instance) evaluated exactly that adapter, unless --ungated says why not."""
    from codellm_assets.core.serving.routes import Route

    text = Path(routes_json).read_text() if Path(routes_json).is_file() else routes_json
    try:
        routes = [Route(**r) for r in json.loads(text)]
    except (ValueError, TypeError) as e:
        console.print(f"[red]routes: not a JSON list of routes ({e})[/red]")
        raise typer.Exit(2) from None
    settings = _settings(config)
    refusals = _gate_refusals(settings, routes)
    if refusals and not (ungated and ungated.strip()):
        for reason in refusals:
            console.print(f"[red]routes: refused: {reason}[/red]")
        console.print("Deploy through the graph (`codellm run`: eval_gate -> registered_model -> "
                      "deployed_endpoint), or pass --ungated REASON to break glass.")
        raise typer.Exit(2)
    for reason in refusals:
        console.print(f"[yellow]routes: UNGATED ({ungated.strip()}): {reason}[/yellow]")
    with _store(settings) as store:
        try:
            store.set_routes(routes)
        except ValueError as e:
            console.print(f"[red]routes: {e}[/red]")
            raise typer.Exit(2) from None
    console.print(f"routing table set: {', '.join(f'{r.slot}={r.version}@{r.weight}' for r in routes) or 'empty'}")


def _gate_refusals(settings: Settings, routes: list) -> list[str]:
    """Why each route may not serve (empty: all may); checked against the Dagster instance of ``settings``."""
    if not any(r.needs_gate for r in routes):
        return []       # base-only tables need no instance (and no Dagster import)
    import os

    import dagster as dg

    from codellm_assets.defs.deployment import route_gate_refusal

    home = Path(os.environ.get("DAGSTER_HOME") or settings.dagster_home)
    if not home.is_dir():
        return [f"{r.version}: no Dagster instance at {home}, so no eval gate was ever recorded"
                for r in routes if r.needs_gate]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [reason for r in routes if (reason := route_gate_refusal(instance, settings, r))]


def register(app: typer.Typer) -> None:
    """Adds `serve`, `keys` and `routes` to the `codellm` app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(routes_app, name="routes")
