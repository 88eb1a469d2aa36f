"""`codellm scrub SRC DST`: write copies of a file or directory tree with secrets and PII replaced.

The same scrubber as the `scrubbed_corpus` asset. Progress goes to stderr; the summary table to stdout.
DST follows `cp`: for a file SRC, DST is the output file unless it is an existing directory or ends with
a slash (then DST/<name of SRC>); for a directory SRC, DST is the output directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

err = Console(stderr=True, soft_wrap=True)  # never wrap a path in an error message
out = Console()


def _summary(report, src: Path, dst: Path) -> Table:
    table = Table(title=f"codellm scrub {src} -> {dst}")
    table.add_column("redaction type")
    table.add_column("count", justify="right")
    for kind, n in sorted(report.counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(kind, str(n))
    table.add_section()
    table.add_row("total redactions", str(sum(report.counts.values())))
    table.add_row("files written", str(report.files_written))
    for reason, n in sorted(report.files_skipped.items()):
        table.add_row(f"files skipped: {reason}", str(n))
    mb = report.bytes_read / 1e6
    table.add_row("throughput", f"{mb:.1f} MB in {report.seconds:.1f} s ({mb / max(report.seconds, 1e-9):.1f} MB/s)")
    return table


def scrub_command(
    src: Annotated[Path, typer.Argument(help="a file or a directory tree to scrub")],
    # a str, not a Path: Path("out/") drops the trailing slash that makes DST a directory
    dst: Annotated[str, typer.Argument(help="like cp: for a file SRC the output file, or DIR/ (or an existing "
                                            "directory) for DIR/<name>; for a directory SRC the output directory "
                                            "(created), relative paths kept")],
    config: Annotated[Path | None, typer.Option("--config", help="settings file (default: codellm.yaml)")] = None,
) -> None:
    """Replace secrets and PII with typed placeholders (<SECRET:aws_access_key>, <EMAIL>, <IP>, <PHONE>)."""
    from codellm_assets.core.data.scrub.scrubber import ScrubInputError, scrub_tree
    from codellm_assets.settings import SettingsError, load_settings

    try:
        settings = load_settings(config)
    except SettingsError as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("scrubbing", total=None)

        def progress(done: int, total: int, rel: str) -> None:
            bar.update(task, completed=done, total=total, description=f"scrubbing {rel[-40:]}")

        try:
            if file_to_file(src, dst):
                report, target = scrub_file_to(src, Path(dst), settings.scrub, progress)
            else:
                report, target = scrub_tree(src, Path(dst), settings.scrub, progress=progress), Path(dst)
        except ScrubInputError as e:
            err.print(f"[red]error:[/] {e}")
            raise typer.Exit(2) from None
    if report.files_written == 0:
        err.print(f"[yellow]warning:[/] no UTF-8 text file under {src}; nothing was written to {target}")
    out.print(_summary(report, src, target))


def file_to_file(src: Path, dst: str) -> bool:
    """True when DST names the output FILE: SRC is a file and DST neither ends with a slash nor is a directory."""
    return src.is_file() and not dst.endswith(("/", os.sep)) and not Path(dst).is_dir()


def scrub_file_to(src: Path, dst: Path, settings, progress=None):
    """Scrub the file ``src`` into the file ``dst`` (replaced atomically; parents created). Returns
    (report, dst). The scrubbing itself is ``scrub_tree``'s, into a temporary directory beside ``dst``."""
    from codellm_assets.core.data.scrub.scrubber import ScrubInputError, scrub_tree

    if dst.exists() and dst.resolve() == src.resolve():
        raise ScrubInputError(f"destination {dst} is the source file itself; choose another output path")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".codellm-scrub-", dir=dst.parent))
    try:
        report = scrub_tree(src, tmp, settings, progress=progress)
        written = tmp / src.name
        if written.exists():
            os.replace(written, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report, dst


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `codellm` app."""
    app.command("scrub")(scrub_command)
