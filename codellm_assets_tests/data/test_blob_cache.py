"""The incremental per-file stages: a changed file is re-processed and an unchanged one reused at every stage, a
settings change invalidates its own stage and no other, dedup over cached signatures keeps what in-memory dedup
keeps, packing streams, and a process pool gives the in-process outputs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections import Counter

import polars as pl
import pytest

from codellm_assets.core.data import blob_cache, corpus_dedup, file_stages
from codellm_assets.core.data.dedup import Doc, dedup_and_decontaminate
from codellm_assets.core.data.packing import TokenEncoder
from codellm_assets.settings import DedupSettings, QualitySettings, ScrubSettings
from codellm_assets.testing.near_dups import build_near_dup_set

STAGES = {"clean": "_clean_batch", "scrub": "_scrub_batch", "leftovers": "_leftover_batch",
          "signature": "_signature_batch"}


def _file(i: int, extra: str = "") -> dict:
    body = "\n".join(f"def handler_{i}_{n}(request, value_{n}):\n    return value_{n} * {i} + {n}" for n in range(8))
    return {"repo": "r", "branch": "main", "commit": "c", "path": f"pkg/mod_{i}.py", "language": "python",
            "bytes": 0, "blob_sha": f"b{i}", "content": f"# contact ops.team{i}@acmecorp.io\n{body}\n{extra}"}


@pytest.fixture
def counted(monkeypatch):
    """Files handed to each stage's compute function, by stage."""
    calls: Counter[str] = Counter()
    for stage, name in STAGES.items():
        real = getattr(file_stages, name)

        def wrapped(settings, batch, _real=real, _stage=stage):
            calls[_stage] += len(batch)
            return _real(settings, batch)

        monkeypatch.setattr(file_stages, name, wrapped)
    return calls


def _run_all(records, root, quality=None, scrub=None, dedup=None, workers=1):
    quality, scrub, dedup = quality or QualitySettings(), scrub or ScrubSettings(), dedup or DedupSettings()
    clean, _ = file_stages.clean_partition(records, quality, root, "r", workers)
    rows, totals, _ = file_stages.scrub_partition(clean.kept, scrub, root, "r", workers)
    findings, _ = file_stages.leftovers_partition([r["content"] for r in rows], scrub, root, "r", workers)
    sigs, _ = file_stages.signatures_partition(rows, dedup, root, "r", workers)
    return {"kept": [r["path"] for r in clean.kept], "dropped": dict(clean.dropped), "rows": rows,
            "totals": totals, "findings": findings, "sigs": sigs}


def test_a_changed_file_is_reprocessed_and_the_others_reused_at_every_stage(tmp_path, counted):
    files = [_file(i) for i in range(6)]
    first = _run_all(files, tmp_path)
    assert dict(counted) == dict.fromkeys(STAGES, 6)
    assert first["totals"] == {"email": 6} and all("<EMAIL>" in r["content"] for r in first["rows"])
    counted.clear()
    assert _run_all(files, tmp_path) == first and sum(counted.values()) == 0     # nothing changed: all reused
    files[2] = _file(2, extra="x = 1\n")
    again = _run_all(files, tmp_path)
    assert dict(counted) == dict.fromkeys(STAGES, 1)                            # only the changed file
    assert again["rows"][2]["content"].endswith("x = 1\n") and again["rows"][3] == first["rows"][3]


def test_the_token_stage_reuses_unchanged_files(tmp_path):
    encoded: list[str] = []

    def encode(records, fim):
        texts = [r["content"] for r in records]
        encoded.extend(texts)
        return [[len(t), ord(t[0])] for t in texts]

    def encoder():
        return TokenEncoder(encode, tmp_path, "tok1", {"seed": 0})

    recs = [{"repo": "a", "content": f"text {i}"} for i in range(5)] + [{"repo": "b", "content": "other"}]
    first = [list(map(int, ids)) for batch in encoder().batches(recs, fim=False) for ids in batch]
    assert len(encoded) == 6
    recs[1] = {"repo": "a", "content": "changed"}
    enc = encoder()
    second = [ids for batch in enc.batches(recs, fim=False) for ids in batch]
    assert encoded[6:] == ["changed"] and enc.stats.reused == 5
    assert [list(map(int, ids)) for ids in second] == [first[0], [7, ord("c")], *first[2:]]
    other_tokenizer = TokenEncoder(encode, tmp_path, "tok2", {"seed": 0})
    list(other_tokenizer.batches(recs, fim=False))
    assert len(encoded) == 13                                                   # a new tokenizer: all again


@pytest.mark.parametrize(("change", "recomputed"), [
    ({"quality": QualitySettings(min_lines=3)}, {"clean"}),
    ({"scrub": ScrubSettings(redact_ips=False)}, {"scrub", "leftovers"}),
    ({"dedup": DedupSettings(shingle_size=4)}, {"signature"}),
    ({"dedup": DedupSettings(threshold=0.8, lsh_shards=3)}, set()),     # not what a signature depends on
])
def test_a_settings_change_invalidates_its_own_stage_only(tmp_path, counted, change, recomputed):
    files = [_file(i) for i in range(4)]
    _run_all(files, tmp_path)
    counted.clear()
    _run_all(files, tmp_path, **change)
    assert {stage for stage, n in counted.items() if n} == recomputed
    assert all(counted[s] == 4 for s in recomputed)


def test_a_scrub_that_changes_the_text_changes_the_signature_key(tmp_path, counted):
    files = [_file(i) for i in range(3)]
    _run_all(files, tmp_path)
    counted.clear()
    _run_all(files, tmp_path, scrub=ScrubSettings(redact_emails=False))      # e-mails stay: new scrubbed text
    assert counted["scrub"] == 3 and counted["signature"] == 3 and counted["clean"] == 0


def test_shards_are_compacted_to_the_live_files(tmp_path):
    cache = blob_cache.StageCache(tmp_path, "s", "h", "p", file_stages.LEFTOVER_SCHEMA)
    for i in range(blob_cache.MAX_SHARDS + 2):
        blob_cache.cached_map(cache, [f"k{i}"], [i], lambda b: [{"findings": str(x)} for x in b], compact=False)
    assert len(cache.shards()) == blob_cache.MAX_SHARDS + 2
    cache.compact(["k0", "k5"])
    assert len(cache.shards()) == 1 and set(cache.lookup(["k0", "k5", "k6"])) == {"k0", "k5"}


def test_list_columns_are_read_back_as_the_stored_arrays(tmp_path, monkeypatch):
    from codellm_assets.core.data.packing import TOKEN_SCHEMA

    monkeypatch.setattr(blob_cache, "ROW_GROUP_ROWS", 3)          # several row groups, filtered mid-group
    cache = blob_cache.StageCache(tmp_path, "tokens", "h", "p", TOKEN_SCHEMA)
    stored = {f"k{i}": list(range(i, 2 * i + 1)) for i in range(10)}
    cache.add([{"key": k, "ids": v} for k, v in list(stored.items())[:7]])
    cache.add([{"key": k, "ids": v} for k, v in list(stored.items())[7:]])   # a second shard
    wanted = ["k1", "k4", "k5", "k8", "nope"]
    got = cache.lookup_arrays(wanted, "ids")
    assert set(got) == {"k1", "k4", "k5", "k8"}
    assert {k: v.tolist() for k, v in got.items()} == {k: stored[k] for k in got}
    assert {k: v["ids"] for k, v in cache.lookup(wanted).items()} == {k: stored[k] for k in got}


def _write_partitions(files, tmp_path) -> dict:
    by_repo: dict[str, list[dict]] = {}
    for f in files:
        by_repo.setdefault(f.repo, []).append({"repo": f.repo, "branch": "main", "path": f.path, "content": f.text})
    sources = {}
    for repo, rows in by_repo.items():
        sources[repo] = tmp_path / f"{repo}.parquet"
        pl.DataFrame(rows).write_parquet(sources[repo], row_group_size=64)
    return sources


def test_sharded_dedup_over_cached_signatures_keeps_what_in_memory_dedup_keeps(tmp_path):
    files = build_near_dup_set(300, seed=0)                     # the labelled set
    assert len({(f.repo, f.path) for f in files}) == len(files)
    docs = [Doc(f"{f.repo}:main:{f.path}", f.text, f.repo, f.path) for f in files]
    reference = dedup_and_decontaminate(docs, DedupSettings())
    sources = _write_partitions(files, tmp_path)
    assert len(sources) > 1
    for shards in (1, 4):                                       # the second pass reads cached signatures
        got = corpus_dedup.dedup_partitions(sources, DedupSettings(lsh_shards=shards), tmp_path / "cache")
        kept = sorted(i for ids in got.kept.values() for i in ids)
        assert reference.dedup.near_duplicates and kept == reference.kept_ids
        assert got.dedup.near_duplicates == reference.dedup.near_duplicates
        assert got.dedup.exact_duplicates == reference.dedup.exact_duplicates
        assert got.texts_read_for_verify < len(files)           # only files in candidate pairs are read
    assert got.signatures.computed == 0 and got.signatures.reused == got.files_in - len(got.decontam_hits)


def test_decontamination_verdicts_are_cached_per_text_and_per_eval_set(tmp_path, monkeypatch):
    from codellm_assets.core.data.decontam import humaneval_items

    files = build_near_dup_set(60, seed=1)
    prompt = dict(humaneval_items())["HumanEval/0/prompt"]
    files[5] = dataclasses.replace(files[5], text=files[5].text + "\n" + prompt)     # contaminated
    sources = _write_partitions(files, tmp_path)
    distinct = len({(f.repo, f.text) for f in files})          # a partition's copies are scanned once
    scanned: list[int] = []
    real = file_stages._decontam_batch
    monkeypatch.setattr(file_stages, "_decontam_batch", lambda index, batch: scanned.append(len(batch))
                        or real(index, batch))
    first = corpus_dedup.dedup_partitions(sources, DedupSettings(), tmp_path / "cache")
    assert sum(scanned) == distinct and first.decontamination.computed == len(files)
    assert any(h.startswith("HumanEval/0/prompt:") for hs in first.decontam_hits.values() for h in hs)
    scanned.clear()
    again = corpus_dedup.dedup_partitions(sources, DedupSettings(), tmp_path / "cache")
    assert scanned == [] and again.decontamination.reused == len(files)           # nothing scanned again
    assert again.decontam_hits == first.decontam_hits and again.kept == first.kept
    other_eval = corpus_dedup.dedup_partitions(sources, DedupSettings(), tmp_path / "cache",
                                               extra_eval_items=[("company/1", "def quorble_the_ledger(): pass")])
    assert sum(scanned) == distinct and other_eval.decontamination.computed == len(files)   # new eval set


def test_two_workers_give_the_in_process_outputs(tmp_path):
    files = [_file(i, extra="y = 2\n" * (i % 3)) for i in range(2 * blob_cache.BATCH_FILES + 10)]
    one = _run_all(files, tmp_path / "one", workers=1)
    two = _run_all(files, tmp_path / "two", workers=2)
    assert one == two


PACK_50MB = textwrap.dedent("""
    import resource, sys, json
    import numpy as np
    from codellm_assets.core.data.packing import pack_to_arrow
    def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 4000, size=int(n)).tolist() for n in rng.integers(100, 3000, size=64)]
    base = rss()
    def batches():      # 50 MB of int32 token ids, a few hundred KB at a time
        total = 0
        while total < 50_000_000 // 4:
            yield docs[total % 64:total % 64 + 4]
            total += sum(map(len, docs[total % 64:total % 64 + 4]))
    out = pack_to_arrow(batches(), sys.argv[1], 256, 0, pad=True)
    print(json.dumps({"tokens": out.tokens, "sequences": out.sequences, "grew": rss() - base}))
""")


def test_packing_50mb_of_tokens_keeps_memory_bounded(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PACK_50MB, str(tmp_path / "train")], capture_output=True,
                          text=True, check=True)
    got = json.loads(proc.stdout)
    assert got["tokens"] >= 12_500_000 and got["sequences"] == -(-got["tokens"] // 256)
    # all of them as a Python list would be ~400 MB; as int32 arrays 50 MB; a batch at a time far less
    assert got["grew"] < 40_000_000, got
    import pyarrow as pa
    rows = 0
    for shard in sorted((tmp_path / "train").glob("data-*.arrow")):
        with pa.memory_map(str(shard)) as f:
            rows += pa.ipc.open_stream(f).read_all().num_rows
    assert rows == got["sequences"]


def test_an_unchanged_train_split_reuses_the_tokenizer_and_the_token_ids(tmp_path, monkeypatch):
    from codellm_assets.core.data import tokenization

    trained = []
    real = tokenization.train_bpe_tokenizer
    monkeypatch.setattr(tokenization, "train_bpe_tokenizer", lambda *a, **k: trained.append(1) or real(*a, **k))
    records = [{**_file(i), "content": _file(i)["content"] * 6} for i in range(40)]

    def build(name, cache=tmp_path / "cache"):
        return tokenization.build_training_dataset(records, tmp_path / name, seq_len=64, vocab_size=400,
                                                   cache_dir=cache)

    uncached = build("plain", cache=None)
    first, second = build("a"), build("b")
    assert len(trained) == 2                                   # the uncached build and the first cached one
    assert uncached.manifest_hash == first.manifest_hash == second.manifest_hash
    assert second.cache["tokens"]["computed"] == 0 and second.cache["tokens"]["reused"] == 40
    records[0] = {**records[0], "content": records[0]["content"] + "changed = True\n"}
    third = build("c")
    assert len(trained) == 3 and third.manifest_hash != second.manifest_hash
