"""`codellm review …`: the human review round (sample completions, score them, see the aggregate)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from codellm_assets.core.evaluation.review import ReviewError, ReviewQueue
from codellm_assets.settings import load_settings

console = Console(stderr=True)
review_app = typer.Typer(help="Human review of completions (3 reviewers per sample, scores 1-5).",
                         no_args_is_help=True)


def _queue(config: Path | None) -> tuple[ReviewQueue, object]:
    s = load_settings(config)
    return ReviewQueue(s.store_url), s


@review_app.command("sample")
def sample(n: int = typer.Option(50, "--n", min=1), source: str = typer.Option("eval", help="eval | production"),
           seed: int = 0, config: Path | None = typer.Option(None, "--config")) -> None:
    """Draw N completions into the review queue."""
    queue, s = _queue(config)
    try:
        if source == "eval":
            from codellm_assets.core.evaluation.humaneval import load_problems

            added = queue.sample_from_eval(s.data_dir / "eval_scores" / "humaneval_results.jsonl",
                                           load_problems(), n, seed)
        elif source == "production":
            import sqlalchemy as sa

            added = queue.sample_from_requests(sa.create_engine(s.store_url), n, seed)
        else:
            raise ReviewError(f"--source must be eval or production, got {source!r}")
    except ReviewError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    console.print(f"added {added} item(s) to the review queue")


@review_app.command("next")
def next_item(reviewer: str = typer.Option(..., "--reviewer"), config: Path | None = typer.Option(None, "--config")):
    """Show the next item for REVIEWER (JSON on stdout)."""
    queue, _ = _queue(config)
    item = queue.next_for(reviewer)
    typer.echo(json.dumps(item, default=str, indent=2) if item else "{}")


@review_app.command("score")
def score(item: int = typer.Option(..., "--item"), reviewer: str = typer.Option(..., "--reviewer"),
          value: int = typer.Option(..., "--score", help="1 (unusable) .. 5 (ship it)"),
          comment: str | None = typer.Option(None, "--comment"),
          config: Path | None = typer.Option(None, "--config")) -> None:
    """Record REVIEWER's 1-5 score (and comment) for ITEM."""
    queue, _ = _queue(config)
    try:
        queue.score(item, reviewer, value, comment)
    except ReviewError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    console.print(f"scored item {item}: {value}")


@review_app.command("show")
def show(config: Path | None = typer.Option(None, "--config")) -> None:
    """The aggregate (JSON on stdout): items, scores, fully reviewed items, mean score, spread."""
    queue, _ = _queue(config)
    typer.echo(json.dumps(queue.aggregate(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
