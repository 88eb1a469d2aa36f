"""`codellm package --version N --format merged|gguf|bnb4`: a registered version as an artifact other servers
load, written under packaging.out_dir, checksummed and recorded on the MLflow version (as the
`packaged_model` asset does). `--verify` instead fetches the recorded artifact and checks it.

Plain lines on stdout (`path: ...`, `sha256: ...`) for scripts; errors on stderr with exit code 1 (or 2 for
bad settings).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err = Console(stderr=True)


def package(
    version: str = typer.Option(..., "--version", "-v", help="model version number, or an alias (champion)"),
    fmt: str = typer.Option("merged", "--format", "-f", help="merged | gguf | bnb4 (4-bit NF4, CUDA GPU only)"),
    gguf_type: str | None = typer.Option(None, "--gguf-type", help="f32 | f16 | q8_0 (default packaging.gguf_type)"),
    out: Path | None = typer.Option(None, "--out", help="output root (default packaging.out_dir)"),
    upload: bool | None = typer.Option(None, "--upload/--no-upload",
                                       help="upload into the version's MLflow run (default packaging.upload)"),
    verify: bool = typer.Option(False, "--verify", help="fetch the version's recorded artifact and verify its "
                                "checksum instead of packaging"),
    model_name: str | None = typer.Option(None, "--model", help="registered model name (default registry.model_name)"),
    config: Path | None = typer.Option(None, "--config", "-c", help="settings file (default: $CODELLM_CONFIG or "
                                       "codellm.yaml)"),
) -> None:
    """Package a registered model version (merged safetensors, GGUF or 4-bit) and log it to MLflow."""
    from codellm_assets.core.training.packaging import FORMATS, PackagingError, fetch_package, package_version
    from codellm_assets.core.training.packaging_gguf import GGUF_TYPES
    from codellm_assets.core.training.registry import RegistryError
    from codellm_assets.settings import SettingsError, load_settings

    if fmt not in FORMATS:
        err.print(f"[red]error:[/] --format {fmt!r}: choose one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if gguf_type is not None and gguf_type not in GGUF_TYPES:
        err.print(f"[red]error:[/] --gguf-type {gguf_type!r}: choose one of {', '.join(GGUF_TYPES)}")
        raise typer.Exit(2)
    try:
        s = load_settings(config)
    except SettingsError as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    name = model_name or s.registry.model_name
    out_root = out.resolve() if out else s.packaged_dir
    try:
        if verify:
            path, digest = fetch_package(s.mlflow_tracking_uri, name, version, fmt, out_root / ".verify")
            typer.echo(f"verified {name} {version} {fmt}\npath: {path}\nsha256: {digest}")
            return
        err.print(f"packaging {name} version {version} as {fmt} under {out_root} ...")
        artifact, tags = package_version(tracking_uri=s.mlflow_tracking_uri, model_name=name, version=version,
                                         fmt=fmt, out_root=out_root, gguf_type=gguf_type or s.packaging.gguf_type,
                                         upload=s.packaging.upload if upload is None else upload)
    except (PackagingError, RegistryError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(1) from None
    lines = [f"packaged {name} {version} as {fmt}", f"path: {artifact.path}", f"sha256: {artifact.sha256}",
             f"bytes: {artifact.bytes}"]
    lines += [f"{k}: {v}" for k, v in sorted(tags.items()) if k.endswith(".artifact")]
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("package")(package)
