"""The repo-level FIM benchmark: task mining per language and kind on real git repos, cross-file labels that
depend on the other file, the time split, stratified sampling, FIM prompts and CrossCodeEval's metrics."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.data.holdout import dates_for, file_commit_dates, split_holdout
from codellm_assets.core.evaluation.fim_mining import KINDS, supported_languages
from codellm_assets.core.evaluation.repo_bench import (
    build_fim_prompt,
    markdown_table,
    mine_repo_tasks,
    paired_difference,
    sample_tasks,
    score,
    score_all,
    summarize,
    task_prompt,
)
from codellm_assets.core.serving.backends.base import FimTokens
from codellm_assets_tests.conftest import commit_files

# Per language: (library file defining ledger_post_entry, user file calling it in every kind's position).
SOURCES = {
    "python": ("billing/ledger.py", "def ledger_post_entry(book, amount):\n    return book + amount\n",
               "app/use.py",
               "from billing.ledger import ledger_post_entry\n\n\ndef settle(book, items):\n    acc = 0\n"
               "    for it in items:\n        acc = ledger_post_entry(acc, it)\n    if acc > 10 and book:\n"
               "        return acc\n    return 0\n"),
    "javascript": ("lib/ledger.js", "export function ledger_post_entry(book, amount) {\n  return book + amount;\n}\n",
                   "src/use.js",
                   "function settle(book, items) {\n  let acc = 0;\n  for (const it of items) {\n"
                   "    acc = ledger_post_entry(acc, it);\n  }\n  if (acc > 10 && book) {\n    return acc;\n  }\n"
                   "  return 0;\n}\n"),
    "typescript": ("lib/ledger.ts",
                   "export function ledger_post_entry(book: number, amount: number): number {\n"
                   "  return book + amount;\n}\n",
                   "src/use.ts",
                   "function settle(book: number, items: number[]): number {\n  let acc = 0;\n"
                   "  for (const it of items) {\n    acc = ledger_post_entry(acc, it);\n  }\n"
                   "  if (acc > 10 && book) {\n    return acc;\n  }\n  return 0;\n}\n"),
    "go": ("ledger/ledger.go", "package ledger\n\nfunc ledger_post_entry(book int, amount int) int {\n"
           "\treturn book + amount\n}\n",
           "ledger/use.go",
           "package ledger\n\nfunc settle(book int, items []int) int {\n\tacc := 0\n\tfor _, it := range items {\n"
           "\t\tacc = ledger_post_entry(acc, it)\n\t}\n\tif acc > 10 && book > 0 {\n\t\treturn acc\n\t}\n"
           "\treturn 0\n}\n"),
    "java": ("src/Ledger.java", "class Ledger {\n  static int ledger_post_entry(int book, int amount) {\n"
             "    return book + amount;\n  }\n}\n",
             "src/Use.java",
             "class Use {\n  int settle(int book, int[] items) {\n    int acc = 0;\n    for (int it : items) {\n"
             "      acc = Ledger.ledger_post_entry(acc, it);\n    }\n    if (acc > 10 && book > 0) {\n"
             "      return acc;\n    }\n    return 0;\n  }\n}\n"),
    "rust": ("src/ledger.rs", "pub fn ledger_post_entry(book: i32, amount: i32) -> i32 {\n    book + amount\n}\n",
             "src/use_it.rs",
             "fn settle(book: i32, items: &[i32]) -> i32 {\n    let mut acc = 0;\n    for it in items {\n"
             "        acc = ledger_post_entry(acc, *it);\n    }\n    if acc > 10 && book > 0 {\n"
             "        return acc;\n    }\n    0\n}\n"),
    "c": ("ledger.c", "int ledger_post_entry(int book, int amount) {\n  return book + amount;\n}\n",
          "use.c",
          "int settle(int book, int *items, int n) {\n  int acc = 0;\n  for (int i = 0; i < n; i++) {\n"
          "    acc = ledger_post_entry(acc, items[i]);\n  }\n  if (acc > 10 && book) {\n    return acc;\n  }\n"
          "  return 0;\n}\n"),
    "cpp": ("ledger.cpp", "int ledger_post_entry(int book, int amount) {\n  return book + amount;\n}\n",
            "use.cpp",
            "int settle(int book, int *items, int n) {\n  int acc = 0;\n  for (int i = 0; i < n; i++) {\n"
            "    acc = ledger_post_entry(acc, items[i]);\n  }\n  if (acc > 10 && book) {\n    return acc;\n  }\n"
            "  return 0;\n}\n"),
}
FIM = FimTokens("<fim_prefix>", "<fim_suffix>", "<fim_middle>")


def _records(repo, name="acme"):
    return scan_branch(repo, "HEAD", repo_name=name).records


def test_every_configured_language_has_a_grammar():
    assert set(supported_languages()) == set(SOURCES)


@pytest.mark.parametrize("language", sorted(SOURCES))
def test_mines_every_kind_with_a_cross_file_label(make_git_repo, language):
    lib_path, lib, use_path, use = SOURCES[language]
    repo = make_git_repo(f"r-{language}", {lib_path: lib, use_path: use})
    records = _records(repo)
    assert {r["language"] for r in records} == {language}
    tasks = mine_repo_tasks(records, [r for r in records if r["path"] == use_path])
    assert {t.kind for t in tasks} == set(KINDS)
    assert all(t.prefix + t.reference + t.suffix == use for t in tasks)   # the mask is exact
    cross = [t for t in tasks if t.cross_file]
    # the call's arguments (acc, it) and the condition name nothing of the library: in-file
    assert {t.kind for t in cross} == {"single_line", "multi_line", "function_body"}
    assert all(t.defining_paths == [lib_path] and "ledger_post_entry" in t.cross_file_symbols for t in cross)
    line = next(t for t in cross if t.kind == "single_line")
    assert "ledger_post_entry(acc" in line.reference and "\n" not in line.reference
    cond = next(t for t in tasks if t.kind == "condition")
    assert cond.reference.startswith("acc > 10") and not cond.cross_file


def test_cross_file_label_needs_the_other_file(make_git_repo):
    lib_path, lib, use_path, use = SOURCES["python"]
    repo = make_git_repo("r", {lib_path: lib, use_path: use})
    records = _records(repo)
    only_use = [r for r in records if r["path"] == use_path]
    assert any(t.cross_file for t in mine_repo_tasks(records, only_use))
    assert not any(t.cross_file for t in mine_repo_tasks(only_use, only_use))
    # A name the file defines itself is in-file even when another file defines it too.
    own = dict(only_use[0], content=use + "\n\ndef ledger_post_entry(a, b):\n    return a\n")
    assert not any("ledger_post_entry" in t.cross_file_symbols for t in mine_repo_tasks(records + [own], [own]))


def _dated_commit(monkeypatch, repo, files, day):
    stamp = f"{datetime(2026, 1, day, tzinfo=UTC).isoformat()}"
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)
    return commit_files(repo, files, f"day {day}")


def test_time_split_holds_out_the_newest_commits(make_git_repo, monkeypatch):
    repo = make_git_repo("timed")
    _dated_commit(monkeypatch, repo, {f"old{i}.py": f"x = {i}\n" for i in range(6)}, 1)
    _dated_commit(monkeypatch, repo, {"mid.py": "y = 1\n", "gone.py": "z = 1\n"}, 2)
    _dated_commit(monkeypatch, repo, {"new.py": "n = 1\n", "old0.py": "x = 100\n", "gone.py": None}, 3)
    dates = file_commit_dates(repo)
    assert "gone.py" not in dates and dates["old0.py"] == dates["new.py"] > dates["mid.py"] > dates["old1.py"]
    records = _records(repo)
    train, held = split_holdout(records, fraction=0.2, dates=dates_for([("acme", repo, "HEAD")]))
    assert sorted(r["path"] for r in held) == ["new.py", "old0.py"]   # one commit: never split in two
    assert {r["path"] for r in train} | {r["path"] for r in held} == {r["path"] for r in records}
    by_date = dates_for([("acme", repo, "HEAD")])
    _, since = split_holdout(records, dates=by_date, since=datetime(2026, 1, 2, tzinfo=UTC))
    assert sorted(r["path"] for r in since) == ["mid.py", "new.py", "old0.py"]
    assert split_holdout(records, dates=by_date, fraction=0.0)[1] == []


def test_hash_split_and_bad_input(make_git_repo):
    recs = [{"repo": "acme", "path": f"f{i}.py"} for i in range(400)]
    _, held = split_holdout(recs, split="hash", fraction=0.25)
    assert 60 < len(held) < 140 and held == split_holdout(recs, split="hash", fraction=0.25)[1]
    with pytest.raises(ValueError, match="commit dates"):
        split_holdout(recs, split="time")
    with pytest.raises(ValueError, match="no commit date for 399"):
        split_holdout(recs, dates={("acme", "f0.py"): 1})
    with pytest.raises(ValueError, match="holdout_split"):
        split_holdout(recs, split="random")


def _many_tasks(make_git_repo):
    lib_path, lib, use_path, use = SOURCES["python"]
    files = {lib_path: lib, **{f"app/use{i}.py": use.replace("settle", f"settle{i}") for i in range(6)}}
    records = _records(make_git_repo("many", files))
    return mine_repo_tasks(records, [r for r in records if r["path"].startswith("app/")])


def test_sampling_is_stratified_and_seeded(make_git_repo):
    tasks = _many_tasks(make_git_repo)
    picked = sample_tasks(tasks, per_stratum=4, seed=1, max_per_file=1)
    strata = {(t.kind, t.cross_file) for t in tasks}
    counts = {s: sum((t.kind, t.cross_file) == s for t in picked) for s in strata}
    assert all(1 <= c <= 4 for c in counts.values()) and len(strata) >= 6
    assert [t.task_id for t in picked] == [t.task_id for t in sample_tasks(tasks, per_stratum=4, seed=1,
                                                                               max_per_file=1)]
    assert [t.task_id for t in picked] != [t.task_id for t in sample_tasks(tasks, per_stratum=4, seed=2,
                                                                               max_per_file=1)]
    for s in strata:   # max_per_file=1: no file twice within a stratum
        paths = [t.path for t in picked if (t.kind, t.cross_file) == s]
        assert len(paths) == len(set(paths))


def test_sampling_asks_each_reference_once_per_stratum(make_git_repo):
    tasks = _many_tasks(make_git_repo)      # six copies of one file: most spans repeat in every copy
    picked = sample_tasks(tasks, per_stratum=6, seed=0)
    repeated = 0
    for stratum in {(t.kind, t.cross_file) for t in tasks}:
        every = [" ".join(t.reference.split()) for t in tasks if (t.kind, t.cross_file) == stratum]
        drawn = [" ".join(t.reference.split()) for t in picked if (t.kind, t.cross_file) == stratum]
        assert len(drawn) == len(set(drawn)) and set(drawn) <= set(every)
        assert len(drawn) == min(6, len(set(every)))        # a repeat's place goes to another question
        repeated += len(every) > len(set(every))
    assert repeated >= 3


def test_sampling_gives_every_repo_its_turn_in_a_stratum(make_git_repo):
    big = _many_tasks(make_git_repo)
    small = [dataclasses.replace(t, repo="small", task_id=f"small-{t.task_id}", reference=t.reference + " # s")
             for t in big if t.path == "app/use0.py"]
    picked = sample_tasks([*big, *small], per_stratum=4, seed=0)
    for stratum in {(t.kind, t.cross_file) for t in small}:
        repos = [t.repo for t in picked if (t.kind, t.cross_file) == stratum]
        have_small = sum((t.kind, t.cross_file) == stratum for t in small)
        # the small repo gets half the turns (up to what it has); the big one fills the rest (with questions
        # of its own: a repeated reference is asked once)
        have_big = len({" ".join(t.reference.split()) for t in big if (t.kind, t.cross_file) == stratum})
        assert repos.count("small") == min(have_small, max(2, 4 - have_big))
        assert len(repos) == min(4, have_big + have_small)


def test_fim_prompt_layout_and_truncation(make_git_repo):
    assert build_fim_prompt(FIM, "a\nb", "c", context="# ctx\n") == "<fim_prefix># ctx\na\nb<fim_suffix>c<fim_middle>"
    preset = {"prefix": "<｜fim▁begin｜>", "middle": "<｜fim▁end｜>", "suffix": "<｜fim▁hole｜>"}
    assert build_fim_prompt(preset, "p", "s") == "<｜fim▁begin｜>p<｜fim▁hole｜>s<｜fim▁end｜>"
    spm = {**preset, "layout": "spm"}       # the gateway's SPM template, context right before the prefix
    assert build_fim_prompt(spm, "a\nb", "c", context="# ctx\n") == \
        "<｜fim▁begin｜><｜fim▁hole｜>c<｜fim▁end｜># ctx\na\nb"
    assert build_fim_prompt(dataclasses.replace(FIM, spm=True), "p", "s") == "<fim_prefix><fim_suffix>s<fim_middle>p"
    long = build_fim_prompt(FIM, "x" * 50 + "\nkeep\n", "one\n" + "y" * 50, max_prefix_chars=20, max_suffix_chars=10)
    assert long == "<fim_prefix>keep\n<fim_suffix>one\n<fim_middle>"   # whole lines only
    with pytest.raises(ValueError, match="presets.yaml"):
        build_fim_prompt({"prefix": "a"}, "p", "s")
    task = _many_tasks(make_git_repo)[0]
    assert task_prompt(task, FIM) == build_fim_prompt(FIM, task.prefix, task.suffix)


@pytest.mark.parametrize("completion,suffix,em", [
    ("region=NORTH)", ")\n    return v\n", 1.0),          # wrote the rest of the line again: trimmed
    ("region=NORTH)  ", ")\n", 1.0),
    ("region=NORTH", ")\n", 1.0),
    ("region=NORTH), x", ")\n", 0.0),                      # more than the line's rest: not an answer
    (")", ")\n", 0.0),                                     # the rest alone is not the span
    ("region=NORTH)", "\n", 0.0),                          # nothing after the cursor: nothing to trim
])
def test_an_inline_completion_loses_the_rest_of_the_line_it_repeats(make_git_repo, completion, suffix, em):
    task = next(t for t in _many_tasks(make_git_repo) if t.kind == "call_args")
    task = dataclasses.replace(task, reference="region=NORTH", suffix=suffix)
    assert score(task, completion)["em"] == em


def test_metrics_follow_crosscodeeval(make_git_repo):
    tasks = _many_tasks(make_git_repo)
    line = next(t for t in tasks if t.kind == "single_line" and t.cross_file)
    exact = score(line, line.reference + "\n    extra line the model ran on\n")
    assert exact["em"] == exact["es"] == exact["id_em"] == exact["id_f1"] == 1.0
    wrong = score(line, "acc = ledger_post(acc, item)")   # reference: acc = ledger_post_entry(acc, it)
    assert wrong["em"] == 0.0 and wrong["id_em"] == 0.0 and 0.5 < wrong["es"] < 1.0
    assert wrong["id_f1"] == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))   # {acc} of 3 and of 3
    body = next(t for t in tasks if t.kind == "function_body")
    assert score(body, body.reference.replace("    ", "  ") + "garbage\n")["em"] == 0.0
    assert score(body, body.reference.replace("\n", "   \n"))["em"] == 1.0   # trailing blanks ignored


def test_summary_table_and_paired_interval(make_git_repo):
    tasks = sample_tasks(_many_tasks(make_git_repo), per_stratum=3, seed=0)
    oracle = score_all(tasks, [t.reference for t in tasks])
    empty = score_all(tasks, ["" for _ in tasks])
    s_oracle, s_empty = summarize(oracle), summarize(empty)
    assert s_oracle["company_score"] == 1.0 and s_empty["company_score"] < 0.1
    assert set(s_oracle["by_kind"]) == set(KINDS) and set(s_oracle["by_label"]) == {"cross_file", "in_file"}
    table = markdown_table(s_empty, other=s_oracle)
    assert "| single_line/python |" in table and "| cross_file |" in table and "| overall |" in table
    assert table.count("\n") == len(s_oracle["by_kind_language"]) + 2 + 2
    assert "| ID-F1 |" in markdown_table(s_oracle).splitlines()[0]
    diff = paired_difference(empty, oracle)
    assert diff["mean"] == 1.0 and diff["low"] == diff["high"] == 1.0
    mixed = score_all(tasks, [t.reference if i % 2 else "" for i, t in enumerate(tasks)])
    d2 = paired_difference(empty, mixed)
    assert d2["low"] < d2["mean"] < d2["high"]
    with pytest.raises(ValueError, match="same tasks"):
        paired_difference(empty, mixed[:-1])
    with pytest.raises(ValueError, match="mined nothing"):
        summarize([])


def test_eval_metadata_carries_the_issue_keys(make_git_repo):
    from codellm_assets.core.evaluation.repo_bench import eval_metadata

    tasks = sample_tasks(_many_tasks(make_git_repo), per_stratum=2, seed=0)
    base = score_all(tasks, ["" for _ in tasks])
    adapter = score_all(tasks, [t.reference for t in tasks])
    meta = eval_metadata(tasks, base, adapter)
    assert meta["company_em"] == 1.0 and meta["company_em_base"] == 0.0 and meta["company_es"] == 1.0
    assert meta["company_tasks"] == len(tasks) == sum(meta["company_tasks_by_kind"].values())
    assert set(meta["company_tasks_by_kind"]) == set(KINDS) and meta["company_languages"] == ["python"]
    assert meta["company_em_delta"]["low"] == 1.0 and "| overall |" in meta["company_table"]
    assert meta["company_em_single_line_cross_file"] == 1.0 and meta["company_em_single_line_cross_file_base"] == 0.0


def test_big_files_keep_whole_lines_around_the_span(make_git_repo):
    from codellm_assets.core.evaluation.fim_mining import MAX_TASK_PREFIX_BYTES, MAX_TASK_SUFFIX_BYTES

    filler = "".join(f"def pad_{i}(x):\n    return x + {i}\n\n\n" for i in range(1500))   # ~50 kB
    content = filler + "def target(x):\n    y = pad_3(x)\n    return y\n\n\n" + filler
    records = _records(make_git_repo("big", {"big.py": content}))
    task = next(t for t in mine_repo_tasks(records, records) if t.reference == "y = pad_3(x)")
    assert task.line == content[:content.index("    y = pad_3")].count("\n") + 1
    assert len(task.prefix) < content.index("def target") and len(task.suffix) < len(filler)   # cut, both ends
    assert (task.prefix + task.reference + task.suffix) in content
    assert len(task.prefix.encode()) <= MAX_TASK_PREFIX_BYTES and len(task.suffix.encode()) <= MAX_TASK_SUFFIX_BYTES
    assert content[content.index(task.prefix) - 1] == "\n" and task.suffix.endswith("\n")   # whole lines


def test_unparsable_or_unknown_files_yield_no_tasks():
    from codellm_assets.core.evaluation.fim_mining import mine_file

    good = {"repo": "r", "path": "a.py", "language": "python", "content": SOURCES["python"][3]}
    assert mine_file(good)
    assert mine_file(dict(good, content=good["content"] + "\ndef broken(:\n    pass\n")) == []
    assert mine_file(dict(good, path="a.rb", language="ruby")) == []


def test_run_bench_with_a_real_tiny_model(make_git_repo, tmp_path):
    from codellm_assets.core.evaluation.repo_bench import run_bench
    from codellm_assets.core.training.inference import generate_completions, load_for_inference
    from codellm_assets.testing.tiny_model import FIM_TOKENS, build_tiny_model

    model, tok = load_for_inference(build_tiny_model(tmp_path / "tiny"))
    assert all(t in tok.get_vocab() for t in FIM_TOKENS)   # the FIM tokens are single tokens of the model
    tasks = sample_tasks(_many_tasks(make_git_repo), per_stratum=1, seed=0)
    calls = []

    def generate(prompts, max_new_tokens, stop):
        calls.append((len(prompts), max_new_tokens, stop))
        return [s[0] for s in generate_completions(model, tok, prompts, max_new_tokens=4, stop=stop)]

    rows = run_bench(tasks, generate, FIM)
    assert [r["task_id"] for r in rows] == [t.task_id for t in tasks]
    assert len(calls) == len(KINDS) and sum(n for n, _, _ in calls) == len(tasks)
    assert all(0.0 <= r[m] <= 1.0 for r in rows for m in ("em", "es", "id_em", "id_f1"))
    with pytest.raises(ValueError, match="completions for"):
        run_bench(tasks, lambda p, n, s: [], FIM)
