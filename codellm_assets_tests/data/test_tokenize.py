"""Tests for the training dataset: split, tokenizer, FIM, packing, the saved dataset and its manifest."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from codellm_assets.core.data.tokenization import (
    EOS_TOKEN,
    FIM_MIDDLE,
    FIM_PREFIX,
    FIM_SUFFIX,
    DatasetBuildError,
    build_training_dataset,
    encode_documents,
    fim_choices,
    fim_format,
    fim_split,
    load_tokenizer,
    normalized_content_hash,
    pack_sequences,
    split_by_file_hash,
    train_bpe_tokenizer,
    verify_manifest,
)


def _python_file(i: int) -> str:
    return (f"import os\n\n\ndef handler_{i}(request, limit={i}):\n    \"\"\"Handle request {i}.\"\"\"\n"
            f"    items = [x * {i} for x in range(limit)]\n    if not items:\n        return None\n"
            f"    return {{'id': {i}, 'total': sum(items), 'path': os.path.join('a', str({i}))}}\n")


def _records(n: int = 60) -> list[dict]:
    recs = []
    for i in range(n):
        repo = f"repo{i % 3}"
        lang = "python" if i % 4 else "javascript"
        content = _python_file(i) if lang == "python" else f"function f{i}(a) {{\n  return a + {i};\n}}\n" * 3
        recs.append({"repo": repo, "branch": "main", "commit": f"{i % 3:040d}", "path": f"src/f{i}.py",
                     "language": lang, "content": content, "blob_sha": f"{i:040x}"})
    return recs


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [r["content"] for r in _records(200)]
    return train_bpe_tokenizer(texts, 400, tmp_path_factory.mktemp("tok"))


# ---- split ---------------------------------------------------------------------------------------

def test_split_is_disjoint_complete_and_stable():
    recs = _records(300)
    a = split_by_file_hash(recs, 0.2, 0.1)
    shuffled = recs[:]
    random.Random(3).shuffle(shuffled)
    b = split_by_file_hash(shuffled, 0.2, 0.1)
    paths = {k: [r["path"] for r in v] for k, v in a.items()}
    assert paths == {k: [r["path"] for r in v] for k, v in b.items()}  # order of input does not matter
    assert sum(len(v) for v in paths.values()) == 300
    assert not set(paths["train"]) & set(paths["validation"])
    assert not set(paths["train"]) & set(paths["holdout"])
    assert not set(paths["validation"]) & set(paths["holdout"])
    assert 30 <= len(paths["validation"]) <= 90 and 10 <= len(paths["holdout"]) <= 55  # ~20% and ~10%


def test_split_keeps_copies_of_a_file_together():
    recs = _records(100)
    copies = [{**r, "repo": "fork", "content": r["content"].replace("\n", "  \r\n")} for r in recs]
    splits = split_by_file_hash(recs + copies, 0.3, 0.1)
    for name, rs in splits.items():
        hashes = {normalized_content_hash(r["content"]) for r in rs}
        for other, others in splits.items():
            if other != name:
                assert not hashes & {normalized_content_hash(r["content"]) for r in others}


def test_split_small_corpus_still_gets_validation_and_holdout():
    splits = split_by_file_hash(_records(3), 0.01, 0.01)
    assert [len(splits[s]) for s in ("train", "validation", "holdout")] == [1, 1, 1]


@pytest.mark.parametrize("val,hold", [(0.6, 0.5), (-0.1, 0.1), (0.1, 1.0)])
def test_split_rejects_bad_fractions(val, hold):
    with pytest.raises(DatasetBuildError, match="validation_fraction"):
        split_by_file_hash(_records(5), val, hold)


# ---- packing and FIM -----------------------------------------------------------------------------

@pytest.mark.parametrize("docs,seq_len,pad,expected", [
    ([[1, 2, 3], [4, 5]], 3, None, [[1, 2, 3], [0, 4, 5]]),          # 1 2 3 E 4 5 E -> last E dropped
    ([[1, 2, 3], [4, 5]], 3, 9, [[1, 2, 3], [0, 4, 5], [0, 9, 9]]),
    ([[1, 2], [3]], 5, None, [[1, 2, 0, 3, 0]]),
    ([[1]], 4, None, []),
    ([[1]], 4, 7, [[1, 0, 7, 7]]),
    ([], 4, 7, []),
])
def test_pack_sequences_table(docs, seq_len, pad, expected):
    assert pack_sequences(docs, seq_len, 0, pad_id=pad) == expected


def test_pack_sequences_preserves_tokens_in_order():
    rng = random.Random(0)
    docs = [[rng.randrange(1, 100) for _ in range(rng.randrange(1, 50))] for _ in range(40)]
    seqs = pack_sequences(docs, 16, 0)
    flat = [t for d in docs for t in (*d, 0)]
    assert all(len(s) == 16 for s in seqs)
    assert [t for s in seqs for t in s] == flat[:len(seqs) * 16]
    assert len(flat) - len(seqs) * 16 < 16


def test_fim_round_trip_and_format():
    doc = "def add(a, b):\n    return a + b\n"
    for seed in range(30):
        prefix, middle, suffix = fim_split(doc, random.Random(seed))
        assert prefix + middle + suffix == doc
        text = fim_format(prefix, middle, suffix)
        assert text.startswith(FIM_PREFIX)
        p, rest = text[len(FIM_PREFIX):].split(FIM_SUFFIX)
        s, m = rest.split(FIM_MIDDLE)
        assert (p, m, s) == (prefix, middle, suffix) and p + m + s == doc


def test_fim_choices_rate_and_determinism():
    docs = [_python_file(i) for i in range(400)]
    a = fim_choices(docs, 0.5, seed=1)
    assert 140 < sum(c is not None for c in a) < 260
    assert fim_choices(list(reversed(docs)), 0.5, seed=1) == list(reversed(a))  # per-document, not order
    assert all(c is None for c in fim_choices(docs, 0.0, seed=1))


def test_a_long_fim_document_is_cut_per_window_so_every_example_is_whole(tokenizer):
    doc = "".join(_python_file(i) for i in range(12))
    window = 64
    ids = encode_documents(tokenizer, [doc], fim_rate=1.0, seed=0, fim_window=window)[0]
    pre, suf, mid = (tokenizer.convert_tokens_to_ids(t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
    pieces, cur = [], []
    for i in [*ids, tokenizer.eos_token_id]:
        if i == tokenizer.eos_token_id:
            pieces.append(cur)
            cur = []
        else:
            cur.append(i)
    assert len(pieces) > 3 and all(len(p) + 1 <= window for p in pieces)   # one window each, EOS too
    text = ""
    for p in pieces:
        assert p[0] == pre and p.count(suf) == 1 and p.count(mid) == 1
        i, j = p.index(suf), p.index(mid)
        text += tokenizer.decode(p[1:i]) + tokenizer.decode(p[j + 1:]) + tokenizer.decode(p[i + 1:j])
    assert text == doc                                                         # nothing lost or reordered
    whole = encode_documents(tokenizer, [doc], fim_rate=1.0, seed=0)[0]
    assert whole.count(pre) == 1                                               # no window: one cut per document
    short = _python_file(1)
    assert encode_documents(tokenizer, [short], fim_rate=1.0, seed=0, fim_window=4096) == \
        encode_documents(tokenizer, [short], fim_rate=1.0, seed=0)


def test_encode_documents_fim_layout_and_literal_special_text(tokenizer):
    doc = "x = '<|endoftext|> <fim_prefix>'\nprint(x)\n"
    plain = encode_documents(tokenizer, [doc])[0]
    assert tokenizer.eos_token_id not in plain and tokenizer.convert_tokens_to_ids(FIM_PREFIX) not in plain
    assert tokenizer.decode(plain) == doc
    fim = encode_documents(tokenizer, [doc], fim_rate=1.0, seed=0)[0]
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE)]
    assert fim[0] == ids[0] and fim.count(ids[1]) == 1 and fim.count(ids[2]) == 1
    i, j = fim.index(ids[1]), fim.index(ids[2])
    prefix, suffix, middle = (tokenizer.decode(fim[1:i]), tokenizer.decode(fim[i + 1:j]),
                              tokenizer.decode(fim[j + 1:]))
    assert prefix + middle + suffix == doc


def _examples(tokenizer, ids: list[int]) -> list[tuple[str, str, str]]:
    """(the text after ``<fim_prefix>`` and before ``<fim_suffix>``, between ``<fim_suffix>`` and
    ``<fim_middle>``, after ``<fim_middle>``) of each FIM example in ``ids`` (examples joined by EOS)."""
    pre, suf, mid = (tokenizer.convert_tokens_to_ids(t) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE))
    out, cur = [], []
    for i in [*ids, tokenizer.eos_token_id]:
        if i != tokenizer.eos_token_id:
            cur.append(i)
            continue
        assert cur[0] == pre and cur.count(suf) == 1 and cur.count(mid) == 1
        s, m = cur.index(suf), cur.index(mid)
        out.append((tokenizer.decode(cur[1:s]), tokenizer.decode(cur[s + 1:m]), tokenizer.decode(cur[m + 1:])))
        cur = []
    return out


def test_spm_examples_put_the_suffix_first_and_the_middle_right_after_the_prefix(tokenizer):
    doc = "".join(_python_file(i) for i in range(6))
    for window in (None, 64):
        ids = encode_documents(tokenizer, [doc], fim_rate=1.0, seed=3, fim_window=window, fim_spm_rate=1.0)[0]
        psm = encode_documents(tokenizer, [doc], fim_rate=1.0, seed=3, fim_window=window)[0]
        spm, plain = _examples(tokenizer, ids), _examples(tokenizer, psm)
        assert len(spm) == len(plain) and (window is None) == (len(spm) == 1)
        # the same cuts laid out the other way: nothing before <fim_suffix>, then the suffix, then the
        # prefix and the middle as one run of text (the middle continues the prefix)
        for (empty, s, pm), (p, s2, m) in zip(spm, plain):
            assert empty == "" and s == s2 and pm == p + m
        assert "".join(pm + s for _, s, pm in spm) == doc
        assert sorted(ids) == sorted(psm)                                      # the same tokens, reordered


def test_spm_rate_mixes_layouts_per_example_whatever_the_order(tokenizer):
    docs = [_python_file(i) for i in range(120)]
    psm = [_examples(tokenizer, ids) for ids in encode_documents(tokenizer, docs, fim_rate=1.0, seed=1)]

    def spm_share(ds: list[str], rate: float) -> list[bool]:
        got = encode_documents(tokenizer, ds, fim_rate=1.0, seed=1, fim_spm_rate=rate)
        # an example is SPM when its layout differs from the PSM one of the same cut (an empty prefix
        # looks the same either way and counts as PSM)
        return [e != p for ids, ps in zip(got, psm if ds == docs else psm[::-1])
                for e, p in zip(_examples(tokenizer, ids), ps)]
    mixed = spm_share(docs, 0.5)
    assert 35 < sum(mixed) < 85
    assert spm_share(docs[::-1], 0.5) == mixed[::-1]                          # one example per file here
    assert sum(spm_share(docs, 1.0)) > 95 and sum(spm_share(docs, 0.0)) == 0
    assert encode_documents(tokenizer, docs[:5], fim_rate=0.0, fim_spm_rate=1.0) == \
        encode_documents(tokenizer, docs[:5])                                  # no FIM: nothing to lay out


# ---- tokenizer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "def f(x):\n\treturn x ** 2  # square\n",
    "naïve = 'héllo wörld ✓ 日本語'\n",
    "    \n\n  trailing spaces   \r\n",
    "",
])
def test_tokenizer_round_trips_text(tokenizer, text):
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_tokenizer_reloads_with_autotokenizer_and_has_specials(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded.eos_token == EOS_TOKEN and loaded.pad_token_id == loaded.eos_token_id
    for tok in (FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX):
        assert loaded.convert_tokens_to_ids(tok) != loaded.unk_token_id or tok == loaded.unk_token
    text = _python_file(7)
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded) <= 400


def test_load_tokenizer_missing_path_names_the_setting(tmp_path):
    with pytest.raises(DatasetBuildError, match="model.path"):
        load_tokenizer(tmp_path / "nope")


# ---- the dataset on disk -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "training_dataset"
    summary = build_training_dataset(_records(120), out, tokenizer=None, vocab_size=500, seq_len=32,
                                     validation_fraction=0.15, holdout_fraction=0.1, fim_rate=0.3, seed=5,
                                     settings_hash="abc123")
    return out, summary


def test_built_dataset_loads_and_matches_summary(built):
    import datasets

    out, summary = built
    dsd = datasets.load_from_disk(str(out / "dataset"))
    assert set(dsd) == {"train", "validation"}
    for split in ("train", "validation"):
        ds = dsd[split]
        assert ds.num_rows == summary.sequences[split] > 0
        assert ds.column_names == ["input_ids", "attention_mask", "labels"]
        assert all(len(row) == 32 for row in ds["input_ids"][:5])
    assert summary.tokens["train"] - dsd["train"].num_rows * 32 < 32
    val = dsd["validation"].to_dict()
    masked = sum(m.count(0) for m in val["attention_mask"])
    assert dsd["validation"].num_rows * 32 - masked == summary.tokens["validation"]  # nothing lost
    assert all(lab == -100 for ids, m, labs in zip(val["input_ids"], val["attention_mask"], val["labels"])
               for mm, lab in zip(m, labs) if mm == 0)
    assert sum(summary.files_per_split.values()) == 120
    assert summary.files_per_language == {"javascript": 30, "python": 90}
    assert not list(out.parent.glob(".*tmp*"))  # the temp build dir was renamed away


def test_built_dataset_tokenizer_and_holdout(built):
    import polars as pl
    from transformers import AutoTokenizer

    out, summary = built
    tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"), local_files_only=True)
    assert len(tok) == summary.vocab_size
    holdout = pl.read_parquet(out / "holdout.parquet")
    assert holdout.height == summary.files_per_split["holdout"] > 0
    assert {"repo", "path", "content", "commit"} <= set(holdout.columns)
    # holdout files are never trained on: none of their (unique) function names appear in train text
    import datasets
    train_text = tok.decode([t for row in datasets.load_from_disk(str(out / "dataset"))["train"]["input_ids"]
                             for t in row])
    for content in holdout["content"]:
        assert content not in train_text


def test_manifest_lists_every_commit_and_verifies(built):
    out, summary = built
    manifest = json.loads((out / "manifest.json").read_text())
    assert {(s["repo"], s["commit"]) for s in manifest["sources"]} == \
        {(f"repo{i}", f"{i:040d}") for i in range(3)}
    assert sum(s["files"] for s in manifest["sources"]) == 120
    assert all(s["branch"] == "main" and s["bytes"] > 0 for s in manifest["sources"])
    assert manifest["settings_hash"] == "abc123"
    assert manifest["tokens"] == summary.tokens and manifest["tokenizer"]["vocab_size"] == summary.vocab_size
    assert manifest["manifest_hash"] == summary.manifest_hash and verify_manifest(manifest)
    manifest["tokens"]["train"] += 1
    assert not verify_manifest(manifest)


def test_rebuild_is_deterministic_and_replaces_atomically(built, tmp_path):
    out, summary = built
    again = build_training_dataset(_records(120), out, vocab_size=500, seq_len=32, validation_fraction=0.15,
                                   holdout_fraction=0.1, fim_rate=0.3, seed=5, settings_hash="abc123")
    assert again.manifest_hash == summary.manifest_hash and again.tokens == summary.tokens


@pytest.mark.parametrize("records,match", [
    ([], r"\(0 skipped\)"),
    ([{"repo": "r", "path": "a.py", "content": b"bytes"}, {"repo": "r", "path": "b.py", "content": None}],
     r"\(2 skipped\)"),
])
def test_build_rejects_input_without_text(records, match, tmp_path):
    with pytest.raises(DatasetBuildError, match=match):
        build_training_dataset(records, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_build_rejects_train_split_shorter_than_seq_len(tmp_path):
    with pytest.raises(DatasetBuildError, match="dataset.seq_len"):
        build_training_dataset(_records(4), tmp_path / "out", vocab_size=300, seq_len=4096)
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())


def test_build_skips_and_counts_records_without_text(tmp_path):
    records = _records(20) + [{"repo": "r", "path": "bin.dat", "content": b"\x00"}]
    summary = build_training_dataset(records, tmp_path / "out", vocab_size=300, seq_len=16)
    assert summary.extra["skipped_no_text_content"] == 1 and sum(summary.files_per_split.values()) == 20


def test_build_with_fim_on_tokenizer_without_fim_tokens_fails_clearly(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator([_python_file(i) for i in range(20)],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["</s>"], show_progress=False,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="</s>")
    with pytest.raises(DatasetBuildError, match="fim_rate"):
        build_training_dataset(_records(30), tmp_path / "out", tokenizer=tok, seq_len=16, fim_rate=1.0)
    summary = build_training_dataset(_records(30), tmp_path / "out", tokenizer=tok, seq_len=16, fim_rate=0.0)
    assert summary.vocab_size == len(tok) and Path(tmp_path / "out" / "tokenizer").is_dir()


@pytest.mark.parametrize("doc", [
    "def handler(request, limit=10):\n    items = [x * 2 for x in range(limit)]\n    return items\n",
    "  x=1\n\n\n    y_value_long = compute(x)  \nz\n",
    "one_identifier_without_newline",
    "\n\n   \n",
])
def test_fim_cuts_never_split_a_word_and_line_cuts_are_benchmark_spans(doc):
    from codellm_assets.core.data.fim import fim_split

    def word(c: str) -> bool:
        return c.isalnum() or c == "_"

    lines = 0
    for k in range(300):
        p, m, s = fim_split(doc, random.Random(k))
        assert p + m + s == doc
        for cut in (len(p), len(p) + len(m)):
            assert not (0 < cut < len(doc) and word(doc[cut - 1]) and word(doc[cut])), (k, p, m)
        if m.strip() and (p == "" or p.endswith("\n") or p.endswith(" ")) and (s == "" or s.startswith("\n")
                                                                             or m.endswith("\n")):
            lines += 1
    assert lines > 60 or not doc.strip() or "\n" not in doc.strip()   # about half are line cuts


def test_line_cuts_are_the_benchmarks_spans():
    """One line: first non-blank character to the line's end (single_line); several: whole lines with
    their indentation and last newline (multi_line, function_body) - fim_mining's spans."""
    from codellm_assets.core.data.fim import _line_cut

    doc = "def f(x):\n    y = x + 1\n\n    if y:\n        return y\n    return 0\n"
    starts = {i + 1 for i, c in enumerate(doc) if c == "\n"} | {0}
    kinds = set()
    for k in range(200):
        a, b = _line_cut(doc, random.Random(k))
        m = doc[a:b]
        if "\n" not in m:
            assert m == m.strip() and (b == len(doc) or doc[b] == "\n")
            kinds.add("one")
        else:
            assert a in starts and m.endswith("\n") and m.count("\n") >= 2 and m.strip()
            kinds.add("whole")
    assert kinds == {"one", "whole"}


def test_packed_shards_are_the_dataset_load_from_disk_reads_without_a_copy(tmp_path):
    import datasets

    from codellm_assets.core.data.packing import pack_to_arrow, write_dataset_dict

    docs = [list(range(i, i + 37)) for i in range(0, 4000, 37)]
    batches = [docs[i:i + 9] for i in range(0, len(docs), 9)]
    root = tmp_path / "dataset"
    train = pack_to_arrow(batches, root / "train", 16, 0, pad=False, max_shard_bytes=16 * 9 * 40)
    empty = pack_to_arrow([], root / "validation", 16, 0, pad=True)
    assert len(train.files) > 3 and [f.name for f in train.files][-1] == f"data-{len(train.files) - 1:05d}-of-" \
        f"{len(train.files):05d}.arrow" and empty.sequences == 0 and len(empty.files) == 1
    write_dataset_dict(root, {"train": train, "validation": empty})
    dsd = datasets.load_from_disk(str(root))
    flat = [t for d in docs for t in (*d, 0)]
    assert dsd["train"].num_rows == train.sequences == len(flat) // 16 and dsd["validation"].num_rows == 0
    assert [t for row in dsd["train"]["input_ids"] for t in row] == flat[:train.sequences * 16]
    assert dsd["train"].features == datasets.Dataset.from_file(str(train.files[0])).features
    assert not list(root.rglob(".part-*"))
    (root / "train" / "state.json").write_text((root / "train" / "state.json").read_text()
                                               .replace(train.files[0].name, "missing.arrow"))
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(root))
