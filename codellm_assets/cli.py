"""The `codellm` command line. Each command group lives in `codellm_assets/commands/` and registers itself."""

from __future__ import annotations

import importlib
import os

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

app = typer.Typer(help="codellm: train, evaluate, ship and improve a private code LLM.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)

# Each module exposes `register(app: typer.Typer) -> None`.
COMMAND_MODULES = ["scrub", "dedup", "pipeline", "evaluation", "review", "serving", "package", "vllm"]
for _name in COMMAND_MODULES:
    importlib.import_module(f"codellm_assets.commands.{_name}").register(app)


if __name__ == "__main__":
    app()
