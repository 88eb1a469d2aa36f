"""The training dataset's splits: held out per repo by commit date (real git repos with dated commits), the
hash fallback, feedback always in train, and train copies of held-out files dropped with their reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codellm_assets.core.data.dataset_splits import copies_of_references, hold_out, plan_splits
from codellm_assets.core.data.file_stages import signatures_partition
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.holdout import corpus_dates
from codellm_assets.core.data.tokenization import build_training_dataset
from codellm_assets.settings import DedupSettings, Settings
from codellm_assets_tests.conftest import commit_files
from codellm_assets_tests.integration.test_data_stage import module


def dated_commit(monkeypatch, repo, files, day):
    stamp = datetime(2026, 3, day, 12, tzinfo=UTC).isoformat()
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)
    return commit_files(repo, files, f"day {day}")


@pytest.fixture
def dated_repo(make_git_repo, monkeypatch):
    """Ten modules on day 1, five on day 2, two on day 5 (the newest commit), one edited on day 5 too."""
    repo = make_git_repo("ledger")
    dated_commit(monkeypatch, repo, {f"old/m{i}.py": module(f"old_{i}") for i in range(10)}, 1)
    dated_commit(monkeypatch, repo, {f"mid/m{i}.py": module(f"mid_{i}") for i in range(5)}, 2)
    dated_commit(monkeypatch, repo, {"new/a.py": module("newest_a"), "new/b.py": module("newest_b"),
                                     "old/m3.py": module("old_3_rewritten")}, 5)
    return repo


def test_the_newest_commits_files_are_held_out_and_dated(dated_repo):
    records = scan_branch(dated_repo, "HEAD", repo_name="ledger").records
    dates = corpus_dates(records, lambda _repo: dated_repo)
    train, held, info = hold_out(records, split="time", fraction=0.1, dates=dates)
    assert sorted(r["path"] for r in held) == ["new/a.py", "new/b.py", "old/m3.py"]   # the whole day-5 commit
    assert len(train) + len(held) == len(records) == 17
    assert info["holdout_split_per_repo"] == {"ledger": "time"} and info["holdout_fallback"] == {}
    assert info["holdout_cut_date"] == "2026-03-05T12:00:00+00:00"
    _, since, info = hold_out(records, split="time", fraction=0.1, dates=dates,
                              since=datetime(2026, 3, 2, tzinfo=UTC))
    assert len(since) == 8 and info["holdout_since"].startswith("2026-03-02")


# (commit day of each file, fraction) -> the split the repo really gets
FALLBACK_CASES = [
    ([1] * 20, 0.2, "hash"),                         # one commit: nothing is newer than the rest
    ([1] * 8 + [2] * 12, 0.2, "hash"),              # the newest date is most of the repo
    ([1] * 15 + [2] * 5, 0.2, "time"),
    ([1] * 10 + [2] * 10, 0.2, "time"),             # exactly half: still a time split
    ([1] * 19 + [2], 0.05, "time"),
]


@pytest.mark.parametrize("days,fraction,used", FALLBACK_CASES)
def test_a_repo_without_a_usable_time_order_falls_back_to_hash(days, fraction, used):
    records = [{"repo": "r", "path": f"f{i}.py", "content": f"x = {i}\n"} for i in range(len(days))]
    dates = {("r", f"f{i}.py"): d * 86_400 for i, d in enumerate(days)}
    _, held, info = hold_out(records, split="time", fraction=fraction, dates=dates)
    assert info["holdout_split_per_repo"] == {"r": used}
    assert ("r" in info["holdout_fallback"]) == (used == "hash")
    if used == "time":
        newest = max(days)
        assert {r["path"] for r in held} == {f"f{i}.py" for i, d in enumerate(days) if d == newest}


def test_every_repo_contributes_to_the_holdout():
    records, dates = [], {}
    for repo, n in (("big", 40), ("small", 10)):
        for i in range(n):
            records.append({"repo": repo, "path": f"f{i}.py", "content": f"x = {i}\n"})
            dates[(repo, f"f{i}.py")] = i
    _, held, _ = hold_out(records, split="time", fraction=0.1, dates=dates)
    assert sorted((r["repo"], r["path"]) for r in held) == [
        ("big", "f36.py"), ("big", "f37.py"), ("big", "f38.py"), ("big", "f39.py"), ("small", "f9.py")]


def _file(repo, path, content, language="python"):
    return {"repo": repo, "branch": "main", "commit": "c" * 40, "path": path, "language": language,
            "content": content, "blob_sha": "b" * 40}


@pytest.mark.parametrize("cached", [False, True])
def test_copies_of_held_out_files_are_dropped_from_train_with_their_reason(cached, tmp_path):
    held = [_file("app", "new/pricing.py", module("pricing_engine", body_lines=20))]
    near = module("pricing_engine", body_lines=20).replace('"""Module', '"""A vendored copy of module')
    candidates = [_file("vendor", "copy.py", near + "\n# vendored\n"),
                  _file("app", "exact.py", held[0]["content"].replace("\n", "\n\n")),   # only whitespace differs
                  _file("app", "other.py", module("unrelated_report", body_lines=20))]
    found = copies_of_references(candidates, held, DedupSettings(), tmp_path if cached else None)
    assert {i: reason for i, (reason, _, _) in found.items()} == {0: "near_copy_of_holdout",
                                                                  1: "exact_copy_of_holdout"}
    assert found[0][2] >= DedupSettings().threshold
    if cached:      # the signatures were stored per repo, as corpus dedup stores them, and are read back
        _, stats = signatures_partition([{"path": "copy.py", "content": candidates[0]["content"]}],
                                        DedupSettings(), tmp_path, "vendor", compact=False)
        assert stats.reused == 1 and stats.computed == 0
        assert copies_of_references(candidates, held, DedupSettings(), tmp_path) == found


def test_plan_splits_feedback_always_trains_and_never_copies_a_held_out_file():
    corpus = [_file("app", f"m{i}.py", module(f"service_{i}")) for i in range(30)]
    dates = {("app", f"m{i}.py"): 100 + i for i in range(30)}
    fresh = [_file("ide-feedback", f"fb{i}.py", module(f"accepted_{i}")) for i in range(5)]
    leaked = _file("ide-feedback", "leak.py", corpus[29]["content"])          # a copy of the newest file
    plan = plan_splits(corpus, [*fresh, leaked], holdout_fraction=0.1, validation_fraction=0.2, dates=dates)
    paths = {k: {r["path"] for r in v} for k, v in plan.splits.items()}
    assert paths["holdout"] == {"m27.py", "m28.py", "m29.py"}
    assert {f"fb{i}.py" for i in range(5)} <= paths["train"] and "leak.py" not in set().union(*paths.values())
    assert paths["validation"] and not paths["validation"] & {f"fb{i}.py" for i in range(5)}
    assert plan.info["train_dropped"] == {"exact_copy_of_holdout": 1} and plan.info["feedback_in_train"] == 5
    assert plan.info["train_dropped_examples"][0]["holdout"] == "app:main:m29.py"


def test_the_dataset_build_records_the_split_in_its_manifest(dated_repo, tmp_path):
    import json

    import datasets
    from transformers import AutoTokenizer

    records = scan_branch(dated_repo, "HEAD", repo_name="ledger").records
    dates = corpus_dates(records, lambda _repo: dated_repo)

    def split(recs):
        plan = plan_splits(recs, holdout_fraction=0.1, validation_fraction=0.1, dates=dates)
        return plan.splits, plan.info

    out = tmp_path / "ds"
    summary = build_training_dataset(records, out, vocab_size=400, seq_len=32, split=split)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["holdout_split"] == "time" and manifest["holdout_cut_date"].startswith("2026-03-05")
    assert sorted(f["path"] for f in manifest["holdout_files"]) == ["new/a.py", "new/b.py", "old/m3.py"]
    assert summary.files_per_split["holdout"] == 3 and sum(summary.files_per_split.values()) == 17
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    text = tok.decode([t for row in datasets.load_from_disk(str(out / "dataset"))["train"]["input_ids"]
                       for t in row])
    assert "newest_a" not in text and "newest_b" not in text and "old_3_rewritten" not in text
    assert "old_0" in text or "mid_0" in text                                        # train has the old code


@pytest.mark.parametrize("raw,ok", [
    ({"holdout_split": "time", "holdout_since": "2026-03-02"}, True),
    ({"holdout_split": "hash"}, True),
    ({"holdout_split": "hash", "holdout_since": "2026-03-02"}, False),
    ({"holdout_split": "random"}, False),
])
def test_holdout_settings(raw, ok):
    from pydantic import ValidationError

    if ok:
        s = Settings(dataset=raw)
        if "holdout_since" in raw:
            assert s.dataset.holdout_since == datetime(2026, 3, 2, tzinfo=UTC)   # no zone given: UTC
    else:
        with pytest.raises(ValidationError, match="holdout"):
            Settings(dataset=raw)
