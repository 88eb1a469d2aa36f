"""Review queue on a real SQLite database, and the CLI end to end."""

import json

import pytest
from typer.testing import CliRunner

from codellm_assets.core.evaluation.review import REVIEWERS_PER_ITEM, ReviewError, ReviewQueue


def test_three_reviewers_per_item_and_aggregate(tmp_path):
    q = ReviewQueue(f"sqlite:///{tmp_path}/store.db")
    assert q.add_items("eval", [{"ref": "a", "prompt": "p", "completion": "c"},
                                {"ref": "b", "prompt": "p", "completion": "c"}]) == 2
    assert q.add_items("eval", [{"ref": "a", "prompt": "p", "completion": "c"}]) == 0   # no duplicates
    for reviewer, s in zip(["ann", "bob", "cy"], [5, 3, 4]):
        item = q.next_for(reviewer)
        assert item["ref"] == "a"
        q.score(item["id"], reviewer, s)
    assert q.next_for("dan")["ref"] == "b"            # item a is full
    with pytest.raises(ReviewError, match=f"already has {REVIEWERS_PER_ITEM}"):
        q.score(1, "dan", 2)
    with pytest.raises(ReviewError, match="1..5"):
        q.score(2, "ann", 6)
    with pytest.raises(ReviewError, match="no review item 99"):
        q.score(99, "ann", 3)
    agg = q.aggregate()
    assert agg == {"items": 2, "scores": 3, "items_fully_reviewed": 1, "mean_score": 4.0, "mean_spread": 2.0}


def test_review_cli(tmp_path, monkeypatch):
    from codellm_assets.cli import app

    cfg = tmp_path / "codellm.yaml"
    cfg.write_text(f"home: {tmp_path}/home\n")
    results = tmp_path / "home" / "data" / "eval_scores" / "humaneval_results.jsonl"
    results.parent.mkdir(parents=True)
    results.write_text("".join(json.dumps({"task_id": f"HumanEval/{i}", "completion": "    return 1\n"}) + "\n"
                               for i in range(5)))
    runner = CliRunner()
    r = runner.invoke(app, ["review", "sample", "--n", "3", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    item = json.loads(runner.invoke(app, ["review", "next", "--reviewer", "ann", "--config", str(cfg)]).stdout)
    r = runner.invoke(app, ["review", "score", "--item", str(item["id"]), "--reviewer", "ann", "--score", "4",
                            "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    agg = json.loads(runner.invoke(app, ["review", "show", "--config", str(cfg)]).stdout)
    assert agg["items"] == 3 and agg["scores"] == 1 and agg["mean_score"] == 4.0
    r = runner.invoke(app, ["review", "score", "--item", "1", "--reviewer", "ann", "--score", "9",
                           "--config", str(cfg)])
    assert r.exit_code != 0
