"""Repository context in FIM training examples: the block the serving path retrieves sits right before the
prefix's code, from the repo's other train files, inside the window; the draw is by content; the token
cache re-encodes a context document when its repo's train files change, and only then."""

from __future__ import annotations

import gc

import pytest

from codellm_assets.core.data.code_index import CodeIndex
from codellm_assets.core.data.context_render import rendered_chunks
from codellm_assets.core.data.encoding import encode_documents, token_counter, token_encoder
from codellm_assets.core.data.fim import fim_token_ids
from codellm_assets.core.data.fim_context import RepoContextSampler
from codellm_assets.core.data.tokenization import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, train_bpe_tokenizer
from codellm_assets.settings import DatasetSettings

VAULT = ("class LedgerVault:\n    def __init__(self, region):\n        self.region = region\n\n"
         "    def stamp_quorble(self, entry, tariff=None):\n        return {**entry, 'region': self.region}\n")


def _service(i: int) -> str:
    return (f'"""Service {i}."""\n\nfrom quillon.vault import LedgerVault\n\n\n'
            f"def send_{i}(entry):\n    vault = LedgerVault('north')\n"
            f"    receipt = vault.stamp_quorble(entry, tariff=None)\n    return receipt\n\n\n"
            f"def count_{i}(items):\n    total = 0\n    for item in items:\n        total += item\n"
            f"    return total * {i}\n")


def _records(extra: str = "") -> list[dict]:
    recs = [{"repo": "acme", "path": "quillon/vault.py", "language": "python", "content": VAULT + extra}]
    recs += [{"repo": "acme", "path": f"svc/s{i}.py", "language": "python", "content": _service(i)}
             for i in range(12)]
    return recs + [{"repo": "solo", "path": "only.py", "language": "python", "content": _service(99)}]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_bpe_tokenizer([r["content"] for r in _records()] * 3, 500, tmp_path_factory.mktemp("tok"))


def test_the_context_goes_right_before_the_prefix_in_both_layouts():
    pre, mid, suf, ctx, fim = [1], [2], [3], [9, 9], (100, 101, 102)   # fim ids: prefix, middle, suffix
    assert fim_token_ids(pre, mid, suf, fim, spm=True, ctx=ctx) == [100, 102, 3, 101, 9, 9, 1, 2]
    assert fim_token_ids(pre, mid, suf, fim, spm=False, ctx=ctx) == [100, 9, 9, 1, 102, 3, 101, 2]
    assert fim_token_ids(pre, mid, suf, fim, spm=True) == [100, 102, 3, 101, 1, 2]     # none: as before


def test_context_examples_carry_another_files_definition_within_the_window(tokenizer):
    recs = _records()
    sampler = RepoContextSampler.build(recs, rate=1.0, budget=300, seed=0)
    assert sorted(sampler.indexes) == ["acme", "solo"]
    count = token_counter(tokenizer)
    services = [r for r in recs if r["path"].startswith("svc/")]
    contexts = [sampler.for_record(r, count) for r in services]
    ids = encode_documents(tokenizer, [r["content"] for r in services], fim_rate=1.0, seed=0, fim_window=640,
                           fim_spm_rate=1.0, contexts=contexts, context_tokens=300)
    texts = [tokenizer.decode(x) for x in ids]
    with_context = [(r, t) for r, t in zip(services, texts) if "fragments from other files" in t]
    assert len(with_context) >= len(services) // 2         # a cut whose cursor names nothing may get none
    for record, text in with_context:
        assert text.index(FIM_MIDDLE) < text.index("# Here are")   # SPM: after <fim_middle>, before the code
        assert f"# {record['path']}\n" not in text                 # never the document's own file
    assert sum("# quillon/vault.py\n" in t for _, t in with_context) >= len(with_context) // 2
    for one, text in zip(ids, texts):
        assert len(one) <= 640 or text.count(FIM_PREFIX) > 1        # a longer one is several whole pieces
    blocks = [c("", "vault.stamp_quorble(entry") for c in contexts]
    assert all(count(b) <= 300 for b in blocks) and all(rendered_chunks(b) >= 1 for b in blocks)


def test_the_draw_is_by_content_and_rate_zero_or_no_budget_builds_nothing():
    recs = _records()
    half = RepoContextSampler.build(recs, rate=0.5, budget=100, seed=0)
    drawn = [half.wants(r) for r in recs]
    assert 0 < sum(drawn) < len(recs)
    assert [half.wants(r) for r in reversed(recs)] == drawn[::-1]            # order does not matter
    assert [half.reseeded(1).wants(r) for r in recs] != drawn                 # another pass, another draw
    assert half.for_record({"repo": "elsewhere", "content": "x"}, len) is None
    assert RepoContextSampler.build(recs, rate=0.0, budget=100) is None
    assert RepoContextSampler.build(recs, rate=1.0, budget=0) is None
    assert RepoContextSampler.build(recs, rate=1.0, budget=100, repos=["nobody"]) is None
    info = half.info(recs)
    assert info["context_repos"] == ["acme", "solo"] and sum(info["context_documents"].values()) == sum(drawn)


def test_the_cache_re_encodes_a_repos_context_documents_when_its_train_files_change(tokenizer, tmp_path):
    def encoded(recs: list[dict]) -> tuple[list[list[int]], int]:
        sampler = RepoContextSampler.build(recs, rate=1.0, budget=100, seed=0)
        enc = token_encoder(tokenizer, tmp_path / "tokenizer", tmp_path / "cache", fim_rate=1.0, seed=0,
                             fim_tokens=(FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX), fim_window=256, fim_spm_rate=1.0,
                             context=sampler)
        ids = [list(map(int, x)) for batch in enc.batches(recs, fim=True) for x in batch]
        return ids, enc.stats.computed

    tokenizer.save_pretrained(tmp_path / "tokenizer")
    first, computed = encoded(_records())
    assert computed == len(_records())
    again, computed = encoded(_records())
    assert again == first and computed == 0                                       # nothing changed
    changed, computed = encoded(_records(extra="\n\ndef audit(vault):\n    return vault.region\n"))
    assert computed == len(_records()) - 1          # acme's 13 documents again (the index changed); solo reused
    assert changed[-1] == first[-1]


def test_in_a_sharded_index_a_one_file_edit_re_encodes_only_its_shards_context_documents(tokenizer, tmp_path):
    def encoded(recs: list[dict]) -> tuple[RepoContextSampler, int]:
        sampler = RepoContextSampler.build(recs, rate=1.0, budget=100, seed=0, shard_chunks=4)
        enc = token_encoder(tokenizer, tmp_path / "tokenizer", tmp_path / "cache", fim_rate=1.0, seed=0,
                             fim_tokens=(FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX), fim_window=256, fim_spm_rate=1.0,
                             context=sampler)
        for _ in enc.batches(recs, fim=True):
            pass
        return sampler, enc.stats.computed

    tokenizer.save_pretrained(tmp_path / "tokenizer")
    recs = _records()
    sampler, computed = encoded(recs)
    index = sampler.indexes["acme"]
    assert computed == len(recs) and len(index.shards) >= 3
    edited = [{**r, "content": r["content"] + "\n\ndef tally(xs):\n    return len(xs)\n"}
              if r["path"] == "svc/s5.py" else r for r in recs]
    _, computed = encoded(edited)
    same_shard = [r for r in recs if r["repo"] == "acme" and index.shard_of(r["path"]) == index.shard_of("svc/s5.py")]
    assert computed == len(same_shard) < len(recs) - 1       # that shard's documents, the edited one among them


def test_settings_need_fim_and_a_budget_that_leaves_room_for_code():
    assert DatasetSettings(fim_rate=0.5, context_rate=0.5, context_tokens=192, seq_len=512).context_tokens == 192
    with pytest.raises(ValueError, match="context_tokens > 0"):
        DatasetSettings(fim_rate=0.5, context_rate=0.5)
    with pytest.raises(ValueError, match="fim_rate > 0"):
        DatasetSettings(fim_rate=0.0, context_rate=0.5, context_tokens=64)
    with pytest.raises(ValueError, match="at most 256"):
        DatasetSettings(fim_rate=0.5, context_rate=0.5, context_tokens=300, seq_len=512)


def test_a_small_budget_keeps_the_head_of_a_snippet_never_less_than_three_lines():
    recs = _records()
    index = CodeIndex.build([r for r in recs if r["repo"] == "acme"], repo="acme", commit="c")
    whole = index.context("vault.stamp_quorble(entry", path="svc/s0.py", language="python", budget=4000)
    small = index.context("vault.stamp_quorble(entry", path="svc/s0.py", language="python", budget=380)
    assert len(small) <= 380 < len(whole) and rendered_chunks(small) == 1
    body = [line for line in small.splitlines() if not line.startswith(("# ---", "# Here", "# the below"))][1:]
    assert len(body) >= 3 and "\n".join(body) in whole                        # the snippet's first lines
    assert index.context("vault.stamp_quorble(entry", path="svc/s0.py", language="python", budget=330) == ""


def test_with_a_cache_dir_an_unchanged_repos_index_is_loaded_and_a_changed_one_rebuilt(tmp_path, monkeypatch):
    built: list[str] = []
    real_build = CodeIndex.build.__func__

    def counting_build(cls, files, *, repo, commit, **kw):
        built.append(repo)
        return real_build(cls, files, repo=repo, commit=commit, **kw)

    monkeypatch.setattr(CodeIndex, "build", classmethod(counting_build))
    first = RepoContextSampler.build(_records(), rate=1.0, budget=600, seed=0, cache_dir=tmp_path)
    assert sorted(built) == ["acme", "solo"]
    again = RepoContextSampler.build(_records(), rate=1.0, budget=600, seed=0, cache_dir=tmp_path)
    assert sorted(built) == ["acme", "solo"] and again.repo_digests == first.repo_digests     # nothing rebuilt
    changed = RepoContextSampler.build(_records("\n\ndef audit():\n    return 1\n"), rate=1.0, budget=600,
                                       seed=0, cache_dir=tmp_path)
    assert sorted(built) == ["acme", "acme", "solo"]                                       # only acme again
    assert changed.repo_digests["solo"] == first.repo_digests["solo"]
    assert changed.repo_digests["acme"] != first.repo_digests["acme"]
    # the loaded index gives the context the in-memory one gives, and the same cache keys
    in_memory = RepoContextSampler.build(_records(), rate=1.0, budget=600, seed=0)
    record = _records()[3]
    assert in_memory.repo_digests == again.repo_digests and in_memory.key(record) == again.key(record)
    cut = ("def send_2(entry):\n    vault = LedgerVault('north')\n", "    return receipt\n")
    assert again.for_record(record, len)(*cut) == in_memory.for_record(record, len)(*cut) != ""


def test_a_cached_sampler_holds_one_repos_index_at_a_time(tmp_path):
    records = _records() + [{**r, "repo": "beta"} for r in _records()[:5]]
    sampler = RepoContextSampler.build(records, rate=1.0, budget=600, seed=0, cache_dir=tmp_path)
    assert sorted(sampler.indexes) == ["acme", "beta", "solo"] and "nope" not in sampler.indexes
    assert sampler.indexes.loads == 0                      # building them loads none back
    by_repo = sorted(records, key=lambda r: (r["repo"], r["path"]))   # the train split's order
    keys = [sampler.key(r) for r in by_repo]
    assert sampler.indexes.loads == 0 and all(keys)        # cache keys read each repo's scope, no index
    blocks = [sampler.for_record(r, len) for r in by_repo]
    assert sampler.indexes.loads == 3                      # each repo's index read once, in turn
    def alive() -> int:
        gc.collect()
        return sum(isinstance(o, CodeIndex) for o in gc.get_objects())

    while_blocks = alive()                                 # each block holds its repo's index
    del blocks
    assert alive() == 1 < while_blocks                     # then only the last one used
