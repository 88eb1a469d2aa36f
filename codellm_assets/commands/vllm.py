"""`codellm vllm start|stop|command`: a real vLLM server (its own venv, .venv-vllm) on loopback, serving the
base model the routing table names plus every adapter it routes to, detached with a pid file under home.
`make vllm` builds the venv once and calls `codellm vllm start`; `make stop` stops it. Then

    CODELLM__SERVING__BACKEND=vllm CODELLM__SERVING__VLLM_URL=<url> codellm serve

puts the gateway in front of it. On a laptop or CI this is vLLM's CPU build (float32, small KV cache); on a
GPU machine docs/vllm.md has the production command per preset."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import typer

from codellm_assets.commands.serving import ConfigOpt, _settings, _store, console
from codellm_assets.settings import Settings

vllm_app = typer.Typer(help="A local vLLM server (CPU build) for the vllm backend.", no_args_is_help=True)
DEFAULT_PORT = 8001


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adapter_rank(path: str) -> int:
    try:
        return int(json.loads((Path(path) / "adapter_config.json").read_text()).get("r") or 8)
    except (OSError, ValueError):
        return 8


def _model_max_len(base: Path) -> int | None:
    try:
        cfg = json.loads((base / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("max_position_embeddings")


def plan(settings: Settings) -> tuple[Path, dict[str, str], list[str]]:
    """(base model dir, {lora name: adapter dir}, notes): the production route's base and every routed
    adapter on that base; with an empty routing table, the configured base model."""
    from codellm_assets.core.serving.backends.vllm_backend import lora_name
    from codellm_assets.core.training.base_model import ensure_base_model

    with _store(settings) as store:
        routes = store.routes()
    notes: list[str] = []
    prod = next((r for r in routes if r.slot == "production"), None)
    base = Path(prod.base_model_path) if prod and Path(prod.base_model_path).is_dir() else ensure_base_model(settings)
    loras: dict[str, str] = {}
    for r in routes:
        if not r.adapter_path:
            continue
        if Path(r.base_model_path).resolve() != base.resolve():
            notes.append(f"{r.slot} {r.version} is on another base ({r.base_model_path}): not served here")
        elif not (Path(r.adapter_path) / "adapter_config.json").is_file():
            notes.append(f"{r.slot} {r.version}: {r.adapter_path} is not a peft adapter; skipped")
        else:
            loras[lora_name(r.version)] = r.adapter_path
    return base, loras, notes


def build_command(settings: Settings, port: int, max_model_len: int | None) -> tuple[Any, list[str]]:
    from codellm_assets.core.serving.backends.vllm_server import (
        INSTALL_HINT,
        VllmCommand,
        lora_rank_for,
        vllm_python,
    )
    from codellm_assets.core.training.base_model import get_preset

    python = vllm_python(settings.serving.vllm_venv)
    if python is None:
        console.print(f"[red]no vLLM venv at {settings.serving.vllm_venv}: {INSTALL_HINT}[/red]")
        raise typer.Exit(2)
    base, loras, notes = plan(settings)
    limit = max_model_len or get_preset(settings.model.preset).vllm_max_model_len
    limit = min(limit, _model_max_len(base) or limit)
    rank = lora_rank_for(max([_adapter_rank(p) for p in loras.values()] or [8]))
    return VllmCommand(python, str(base), port, loras=loras, max_model_len=limit, max_lora_rank=rank), notes


def _port(settings: Settings, port: int | None) -> int:
    if port:
        return port
    url = settings.serving.vllm_url
    return (urlparse(url).port if url else None) or DEFAULT_PORT


@vllm_app.command("start")
def start(port: int | None = typer.Option(None, help="default: serving.vllm_url's port, else 8001; a busy "
                                          "port is replaced by a free one (the URL printed last is the one)"),
          max_model_len: int | None = typer.Option(None, help="default: the preset's vllm_max_model_len"),
          timeout: float = typer.Option(900, help="seconds to wait for /v1/models"),
          config: Path | None = ConfigOpt) -> None:
    """Start vLLM detached on 127.0.0.1 (pid file under home); print the command and its URL."""
    from codellm_assets.commands.daemon import _alive, _read_pid
    from codellm_assets.core.serving.backends.vllm_server import VllmProcess, is_up

    settings = _settings(config)
    pid_file, log_file = settings.home_dir / "vllm.pid", settings.home_dir / "vllm.log"
    url_file = settings.home_dir / "vllm.url"
    pid = _read_pid(pid_file)
    if pid and _alive(pid) and url_file.exists() and is_up(url_file.read_text().strip()):
        console.print(f"vLLM already running (pid {pid}); stop it with `codellm vllm stop`")
        typer.echo(url_file.read_text().strip())
        return
    wanted = _port(settings, port)
    chosen = wanted if _port_free(wanted) else _free_port()
    if chosen != wanted:
        console.print(f"port {wanted} is busy; using {chosen}")
    cmd, notes = build_command(settings, chosen, max_model_len)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    typer.echo(f"starting vLLM (log {log_file}):\n  {cmd.shell()}", err=True)      # unwrapped: copy-pastable
    proc = VllmProcess(cmd, log_file, kv_cache_gib=int(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))).start()
    pid_file.write_text(str(proc.pid))
    try:
        seconds = proc.wait_ready(timeout)
    except RuntimeError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    url_file.write_text(cmd.url)
    typer.echo(f"vLLM ready in {seconds:.0f} s (pid {proc.pid}); models: base"
               + "".join(f", {n}" for n in cmd.loras) + "\nthe gateway in front of it:\n"
               f"  CODELLM__SERVING__BACKEND=vllm CODELLM__SERVING__VLLM_URL={cmd.url} codellm serve", err=True)
    typer.echo(cmd.url)


@vllm_app.command("stop")
def stop(config: Path | None = ConfigOpt) -> None:
    """Stop the vLLM server started by `codellm vllm start` (by its pid file, never by name)."""
    from codellm_assets.commands.daemon import _alive, _read_pid
    from codellm_assets.core.serving.backends.vllm_server import stop_group

    settings = _settings(config)
    pid_file = settings.home_dir / "vllm.pid"
    pid = _read_pid(pid_file)
    if not pid or not _alive(pid):
        console.print("vLLM: nothing running")
    else:
        stop_group(pid)
        console.print(f"vLLM stopped (pid {pid})")
    pid_file.unlink(missing_ok=True)
    (settings.home_dir / "vllm.url").unlink(missing_ok=True)


@vllm_app.command("command")
def command(port: int | None = typer.Option(None), max_model_len: int | None = typer.Option(None),
            config: Path | None = ConfigOpt) -> None:
    """Print the vLLM command `start` would run (for running it by hand or in a container)."""
    settings = _settings(config)
    cmd, notes = build_command(settings, _port(settings, port), max_model_len)
    for note in notes:
        console.print(f"[yellow]{note}[/yellow]")
    typer.echo(cmd.shell())


def register(app: typer.Typer) -> None:
    app.add_typer(vllm_app, name="vllm")
