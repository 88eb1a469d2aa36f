"""Exact + near dedup: pure helpers by table, clustering rules on crafted chains, targets on a labelled set."""

from __future__ import annotations

import inspect
import json.decoder
import random

import numpy as np
import pytest

from codellm_assets.core.data.clusters import star_and_chain
from codellm_assets.core.data.dedup import (
    Doc,
    dedup_and_decontaminate,
    dedup_documents,
    exact_hash,
    jaccard,
    lsh_bands,
    minhash_signatures,
    normalize_whitespace,
    shingles,
)
from codellm_assets.settings import DedupSettings
from codellm_assets.testing.near_dups import build_near_dup_set, score

BACKENDS = ["rensa", "datasketch"]
SOURCE = inspect.getsource(json.decoder)  # ~12 KB of real Python, present wherever Python is


def window(start: int, width: int = 100) -> str:
    """Fixed-width tokens start..start+width: windows 10 apart have 3-shingle Jaccard 0.81, 20 apart 0.66."""
    return " ".join(f"t{n:03d}" for n in range(start, start + width))


@pytest.mark.parametrize(
    ("text", "k", "expected"),
    [
        ("a b c d", 3, {"a b c", "b c d"}),
        ("foo.bar(baz, qux)", 2, {"foo bar", "bar baz", "baz qux"}),
        ("x = 1", 3, set()),  # fewer tokens than k: exact dedup only
        ("", 5, set()),
        ("été = naïve + 1", 2, {"été naïve", "naïve 1"}),
        ("x==1;x!=1", 2, {"x 1", "1 x"}),  # operators are separators, as in BigCode
    ],
)
def test_shingles(text, k, expected):
    assert shingles(text, k) == expected


def test_shingle_size_must_be_positive():
    with pytest.raises(ValueError, match="shingle size"):
        shingles("a b", 0)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("def f():\n    return 1\n", "def f():\r\n  return 1", True),
        ("a  b\n\n\tc ", "a b c", True),
        ("ab", "a b", False),
        ("x = 1", "x = 2", False),
    ],
)
def test_exact_key_ignores_whitespace_only(a, b, same):
    assert (exact_hash(a) == exact_hash(b)) is same
    assert (normalize_whitespace(a) == normalize_whitespace(b)) is same


@pytest.mark.parametrize(
    ("num_perm", "threshold", "expected"),
    [
        (256, 0.7, (64, 4)),
        (256, 0.8, (32, 8)),
        (128, 0.7, (32, 4)),
        (256, 0.5, (64, 4)),
        (256, 0.3, (128, 2)),
    ],
)
def test_lsh_bands_split_all_permutations_with_high_recall_at_threshold(num_perm, threshold, expected):
    bands, rows = lsh_bands(num_perm, threshold)
    assert (bands, rows) == expected and bands * rows == num_perm
    assert 1 - (1 - threshold**rows) ** bands >= 0.97


@pytest.mark.parametrize("backend", BACKENDS)
def test_signatures_estimate_the_exact_jaccard(backend):
    settings = DedupSettings(backend=backend, num_perm=256, shingle_size=3)
    texts = [window(0), window(10), window(0), window(500)]
    sigs = minhash_signatures(texts, settings)
    assert sigs.shape == (4, 256)
    assert np.array_equal(sigs[0], sigs[2])
    exact = jaccard(shingles(texts[0], 3), shingles(texts[1], 3))
    assert exact == pytest.approx(88 / 108)
    assert abs(float(np.mean(sigs[0] == sigs[1])) - exact) < 0.1
    assert float(np.mean(sigs[0] == sigs[3])) < 0.05


def test_exact_duplicates_keep_the_longest_then_smallest_repo_path():
    docs = [
        Doc("z/short", "def f():\n  return 1", "z", "short.py"),
        Doc("b/long", "def f():\n        return 1\n", "b", "long.py"),
        Doc("a/long", "def f():\n        return 1\n", "a", "long.py"),
        Doc("c/other", "def g():\n    return 2\n", "c", "other.py"),
    ]
    result = dedup_documents(docs, DedupSettings())
    assert result.kept_ids == ["a/long", "c/other"]
    assert result.exact_duplicates == {"z/short": "a/long", "b/long": "a/long"}
    assert result.near_duplicates == {}
    assert result.cluster_sizes == [3]
    assert result.dedup_ratio == pytest.approx(0.5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("chain, kept, near", [
    # star only: b takes its neighbours a, c; d, two apart (0.66), stays and takes e
    (0.7, ["b", "d"], {"a": "b", "c": "b", "e": "d"}),
    # the chain from c reaches d (0.66 to b >= 0.6) but not e (0.53 to b): e stays, alone
    (0.6, ["b", "e"], {"a": "b", "c": "b", "d": "b"}),
    # the default floor: e (0.53 to b) goes too, through d
    (0.5, ["b"], {"a": "b", "c": "b", "d": "b", "e": "b"}),
])
def test_a_chain_goes_only_as_far_as_each_file_stays_near_the_kept_one(backend, chain, kept, near):
    # a~b~c~d~e (3-shingle Jaccard 0.81 between neighbours, 0.66 two apart, 0.53 three apart): union-find
    # alone would drop all but one whatever their distance to it; every removed file points at the kept one
    # with its own Jaccard to it, which is >= chain_threshold.
    docs = [Doc(name, window(10 * i), "r", f"{name}.py") for i, name in enumerate("abcde")]
    settings = DedupSettings(backend=backend, shingle_size=3, threshold=0.7, chain_threshold=chain)
    result = dedup_documents(docs, settings)
    assert result.kept_ids == kept
    assert result.near_duplicates == near
    for removed, keeper in result.near_duplicates.items():
        j = jaccard(
            shingles(docs["abcde".index(removed)].text, 3), shingles(docs["abcde".index(keeper)].text, 3)
        )
        assert j >= chain and result.near_jaccard[removed] == pytest.approx(j, abs=1e-4)


def test_a_chain_never_passes_through_a_file_that_stays():
    # keeper 0; 1 is in its star; 2 hangs off 1 but is too far from 0 (0.55 < floor 0.6), so it stays; 3 hangs
    # off 2 only and is near enough to 0 (0.65) but reached only through 2: it stays too. 4 hangs off 1: taken.
    sims = {(0, 1): 0.8, (0, 2): 0.55, (0, 3): 0.65, (0, 4): 0.62}
    neighbours = {0: {1}, 1: {0, 2, 4}, 2: {1, 3}, 3: {2}, 4: {1}}
    taken = star_and_chain(0, {1, 2, 3, 4}, neighbours, lambda a, b: sims[(a, b)], threshold=0.7, floor=0.6)
    assert taken == {1: 0.8, 4: 0.62}
    star = star_and_chain(0, {1, 2, 3, 4}, neighbours, lambda a, b: sims[(a, b)], threshold=0.7, floor=0.7)
    assert star == {1: 0.8}


def test_chain_threshold_above_the_threshold_is_refused_by_name():
    with pytest.raises(ValueError, match=r"dedup.chain_threshold \(0.8\) is above dedup.threshold \(0.7\)"):
        DedupSettings(threshold=0.7, chain_threshold=0.8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lsh_candidates_below_the_threshold_are_rejected_by_verification(backend):
    docs = [Doc("a", window(0)), Doc("b", window(20))]  # exact Jaccard 0.66: a certain LSH candidate at r=4
    result = dedup_documents(docs, DedupSettings(backend=backend, shingle_size=3, threshold=0.7))
    assert result.candidate_pairs == 1 and result.verified_pairs == 0
    assert result.kept_ids == ["a", "b"]


def test_an_exact_copy_of_a_near_duplicate_points_at_the_kept_file():
    edited = SOURCE.replace("scanstring", "scan_string", 3)
    docs = [
        Doc("orig", SOURCE, "r1", "decoder.py"),
        Doc("edit", edited, "r2", "decoder.py"),
        Doc("edit-copy", edited, "r3", "decoder.py"),
    ]
    result = dedup_documents(docs, DedupSettings())
    assert result.kept_ids == ["edit"]  # the edit is 6 characters longer
    assert result.near_duplicates == {"orig": "edit"}
    assert result.exact_duplicates == {"edit-copy": "edit"}
    assert result.cluster_sizes == [3] and result.removed == 2


def test_the_outcome_does_not_depend_on_input_order():
    files = build_near_dup_set(80, seed=3)
    docs = [Doc(f.id, f.text, f.repo, f.path) for f in files]
    first = dedup_documents(docs, DedupSettings())
    assert first.removed > 10
    for seed in range(3):
        shuffled = docs[:]
        random.Random(seed).shuffle(shuffled)
        again = dedup_documents(shuffled, DedupSettings())
        assert (again.kept_ids, again.exact_duplicates, again.near_duplicates) == (
            first.kept_ids,
            first.exact_duplicates,
            first.near_duplicates,
        )


def test_short_texts_are_only_exact_deduplicated():
    docs = [Doc("a", "x = 1"), Doc("b", "x == 1"), Doc("c", "x = 1\n")]
    result = dedup_documents(docs, DedupSettings(shingle_size=3))
    assert result.exact_duplicates == {"a": "c"} and result.near_duplicates == {}  # "c" is longer


def test_duplicate_ids_are_refused_by_name():
    with pytest.raises(ValueError, match="'same'"):
        dedup_documents([Doc("same", "a"), Doc("same", "b")], DedupSettings())


def test_empty_input():
    result = dedup_documents([], DedupSettings())
    assert (result.kept_ids, result.dedup_ratio, result.cluster_sizes) == ([], 0.0, [])


def test_decontamination_runs_before_dedup_so_a_contaminated_copy_is_never_the_keeper():
    from codellm_assets.core.data.decontam import humaneval_items

    prompt = dict(humaneval_items())["HumanEval/0/prompt"]
    docs = [Doc("clean", SOURCE, "r1", "a.py"), Doc("dirty", SOURCE + "\n" + prompt, "r2", "a.py")]
    result = dedup_and_decontaminate(docs, DedupSettings())
    assert result.kept_ids == ["clean"]
    assert "HumanEval/0/prompt:docstring" in result.decontam_hits["dirty"]
    off = dedup_and_decontaminate(docs, DedupSettings(decontaminate=False))
    assert off.kept_ids == ["dirty"] and off.decontam_hits == {}


@pytest.fixture(scope="module")
def labelled_set():
    return build_near_dup_set(300, seed=0)


def test_the_labelled_set_has_duplicates_and_hard_negatives(labelled_set):
    kinds = {f.kind.split(":")[0] for f in labelled_set}
    assert kinds == {"original", "variant", "sibling", "spliced", "boilerplate", "short"}
    assert 280 <= len(labelled_set) <= 320 and len({f.id for f in labelled_set}) == len(labelled_set)
    variants = [f for f in labelled_set if f.kind.startswith("variant")]
    assert min(f.jaccard_to_group for f in variants) < 0.7 < max(f.jaccard_to_group for f in variants)
    again = build_near_dup_set(300, seed=0)
    assert [(f.id, f.text) for f in again] == [(f.id, f.text) for f in labelled_set]


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_settings_reach_the_recall_target_without_dropping_distinct_files(labelled_set, backend):
    docs = [Doc(f.id, f.text, f.repo, f.path) for f in labelled_set]
    result = dedup_documents(docs, DedupSettings(backend=backend))
    figures = score(labelled_set, {**result.exact_duplicates, **result.near_duplicates})
    assert figures["false_drops"] == []
    assert figures["recall"] >= 0.95, figures


def test_score_counts_false_drops_and_recall():
    files = build_near_dup_set(40, seed=1)
    variant = next(f for f in files if f.kind.startswith("variant"))
    stranger = next(f for f in files if f.kind == "sibling")
    figures = score(files, {variant.id: variant.group, stranger.id: variant.group})
    assert figures["false_drops"] == [stranger.id]
    assert figures["correct"] == 1 and figures["recall"] == pytest.approx(1 / figures["removable"])


def test_a_copy_with_reworded_comments_and_a_new_header_is_still_a_copy():
    code = [f"def step_{i}(value, scale={i}):\n    total = value * scale + {i * 7}\n    return total - {i}\n"
            for i in range(40)]
    original = "".join(f"# step {i} keeps the running total in range\n{c}" for i, c in enumerate(code))
    copy = "# Vendored by acme-platform at 3f2a9c1; do not edit.\n# Patch upstream instead.\n" + "".join(
        f"# {'why ' * (i % 4)}we scale the value here, then subtract again\n{c}" for i, c in enumerate(code))
    docs = [Doc("a", original, "r1", "pkg/steps.py"), Doc("b", copy, "r2", "vendor/steps.py")]
    aware = dedup_documents(docs, DedupSettings())
    raw = dedup_documents(docs, DedupSettings(code_aware=False))
    assert aware.near_duplicates in ({"b": "a"}, {"a": "b"})
    assert raw.near_duplicates == {}      # on raw words the comments hide the copy


@pytest.fixture(scope="module")
def hard_set():
    from codellm_assets.testing.hard_near_dups import build_hard_near_dup_set

    return build_hard_near_dup_set(20, seed=1, held_out=True)


def test_code_aware_dedup_finds_more_hard_copies_and_drops_no_distinct_file(hard_set):
    docs = [Doc(f.id, f.text, f.repo, f.path) for f in hard_set]
    aware = dedup_documents(docs, DedupSettings())
    raw = dedup_documents(docs, DedupSettings(code_aware=False))
    got = score(hard_set, {**aware.exact_duplicates, **aware.near_duplicates})
    before = score(hard_set, {**raw.exact_duplicates, **raw.near_duplicates})
    assert got["false_drops"] == [] and before["false_drops"] == []
    assert got["recall"] >= before["recall"] + 0.05, (got["recall"], before["recall"])
    assert got["recall"] >= 0.93, got["missed_by_edit"]     # 0.95-0.97 on the benchmark's held-out seeds
