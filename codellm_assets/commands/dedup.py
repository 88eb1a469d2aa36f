"""`codellm dedup SRC_DIR --keep-list FILE`: exact + near dedup (and decontamination) of a directory tree.

The same code as the `deduped_corpus` asset. Progress goes to stderr; the summary to stdout.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

err = Console(stderr=True, soft_wrap=True)  # never wrap a path in an error message
out = Console()
BINARY_SNIFF_BYTES = 8192
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__"}


def list_files(root: Path) -> list[Path]:
    """Every file under ``root`` (sorted), skipping version-control and cache directories."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        found.extend(Path(dirpath) / name for name in filenames)
    return sorted(found)


def read_text_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None) for a UTF-8 text file, else (None, reason it was skipped)."""
    if path.is_symlink():
        return None, "symlink"
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"unreadable ({e.strerror or type(e).__name__})"
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not UTF-8"


def _eval_items(settings, eval_files: list[Path]) -> list[tuple[str, str]]:
    from codellm_assets.core.data.decontam import load_eval_items

    paths = list(eval_files)
    company = settings.eval.company_tasks_file
    if company and settings.resolve(company).is_file():
        paths.append(settings.resolve(company))
    items: list[tuple[str, str]] = []
    for p in paths:
        items.extend(load_eval_items(p))
    return items


def _summary(n_files: int, skipped: Counter, result) -> Table:
    d = result.dedup
    table = Table(title="codellm dedup", show_header=False)
    table.add_row("text files", str(n_files))
    for reason, n in sorted(skipped.items()):
        table.add_row(f"skipped: {reason}", str(n))
    table.add_row("decontam hits", f"{len(result.decontam_hits)} (against {result.eval_items} eval items)")
    table.add_row("exact duplicates", str(len(d.exact_duplicates)))
    table.add_row("near duplicates", str(len(d.near_duplicates)))
    table.add_row("largest clusters", ", ".join(map(str, d.cluster_sizes[:5])) or "-")
    table.add_row("kept", str(len(result.kept_ids)))
    table.add_row("dedup ratio", f"{d.dedup_ratio:.3f}")
    table.add_row("seconds", f"decontam {result.decontam_seconds:.2f}, dedup {d.timings.get('total', 0):.2f}")
    return table


def dedup_command(
    src_dir: Annotated[Path, typer.Argument(help="directory of source files (e.g. one checkout per repo)")],
    keep_list: Annotated[Path, typer.Option("--keep-list", "-o", help="write the kept relative paths here")],
    config: Annotated[
        Path | None, typer.Option("--config", help="settings file (default: codellm.yaml)")
    ] = None,
    eval_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--eval-file",
            help="extra JSONL of eval tasks ({task_id, prompt}) to decontaminate against; repeatable",
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="also write removals and hits as JSON")
    ] = None,
) -> None:
    """Exact + near-duplicate removal (MinHash LSH) and decontamination of the text files under SRC_DIR."""
    from codellm_assets.core.data.dedup import Doc, dedup_and_decontaminate
    from codellm_assets.settings import SettingsError, load_settings

    if not src_dir.is_dir():
        err.print(f"[red]error:[/] {src_dir} is not a directory; pass the directory holding the source files")
        raise typer.Exit(2)
    try:
        settings = load_settings(config)
        items = _eval_items(settings, eval_file or []) if settings.dedup.decontaminate else []
    except (SettingsError, ValueError) as e:
        err.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from None

    paths = list_files(src_dir)
    docs: list[Doc] = []
    skipped: Counter[str] = Counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=len(paths))
        for p in paths:
            text, reason = read_text_file(p)
            if reason:
                skipped[reason] += 1
            else:
                rel = p.relative_to(src_dir).as_posix()
                docs.append(Doc(id=rel, text=text, repo=rel.split("/", 1)[0], path=rel))
            bar.advance(task)
        bar.update(task, total=None, description="dedup")
        result = dedup_and_decontaminate(
            docs, settings.dedup, items, progress=lambda phase: bar.update(task, description=phase)
        )

    if not docs:
        err.print(f"[yellow]warning:[/] no UTF-8 text file under {src_dir}; the keep list is empty")
    keep_list.parent.mkdir(parents=True, exist_ok=True)
    keep_list.write_text("".join(f"{rel}\n" for rel in sorted(result.kept_ids)), encoding="utf-8")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            json.dumps(
                {
                    "kept": len(result.kept_ids),
                    "skipped": dict(skipped),
                    "decontam_hits": result.decontam_hits,
                    "exact_duplicates": result.dedup.exact_duplicates,
                    "near_duplicates": result.dedup.near_duplicates,
                    "near_jaccard": result.dedup.near_jaccard,
                    "cluster_sizes": result.dedup.cluster_sizes,
                    "timings": result.dedup.timings,
                },
                indent=1,
                sort_keys=True,
            )
        )
    out.print(_summary(len(docs), skipped, result))
    out.print(f"kept list: {keep_list}")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `codellm` app."""
    app.command("dedup")(dedup_command)
