"""Human review round: a queue of completions in the project's database, scored 1–5 by reviewers.

Items are drawn from evaluation results or from production traffic; each needs `reviewers_per_item`
(3, as the seed's round 2) independent scores. The aggregate feeds the eval_scores metadata.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

REVIEWERS_PER_ITEM = 3
_meta = sa.MetaData()
items_t = sa.Table(
    "review_items", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),          # eval | production
    sa.Column("ref", sa.String(128), nullable=False),            # task id or completion id
    sa.Column("version", sa.String(128)),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("completion", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime, nullable=False),
    sa.UniqueConstraint("source", "ref", name="uq_review_item"),
)
scores_t = sa.Table(
    "review_scores", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Integer, sa.ForeignKey("review_items.id"), nullable=False),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("score", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("time", sa.DateTime, nullable=False),
    sa.UniqueConstraint("item_id", "reviewer", name="uq_review_score"),
)


class ReviewError(ValueError):
    """Bad review input; the message says what to fix."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReviewQueue:
    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        _meta.create_all(self.engine)

    def add_items(self, source: str, items: list[dict]) -> int:
        """Items: dicts with ref, prompt, completion (, version). Existing (source, ref) pairs are kept."""
        added = 0
        with self.engine.begin() as conn:
            existing = {r for (r,) in conn.execute(sa.select(items_t.c.ref).where(items_t.c.source == source))}
            for it in items:
                if it["ref"] in existing:
                    continue
                conn.execute(items_t.insert().values(source=source, ref=it["ref"], version=it.get("version"),
                                                     prompt=it["prompt"], completion=it["completion"], created=_now()))
                existing.add(it["ref"])
                added += 1
        return added

    def sample_from_eval(self, results_file: Path, problems: dict, n: int, seed: int = 0) -> int:
        """Draw n HumanEval completions from an eval results file (one JSON object a line)."""
        if not results_file.exists():
            raise ReviewError(f"{results_file} does not exist: materialize eval_scores first")
        rows = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
        rng = random.Random(seed)
        picked = rng.sample(rows, min(n, len(rows)))
        return self.add_items("eval", [{"ref": f"{r['task_id']}#{_digest(r['completion'])}",
                                        "prompt": problems[r["task_id"]]["prompt"], "completion": r["completion"]}
                                       for r in picked if r["task_id"] in problems])

    def sample_from_requests(self, store_engine: sa.Engine, n: int, seed: int = 0) -> int:
        """Draw n served completions (status ok) from the gateway's request log."""
        with store_engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, version, prompt, completion FROM requests WHERE status = 'ok' "
                                        "AND prompt IS NOT NULL AND completion IS NOT NULL")).mappings().all()
        picked = random.Random(seed).sample(list(rows), min(n, len(rows)))
        return self.add_items("production", [{"ref": r["id"], "version": r["version"], "prompt": r["prompt"],
                                              "completion": r["completion"]} for r in picked])

    def next_for(self, reviewer: str) -> dict | None:
        """The oldest item this reviewer has not scored that still needs reviewers."""
        with self.engine.connect() as conn:
            counts = sa.select(scores_t.c.item_id, sa.func.count().label("n")).group_by(scores_t.c.item_id).subquery()
            mine = sa.select(scores_t.c.item_id).where(scores_t.c.reviewer == reviewer)
            q = (sa.select(items_t).outerjoin(counts, counts.c.item_id == items_t.c.id)
                 .where(sa.func.coalesce(counts.c.n, 0) < REVIEWERS_PER_ITEM, items_t.c.id.not_in(mine))
                 .order_by(items_t.c.id).limit(1))
            row = conn.execute(q).mappings().first()
            return dict(row) if row else None

    def score(self, item_id: int, reviewer: str, score: int, comment: str | None = None) -> None:
        if not 1 <= score <= 5:
            raise ReviewError(f"score must be 1..5, got {score}")
        if not reviewer.strip():
            raise ReviewError("reviewer name is empty: pass --reviewer NAME")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(items_t.c.id).where(items_t.c.id == item_id)).first() is None:
                raise ReviewError(f"no review item {item_id}: see `codellm review show`")
            n = conn.execute(sa.select(sa.func.count()).where(scores_t.c.item_id == item_id)).scalar_one()
            done = conn.execute(sa.select(scores_t.c.id).where(scores_t.c.item_id == item_id,
                                                               scores_t.c.reviewer == reviewer)).first()
            if done:
                conn.execute(scores_t.update().where(scores_t.c.id == done[0])
                             .values(score=score, comment=comment, time=_now()))
            elif n >= REVIEWERS_PER_ITEM:
                raise ReviewError(f"item {item_id} already has {REVIEWERS_PER_ITEM} reviews")
            else:
                conn.execute(scores_t.insert().values(item_id=item_id, reviewer=reviewer, score=score,
                                                      comment=comment, time=_now()))

    def aggregate(self) -> dict:
        with self.engine.connect() as conn:
            items = conn.execute(sa.select(sa.func.count()).select_from(items_t)).scalar_one()
            rows = conn.execute(sa.select(scores_t.c.item_id, scores_t.c.score)).all()
        by_item: dict[int, list[int]] = {}
        for item_id, score in rows:
            by_item.setdefault(item_id, []).append(score)
        complete = [s for s in by_item.values() if len(s) >= REVIEWERS_PER_ITEM]
        return {
            "items": items, "scores": len(rows), "items_fully_reviewed": len(complete),
            "mean_score": round(statistics.fmean(s for v in by_item.values() for s in v), 3) if rows else None,
            "mean_spread": round(statistics.fmean(max(v) - min(v) for v in complete), 3) if complete else None,
        }
