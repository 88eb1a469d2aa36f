"""A big repo's code index in shards: whole files in path order, cut where the paths say (an edit moves no far
boundary), a search near a path scores that path's shard only, and the context key of a document changes
exactly when its shard or a definition it uses does."""

from __future__ import annotations

import json

import bm25s

from codellm_assets.core.data.code_index import (
    MAX_DEFINING_FILES,
    CodeIndex,
    IndexScope,
    code_tokens,
    shard_starts,
)

LEDGER = ("class LedgerClient:\n    def post_entry(self, account, amount):\n"
          "        return self.book.write(account, amount)\n\n\ndef reconcile_ledger(client, entries):\n"
          "    return [client.post_entry(e.account, e.amount) for e in entries]\n")
QUERY = "totals = reconcile_ledger(client, entries)\n    return sum(totals)"


def _service(i: int) -> str:
    steps = "".join(f"def step_{i}_{j}(entries):\n    return reconcile_ledger(None, entries[{j}:])\n\n"
                    for j in range(2 + i % 5))
    return (f"from billing.ledger import reconcile_ledger\n\n\ndef close_{i}(client, entries):\n"
            f"    totals = reconcile_ledger(client, entries)\n    return sum(totals)\n\n\n{steps}")


def _repo(**changed: str) -> list[dict]:
    files = {"billing/ledger.py": LEDGER, **{f"svc/s{i:02d}.py": _service(i) for i in range(40)},
             "tools/lonely.py": "def lonely(x):\n    return x * 2\n" * 3}
    files.update(changed)
    return [{"repo": "acme", "path": p, "language": "python", "content": c} for p, c in files.items()]


def test_shards_hold_whole_files_within_the_bound_and_an_edit_moves_no_far_boundary():
    sizes = [(f"pkg{i // 25}/mod{i:03d}.py", 3 + (i * 7) % 11) for i in range(600)]
    starts = shard_starts(sizes, 64)
    ends = [*starts[1:], len(sizes)]
    assert starts[0] == 0 and starts == sorted(set(starts)) and len(starts) > 20
    assert all(sum(n for _, n in sizes[a:b]) <= 64 for a, b in zip(starts, ends))
    assert all(sum(n for _, n in sizes[a:b]) >= 32 for a, b in list(zip(starts, ends))[:-1])   # half full
    grown = list(sizes)
    grown[300] = (grown[300][0], grown[300][1] + 25)        # one file gets 25 chunks longer
    after = shard_starts(grown, 64)
    assert [s for s in after if s < 300] == [s for s in starts if s < 300]        # nothing before it moves
    moved = set(starts) ^ set(after)
    assert len(moved) <= 4 and all(300 <= s < 400 for s in moved)                 # and it resynchronises
    assert shard_starts([("a.py", 500)], 64) == [0]          # a file bigger than a shard is a shard alone


def test_a_search_near_a_path_scores_its_shard_and_without_a_path_every_shard(tmp_path):
    index = CodeIndex.build(_repo(), repo="acme", commit="c", shard_chunks=16)
    assert len(index.shards) > 3
    assert [s.start for s in index.shards] == [0, *(s.end for s in index.shards[:-1])]
    assert index.shards[-1].end == len(index.chunks)
    for s in index.shards:                                   # whole files: no path in two shards
        inside = {c.path for c in index.chunks[s.start:s.end]}
        assert not inside & {c.path for c in index.chunks if not s.start <= index.chunks.index(c) < s.end}
    near = "svc/s20.py"
    shard = index.shards[index.shard_of(near)]
    hits = index.search(QUERY, k=5, exclude_paths=[near], near=near)
    assert hits and all(shard.start <= index.chunks.index(c) < shard.end and c.path != near for c, _ in hits)
    # within its shard the ranking is that shard's own BM25
    retriever = index.retrievers[index.shard_of(near)]
    ids, scores = retriever.retrieve([code_tokens(QUERY)], k=shard.end - shard.start, show_progress=False)
    best = sorted(((float(s), int(i) + shard.start) for i, s in zip(ids[0], scores[0])
                   if s > 0 and index.chunks[int(i) + shard.start].path != near), key=lambda t: (-t[0], t[1]))
    assert [(s, index.chunks.index(c)) for c, s in hits] == best[:5]
    everywhere = index.search(QUERY, k=60)
    assert len({index.shard_of(c.path) for c, _ in everywhere}) > 1
    assert [s for _, s in everywhere] == sorted((s for _, s in everywhere), reverse=True)
    assert index.shard_of("svc/s20b.py") == index.shard_of("svc/s20.py")   # a new file: where it sorts
    assert index.shard_of("aaa/first.py") == 0 and index.shard_of("zzz.py") == len(index.shards) - 1
    index.save(tmp_path / "ix")
    loaded = CodeIndex.load(tmp_path / "ix")
    assert loaded.shards == index.shards and loaded.search(QUERY, k=5, exclude_paths=[near], near=near) == hits
    ctx = loaded.context("def close_99(client, entries):\n    totals = reconcile_ledger(", path=near,
                         language="python", budget=3000)
    assert "# billing/ledger.py\n" in ctx           # the definition comes from anywhere in the repo


def test_an_index_saved_before_shards_loads_as_one_shard(tmp_path):
    index = CodeIndex.build(_repo(), repo="acme", commit="c")
    assert len(index.shards) == 1
    old = tmp_path / "old"
    index.save(old)
    meta = json.loads((old / "chunks.json").read_text())
    meta["definitions"] = json.loads((old / "keys.json").read_text())["definitions"]   # where they were
    (old / "chunks.json").write_text(json.dumps(meta))
    (old / "keys.json").unlink()
    bm25s.BM25.load(str(old / "shard-000")).save(str(old))        # the BM25 at the top, as it was written
    loaded = CodeIndex.load(old)
    assert len(loaded.shards) == 1 and loaded.search(QUERY, k=7) == index.search(QUERY, k=7)
    assert loaded.definitions == index.definitions and IndexScope.load(old).definitions == index.definitions


def test_the_context_key_changes_for_the_edited_shard_and_for_users_of_a_moved_definition():
    before = _repo()
    index = CodeIndex.build(before, repo="acme", commit="c", shard_chunks=16)
    keys = {r["path"]: index.context_key(r["path"], r["content"]) for r in before}
    assert len(set(keys.values())) > 3

    edited = _repo(**{"svc/s33.py": _service(33) + "\n\ndef audit_33(x):\n    return x\n"})
    after = CodeIndex.build(edited, repo="acme", commit="c2", shard_chunks=16)
    assert [s.first_path for s in after.shards] == [s.first_path for s in index.shards]
    shard = after.shard_of("svc/s33.py")
    changed = {r["path"] for r in edited if after.context_key(r["path"], r["content"]) != keys[r["path"]]}
    assert changed == {r["path"] for r in edited if after.shard_of(r["path"]) == shard}
    assert len(changed) < len(edited) / 2

    moved = _repo(**{"billing/ledger.py": "# the ledger\n\n" + LEDGER})     # reconcile_ledger two lines down
    after = CodeIndex.build(moved, repo="acme", commit="c3", shard_chunks=16)
    changed = {r["path"] for r in moved if after.context_key(r["path"], r["content"]) != keys[r["path"]]}
    assert {f"svc/s{i:02d}.py" for i in range(40)} <= changed        # every user of the name
    assert "tools/lonely.py" not in changed                             # another shard, no such name


def test_a_name_more_files_define_than_the_cap_is_ambiguous_no_definition_and_no_key_part():
    def index_of(changed: dict[str, str] | None = None, copies: int = MAX_DEFINING_FILES + 1) -> CodeIndex:
        files = {f"pkg/m{i}.py": f"def run(x):\n    return x + {i}\n" for i in range(copies)}
        files["pkg/solo.py"] = "def settle(x):\n    return x\n"
        files["aaa/filler.py"] = "def filler(x):\n    return x\n"
        files.update(changed or {})
        return CodeIndex.build([{"repo": "acme", "path": p, "language": "python", "content": c}
                                for p, c in files.items()],
                               repo="acme", commit="c", shard_chunks=1)        # a shard per file

    index = index_of()
    assert len(index.definitions["run"]) == MAX_DEFINING_FILES + 1
    assert index.definition_chunks("y = run(", path="app.py") == []
    assert [c.path for c in index.definition_chunks("y = settle(", path="app.py")] == ["pkg/solo.py"]
    assert len(index_of(copies=MAX_DEFINING_FILES).definition_chunks("y = run(", path="app.py")) == 3
    # the key covers what the lookup can use: an edit to one of the ambiguous definitions is not part of it
    doc = "from pkg import run, settle\n\nrun(settle(1))\n"
    moved_run = index_of({"pkg/m0.py": "\n\ndef run(x):\n    return x\n"})
    moved_settle = index_of({"pkg/solo.py": "\n\ndef settle(x):\n    return x\n"})
    assert moved_run.definitions["run"] != index.definitions["run"]
    assert index.shards[index.shard_of("aaa/app.py")].first_path == "aaa/filler.py"     # neither edit's shard
    base = index.context_key("aaa/app.py", doc)
    assert base == moved_run.context_key("aaa/app.py", doc) != moved_settle.context_key("aaa/app.py", doc)


def test_a_rebuild_after_a_one_file_edit_reindexes_only_that_files_shard(tmp_path, monkeypatch):
    from codellm_assets.core.data import code_index
    from codellm_assets.core.data.code_index_store import build_repo_indexes, load_current

    tokenized: list[str] = []
    real = code_index.chunk_tokens
    monkeypatch.setattr(code_index, "chunk_tokens", lambda content, chunks: tokenized.append(chunks[0].path)
                        or real(content, chunks))
    first = build_repo_indexes(_repo(), tmp_path, shard_chunks=16)
    assert first.repos[0].rebuilt and first.repos[0].reused_shards == 0 and first.repos[0].shards > 3
    assert len(tokenized) == len(_repo())
    edited = _repo(**{"svc/s33.py": _service(33) + "\n\ndef audit_33(x):\n    return x\n"})
    tokenized.clear()
    second = build_repo_indexes(edited, tmp_path, shard_chunks=16).repos[0]
    index = load_current(tmp_path)["acme"]
    same_shard = [c.path for c in index.chunks if index.shard_of(c.path) == index.shard_of("svc/s33.py")]
    assert second.rebuilt and second.reused_shards == second.shards - 1
    assert sorted(tokenized) == sorted(set(same_shard))             # only the edited file's shard again
    fresh = CodeIndex.build(edited, repo="acme", commit="x", shard_chunks=16)
    assert index.shards == fresh.shards and index.chunks == fresh.chunks
    for near in ("svc/s05.py", "svc/s33.py", "tools/lonely.py", None):
        assert index.search(QUERY, k=6, near=near) == fresh.search(QUERY, k=6, near=near)
