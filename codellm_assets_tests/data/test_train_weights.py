"""Per-repo training weights: how many passes show each repo's files, and that the dataset really holds them."""

from __future__ import annotations

from collections import Counter

import pytest

from codellm_assets.core.data.tokenization import build_training_dataset
from codellm_assets.core.data.train_weights import weighted_passes
from codellm_assets.settings import RepoSettings


def _files(repo: str, n: int) -> list[dict]:
    return [{"repo": repo, "path": f"src/m{i}.py", "content": f"def f{i}():\n    return {i}\n" * 4}
            for i in range(n)]


@pytest.mark.parametrize("weight,expected_per_file", [
    (1.0, 1.0), (3.0, 3.0), (2.5, 2.5), (0.5, 0.5), (0.25, 0.25)])
def test_a_repo_is_shown_weight_times_on_average(weight, expected_per_file):
    train = _files("core", 400) + _files("other", 50)
    passes = weighted_passes(train, {"core": weight})
    shown = Counter(r["repo"] for p in passes for r in p)
    assert shown["other"] == 50                                          # unlisted: weight 1
    assert shown["core"] / 400 == pytest.approx(expected_per_file, abs=0.08)
    copies = Counter(r["path"] for p in passes for r in p if r["repo"] == "core")
    assert max(copies.values()) <= int(weight) + 1 and all(len(set(map(id, p))) == len(p) for p in passes)
    assert weighted_passes(train, {"core": weight}) == passes             # deterministic


def test_no_weights_is_the_train_split_itself():
    train = _files("a", 5)
    assert weighted_passes(train, {}) == [train]


def test_the_dataset_holds_the_extra_passes_and_records_them(tmp_path):
    records = [{**r, "branch": "main", "commit": "0" * 40, "language": "python", "blob_sha": f"{i:040x}"}
               for i, r in enumerate(_files("core", 30) + _files("other", 30))]
    for r in records[30:]:
        r["content"] = r["content"].replace("return", "yield")
    kw = dict(vocab_size=300, seq_len=16, validation_fraction=0.1, holdout_fraction=0.0, fim_rate=0.5, seed=1)
    plain = build_training_dataset(records, tmp_path / "plain", **kw)
    heavy = build_training_dataset(records, tmp_path / "heavy", repo_weights={"core": 3.0}, **kw)
    core_tokens = plain.tokens["train"] / 2                             # the two repos are about the same size
    assert heavy.tokens["train"] - plain.tokens["train"] == pytest.approx(2 * core_tokens, rel=0.25)
    assert heavy.extra["train_weights"] == {"core": 3.0} and len(heavy.extra["train_files_per_pass"]) == 3
    assert heavy.tokens["validation"] == plain.tokens["validation"]     # never weighted
    assert heavy.manifest_hash != plain.manifest_hash


def test_train_weight_must_be_positive():
    with pytest.raises(ValueError, match="train_weight"):
        RepoSettings(name="x", path=".", train_weight=0)
