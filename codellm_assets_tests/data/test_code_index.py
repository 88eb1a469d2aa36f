"""The BM25 code index: a cross-file task's context holds the defining file's chunk, within the budget, laid
out like CrossCodeEval; save/load is atomic; the cursor's own file is never retrieved."""

from __future__ import annotations

import pytest

from codellm_assets.core.data.code_index import CodeIndex, CodeIndexError, chunk_file, chunk_tokens, code_tokens
from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.evaluation.repo_bench import mine_repo_tasks, task_prompt
from codellm_assets.core.serving.backends.base import FimTokens

LEDGER = ("class LedgerClient:\n    def post_entry(self, account, amount):\n"
          "        return self.book.write(account, amount)\n\n\ndef reconcile_ledger(client, entries):\n"
          "    return [client.post_entry(e.account, e.amount) for e in entries]\n")
NOISE = {f"misc/util{i}.py": "".join(f"def helper_{i}_{j}(x):\n    return x + {j}\n\n" for j in range(15))
         for i in range(4)}
USER = ("from billing.ledger import reconcile_ledger\n\n\ndef close_month(client, entries):\n"
        "    totals = reconcile_ledger(client, entries)\n    return sum(totals)\n")


@pytest.fixture
def company(make_git_repo):
    repo = make_git_repo("acme", {"billing/ledger.py": LEDGER, "app/close.py": USER, **NOISE})
    scan = scan_branch(repo, "HEAD", repo_name="acme")
    return scan.commit, scan.records


def test_tokens_split_identifiers():
    assert {"ledgerclient", "ledger", "client", "post_entry", "post", "entry"} <= set(code_tokens(
        "LedgerClient.post_entry"))
    assert code_tokens("a = 10 + b") == ["10"]   # one-letter names carry nothing for retrieval


def test_chunk_tokens_from_lines_are_each_chunks_own_tokens():
    content = NOISE["misc/util1.py"] + "\nclass LedgerClient:  # post_entry\n\n\n" + LEDGER + "x = 12 + y\n"
    chunks = chunk_file("r", "f.py", content, window=7, stride=3)
    assert chunk_tokens(content, chunks) == [code_tokens(c.text) for c in chunks]


def test_chunks_cover_the_file_with_overlap():
    content = "\n".join(f"line {i}" for i in range(45))
    chunks = chunk_file("r", "f.py", content, window=20, stride=10)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 20), (11, 30), (21, 40), (26, 45)]
    assert chunk_file("r", "empty.py", "\n\n") == []


def test_cross_file_task_retrieves_the_defining_chunk(company):
    commit, records = company
    index = CodeIndex.build(records, repo="acme", commit=commit)
    task = next(t for t in mine_repo_tasks(records, [r for r in records if r["path"] == "app/close.py"])
                if t.kind == "single_line" and t.cross_file)
    assert task.defining_paths == ["billing/ledger.py"] and "reconcile_ledger" in task.reference
    hits = index.search(task.prefix[-400:] + task.suffix[:100], k=3, exclude_paths=[task.path])
    assert hits[0][0].path == "billing/ledger.py" and "def reconcile_ledger" in hits[0][0].text
    ctx = index.context(task.prefix, task.suffix, path=task.path, language="python", budget=1200)
    assert ctx.startswith("# Here are some relevant code fragments from other files of the repo:\n")
    assert "# the below code fragment can be found in:\n# billing/ledger.py\n" in ctx
    assert "# def reconcile_ledger(client, entries):" in ctx and len(ctx) <= 1200
    prompt = task_prompt(task, FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), index=index, budget=1200)
    assert prompt.startswith("<fim_prefix>" + ctx) and prompt.endswith("<fim_middle>")
    assert prompt.index("billing/ledger.py") < prompt.index("def close_month")


def test_budget_and_own_file(company):
    commit, records = company
    index = CodeIndex.build(records, repo="acme", commit=commit)
    prefix = "totals = reconcile_ledger(client, entries)\n"
    assert index.context(prefix, budget=50) == ""                       # no snippet fits: nothing, not half
    words = index.context(prefix, budget=60, count=lambda s: len(s.split()), language="go")
    assert words.startswith("// Here are") and len(words.split()) <= 60
    assert all(c.path != "billing/ledger.py" for c, _ in index.search(prefix, exclude_paths=["billing/ledger.py"]))
    assert index.search("zzz_nothing_matches") == []


def test_save_load_is_atomic_and_checked(company, tmp_path):
    commit, records = company
    target = tmp_path / "indexes" / "acme"
    old = CodeIndex.build([r for r in records if r["path"].startswith("misc/")], repo="acme", commit="old")
    old.save(target)
    new = CodeIndex.build(records, repo="acme", commit=commit)
    new.save(target)                                                    # replaces the old one whole
    loaded = CodeIndex.load(target)
    assert loaded.commit == commit and loaded.chunks == new.chunks
    q = "reconcile_ledger(client"
    assert [c for c, _ in loaded.search(q)] == [c for c, _ in new.search(q)]
    assert [p.name for p in target.parent.iterdir()] == ["acme"]        # no temp or old dirs left
    with pytest.raises(CodeIndexError, match="build it with"):
        CodeIndex.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="no code to index"):
        CodeIndex.build(records, repo="other", commit=commit)


def test_definitions_of_names_near_the_cursor_come_first(company, tmp_path):
    commit, records = company
    # A sibling that looks like the cursor's file wins on BM25; the definition still leads the context.
    sibling = {"repo": "acme", "path": "app/close_q2.py", "language": "python", "content": USER + USER}
    index = CodeIndex.build(records + [sibling], repo="acme", commit=commit)
    prefix = "def close_year(client, entries):\n    totals = reconcile_ledger(client, entries)\n    "
    assert index.search(prefix, k=1, exclude_paths=["app/close.py"])[0][0].path == "app/close_q2.py"
    first = index.definition_chunks(prefix, path="app/close.py")
    assert [c.path for c in first] == ["billing/ledger.py"] and "def reconcile_ledger" in first[0].text
    ctx = index.context(prefix, path="app/close.py", language="python", budget=4000)
    assert ctx.index("billing/ledger.py") < ctx.index("app/close_q2.py")
    assert index.definition_chunks(prefix, path="billing/ledger.py") == []    # the cursor's file defines it
    index.save(tmp_path / "ix")
    assert CodeIndex.load(tmp_path / "ix").definition_chunks(prefix, path="app/close.py") == first


def test_go_definitions(make_git_repo):
    repo = make_git_repo("gorepo", {
        "vault/vault.go": "package vault\n\ntype QuorbleVault struct {\n\tRegion string\n}\n\n"
                          "func OpenQuorbleVault(region string) *QuorbleVault {\n\treturn &QuorbleVault{region}\n}\n",
        "cmd/main.go": "package main\n\nfunc main() {\n\tv := vault.OpenQuorbleVault(\"north\")\n\t_ = v\n}\n"})
    scan = scan_branch(repo, "HEAD", repo_name="gorepo")
    index = CodeIndex.build(scan.records, repo="gorepo", commit=scan.commit)
    assert index.definitions["OpenQuorbleVault"] == {"vault/vault.go": 7}
    ctx = index.context("func main() {\n\tv := vault.OpenQuorbleVault(", path="cmd/main.go", language="go")
    assert ctx.startswith("// Here are") and "// vault/vault.go\n" in ctx


def _many_records(n: int = 30) -> list[dict]:
    return [{"repo": "acme", "path": f"svc/s{i:02d}.py", "content": USER.replace("close_month", f"close_{i}")
             + "".join(f"def step_{i}_{j}(entries):\n    return reconcile_ledger(None, entries[{j}:])\n\n"
                       for j in range(i % 7))} for i in range(n)]


def test_search_ranks_as_bm25s_does_and_breaks_ties_by_chunk_order():
    index = CodeIndex.build(_many_records(), repo="acme", commit="c")
    query = "totals = reconcile_ledger(client, entries)\n    return sum(totals)"
    assert len(index.shards) == 1
    ids, scores = index.retrievers[0].retrieve([code_tokens(query)], k=len(index.chunks), show_progress=False)
    expected = sorted(((float(s), int(i)) for i, s in zip(ids[0], scores[0]) if s > 0
                       and index.chunks[int(i)].path != "svc/s03.py"), key=lambda t: (-t[0], t[1]))
    for k in (1, 5, 12, 1000):
        hits = index.search(query, k=k, exclude_paths=["svc/s03.py"])
        assert [(s, index.chunks.index(c)) for c, s in hits] == expected[:k]
    tied = [s for s, _ in expected].count(expected[0][0])
    assert tied > 1                      # the copies tie: the earlier chunk comes first, every time
    assert index.search(query, k=0) == [] and index.search("zzz qqq") == []


def test_line_counter_renders_what_exact_counting_renders(tmp_path):
    from codellm_assets.core.data.context_render import LineCounter, render_context
    from codellm_assets.core.data.encoding import token_counter
    from codellm_assets.core.data.tokenization import train_bpe_tokenizer

    records = _many_records()
    for r in records[::3]:       # blank lines and trailing whitespace: where a sum of lines could be off
        r["content"] = r["content"].replace("\n\n", "\n   \n\t\n").replace("):\n", "):  \n")
    tok = train_bpe_tokenizer([r["content"] for r in records] * 2, 400, tmp_path / "tok")
    counter = token_counter(tok)
    exact = counter.count
    assert counter.sums_exact                        # this project's byte-level BPE
    index = CodeIndex.build(records, repo="acme", commit="c")
    chunks = [c for c, _ in index.search("reconcile_ledger(client, entries)", k=6)]
    batches: list[int] = []
    counted = LineCounter(exact, lambda texts: batches.append(len(texts)) or [exact(t) for t in texts])
    for budget in (20, 60, 90, 150, 400, 5000):
        want = render_context(chunks, language="python", budget=budget, count=exact)
        assert render_context(chunks, language="python", budget=budget, count=counted) == want
        assert render_context(chunks, language="python", budget=budget, count=counter) == want
        assert exact(want) <= budget and " \n" not in want and "\t\n" not in want
        # the claim sums_exact makes: the block's tokens are its lines' tokens
        assert exact(want) == sum(counter.lines(want.splitlines(keepends=True)))
    assert counted.exact_fallbacks == 0 and sum(batches) < 200     # each distinct line counted once
    # why rendered lines lose their trailing whitespace: " \n" then "#" is split " ", "\n" in a block but
    # kept whole at the end of a lone line, so the sum would fall short
    spaced = train_bpe_tokenizer(["def f(x):  \n    y = 1   \n\n   \n    return y \n" * 50] * 20, 400,
                                 tmp_path / "spaced")
    raw = "# def f(x):  \n#     y = 1   \n# \n#     return y \n"
    spaced_count = token_counter(spaced)
    assert spaced_count(raw) > sum(spaced_count.lines(raw.splitlines(keepends=True)))
    stripped = "".join(line.rstrip() + "\n" for line in raw.splitlines())
    assert spaced_count(stripped) == sum(spaced_count.lines(stripped.splitlines(keepends=True)))
    bounded = LineCounter(exact)
    bounded.MAX_LINES = 5                                           # full: it starts over, same counts
    assert bounded.lines(["# a\n"] * 3 + [f"# {i}\n" for i in range(9)]) == counted.lines(
        ["# a\n"] * 3 + [f"# {i}\n" for i in range(9)])
    assert bounded.lines(["# a\n", "# b\n"]) == [exact("# a\n"), exact("# b\n")]
    # a counter whose line sums fall short (a tokenizer merging across lines): the exact way, within budget
    short = LineCounter(exact, lambda texts: [max(exact(t) // 2, 0) for t in texts])
    for budget in (60, 150):
        assert render_context(chunks, language="python", budget=budget, count=short) == \
            render_context(chunks, language="python", budget=budget, count=exact)
    assert short.exact_fallbacks >= 1              # at least one block was measured again


def test_only_a_gpt2_style_byte_level_pre_tokenizer_has_exact_line_sums():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    from codellm_assets.core.data.encoding import splits_before_each_line

    def backend(pre, norm=None) -> Tokenizer:
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre
        if norm is not None:
            t.normalizer = norm
        return t

    assert splits_before_each_line(backend(pre_tokenizers.ByteLevel(add_prefix_space=False)))
    assert not splits_before_each_line(backend(pre_tokenizers.ByteLevel(add_prefix_space=True)))
    assert not splits_before_each_line(backend(pre_tokenizers.Metaspace()))            # SentencePiece style
    assert not splits_before_each_line(backend(pre_tokenizers.ByteLevel(add_prefix_space=False),
                                               normalizers.NFKC()))


def test_each_files_definitions_are_parsed_once_across_index_builds(company, tmp_path, monkeypatch):
    from codellm_assets.core.data import code_symbols

    commit, records = company
    parsed: list[str] = []
    real_parse = code_symbols.parse
    monkeypatch.setattr(code_symbols, "parse", lambda text, lang: parsed.append(text) or real_parse(text, lang))
    plain = CodeIndex.build(records, repo="acme", commit=commit)
    every_file = len(parsed)
    parsed.clear()
    cached = CodeIndex.build(records, repo="acme", commit=commit, cache_root=tmp_path, compact_cache=True)
    assert len(parsed) == every_file and cached.definitions == plain.definitions    # a cold cache: all
    parsed.clear()
    grown = LEDGER + "\n\ndef audit_ledger(x):\n    return x\n"
    changed = [dict(r, content=grown) if r["path"] == "billing/ledger.py" else r for r in records]
    again = CodeIndex.build(changed, repo="acme", commit=commit, cache_root=tmp_path)
    assert parsed == [grown]                                                  # only the changed file
    assert again.definitions["audit_ledger"] == {"billing/ledger.py": grown.splitlines().index(
        "def audit_ledger(x):") + 1}
    assert again.definitions == CodeIndex.build(changed, repo="acme", commit=commit).definitions
    parsed.clear()
    CodeIndex.build(changed[:3], repo="acme", commit=commit, cache_root=tmp_path)   # a subset (the train split)
    assert parsed == []
