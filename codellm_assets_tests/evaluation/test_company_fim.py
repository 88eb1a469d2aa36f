"""The company benchmark as the graph builds it: FIM tasks only from held-out files, tasks whose answer is
verbatim in training dropped, stratified caps, a real tiny model scored with and without repository context,
and the report eval_scores shows (base vs adapter vs adapter + context)."""

from __future__ import annotations

import pytest

from codellm_assets.core.data.git_scan import scan_branch
from codellm_assets.core.evaluation import company_fim, evaluate
from codellm_assets.core.evaluation.repo_bench import score_all
from codellm_assets.settings import EvalSettings
from codellm_assets_tests.evaluation.test_repo_bench import SOURCES

LIB_PATH, LIB, USE_PATH, USE = SOURCES["python"]
CALL = "acc = ledger_post_entry(acc, it)"


@pytest.fixture
def repo_files(make_git_repo):
    files = {LIB_PATH: LIB, **{f"app/use{i}.py": USE.replace("settle", f"settle_{i}") for i in range(6)}}
    return scan_branch(make_git_repo("acme", files), "HEAD", repo_name="acme").records


def _split(records, held_paths):
    held = [r for r in records if r["path"] in held_paths]
    return held, [r for r in records if r["path"] not in held_paths]


def test_tasks_come_only_from_held_out_files_and_cross_file_needs_a_training_file(repo_files):
    held, train = _split(repo_files, {"app/use4.py", "app/use5.py"})
    tasks, account = company_fim.build_tasks(repo_files, held, [], per_stratum=50, seed=0, max_tasks=0)
    assert tasks and {t.path for t in tasks} <= {"app/use4.py", "app/use5.py"}
    assert account["mined"] >= len(tasks) and account["dropped_verbatim_in_training"] == 0
    cross = [t for t in tasks if t.cross_file]
    assert cross and all(t.defining_paths == [LIB_PATH] for t in cross)
    assert LIB_PATH in {r["path"] for r in train}
    counts = company_fim.task_counts(tasks)
    assert counts["by_language"] == {"python": len(tasks)}
    assert sum(v["cross_file"] + v["in_file"] for v in counts["by_kind"].values()) == len(tasks)


def test_a_task_whose_answer_is_in_a_training_file_is_dropped(repo_files):
    held, train = _split(repo_files, {"app/use5.py"})
    clean, _ = company_fim.build_tasks(repo_files, held, [LIB], per_stratum=50, seed=0, max_tasks=0)
    assert CALL in {t.reference for t in clean}              # the library alone does not hold the call line
    tasks, account = company_fim.build_tasks(repo_files, held, [r["content"] for r in train], per_stratum=50,
                                             seed=0, max_tasks=0)
    assert CALL not in {t.reference for t in tasks}          # every other use file has it verbatim
    assert account["dropped_verbatim_in_training"] >= 1 and account["dropped_verbatim_by_kind"]["single_line"] >= 1
    # checked while drawing: each check keeps (a task drawn) or drops (the next of its stratum is drawn)
    assert account["checked_verbatim"] == len(tasks) + account["dropped_verbatim_in_training"]
    assert len(tasks) <= len(clean)


# (span, training text, verbatim in training?)
VERBATIM = [
    (CALL, f"def f():\n    {CALL}\n", True),
    (CALL, "def f():\n    acc   =  ledger_post_entry(acc,\n        it)\n", True),      # whitespace differs
    ("        return acc * rate\n    return default_total\n",
     "def g(acc, rate):\n    if acc:\n        return acc * rate\n    return default_total\n", True),   # lines
    ("return acc", "def g(acc):\n    return acc\n", False),                          # an idiom: too short
    (CALL, "acc = ledger_post_entry(it, acc)\n", False),                             # same words, other order
    (CALL, "acc = ledger_post_entry(acc, item)\n", False),
    ("", "anything\n", False),
]


@pytest.mark.parametrize("span,training,expected", VERBATIM)
def test_verbatim_rule(span, training, expected):
    assert company_fim.VerbatimIndex([training, "unrelated = 1\n"]).contains(span) is expected


def test_the_cap_takes_each_stratum_in_turn(repo_files):
    held, _ = _split(repo_files, {"app/use4.py", "app/use5.py"})
    tasks, _ = company_fim.build_tasks(repo_files, held, [], per_stratum=50, seed=0, max_tasks=0)
    strata = {(t.kind, t.cross_file) for t in tasks}
    capped = company_fim.cap_tasks(tasks, len(strata))
    assert len(capped) == len(strata) and {(t.kind, t.cross_file) for t in capped} == strata
    assert company_fim.cap_tasks(tasks, 0) == tasks and company_fim.cap_tasks(tasks, 10_000) == tasks


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from codellm_assets.core.training.inference import load_for_inference
    from codellm_assets.testing.tiny_model import build_tiny_model

    return load_for_inference(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def test_a_tiny_model_scored_with_and_without_repository_context(repo_files, tiny):
    model, tok = tiny
    held, train = _split(repo_files, {"app/use5.py"})
    tasks, _ = company_fim.build_tasks(repo_files, held, [], per_stratum=1, seed=0, max_tasks=0)
    bench = company_fim.FimBench(tasks, fim={"prefix": "<fim_prefix>", "suffix": "<fim_suffix>",
                                             "middle": "<fim_middle>"}, max_new_tokens=4)
    indexes = company_fim.build_indexes(train)
    scores = evaluate.evaluate_model(model, tok, label="adapter", settings=EvalSettings(humaneval_subset=1,
                                     max_new_tokens=4), company_tasks=[], holdout_texts=[], fim_bench=bench,
                                     indexes=indexes)
    assert [r["task_id"] for r in scores.fim_results] == [t.task_id for t in tasks]
    assert [r["task_id"] for r in scores.fim_context_results] == [t.task_id for t in tasks]
    m = scores.metrics
    assert 0 <= m["company_score"] <= 1 and m["company_em"] is not None and m["company_score_context"] is not None
    record = evaluate.paired_record(scores)
    assert [r["task_id"] for r in record["company"]] == [t.task_id for t in tasks]
    assert {"kind", "em", "es"} <= set(record["company"][0])
    prompts = []
    generate = evaluate.local_generator(model, tok)
    company_fim.FimBench(tasks[:1], fim=None, max_new_tokens=2).run(
        lambda ps, **kw: prompts.extend(ps) or generate(ps, **kw))
    assert prompts == [tasks[0].prefix[-3000:]]       # no FIM tokens: the prefix alone, left to right
    assert "<fim_" not in prompts[0]
    none = evaluate.evaluate_model(model, tok, label="base", settings=EvalSettings(humaneval_subset=1,
                                   max_new_tokens=4), company_tasks=[], holdout_texts=[])
    assert none.metrics["company_score"] is None and evaluate.paired_record(none)["company"] == []


def test_the_report_shows_base_adapter_and_context_side_by_side(repo_files):
    held, _ = _split(repo_files, {"app/use4.py", "app/use5.py"})
    tasks, _ = company_fim.build_tasks(repo_files, held, [], per_stratum=50, seed=0, max_tasks=0)
    base = score_all(tasks, ["" for _ in tasks])
    adapter = score_all(tasks, [t.reference if i % 2 else "" for i, t in enumerate(tasks)])
    oracle = score_all(tasks, [t.reference for t in tasks])
    out = company_fim.report(tasks, base, adapter, oracle)
    for key in ("company_em", "company_es", "company_em_base", "company_es_base", "company_tasks",
                "company_tasks_by_kind", "company_languages", "company_score", "company_score_base",
                "company_em_delta", "company_score_context", "company_em_context", "company_em_context_delta"):
        assert key in out, key
    assert out["company_em_context"] == 1.0 and out["company_em_base"] == 0.0
    assert out["company_em_delta"]["low"] > 0 and out["company_tasks"] == len(tasks)
    assert "EM adapter+context" in out["company_table"] and out["company_table"].count("\n") >= 3
    assert "█" * company_fim.BAR_CELLS in out["company_chart"]     # the oracle's full bar
    assert company_fim.bar(0.5) == "█" * 10 + " 0.500" and company_fim.bar(None) == "–"


def test_indexes_round_trip_and_a_repo_taken_out_loses_its_index(repo_files, tmp_path):
    _, train = _split(repo_files, {"app/use5.py"})
    indexes = company_fim.build_indexes(train)
    (tmp_path / "index" / "gone").mkdir(parents=True)
    company_fim.save_indexes(indexes, tmp_path / "index")
    loaded = company_fim.load_indexes(tmp_path / "index")
    assert list(loaded) == ["acme"] and len(loaded["acme"].chunks) == len(indexes["acme"].chunks)
    assert not (tmp_path / "index" / "gone").exists() and company_fim.load_indexes(tmp_path / "nowhere") == {}


# ---- held-out files the base has read are not benchmark files -------------------------------------------

def test_held_out_files_the_tiny_base_pretrained_on_are_left_out(tmp_path):
    from codellm_assets.core.data.samples import package_sources
    from codellm_assets.defs.evaluation import _unseen_by_base
    from codellm_assets.settings import ModelSettings, RepoSettings, Settings

    click_file = next(raw.decode() for path, raw in package_sources("click").items() if path.endswith("core.py"))
    scrubbed = "\n".join(click_file.replace("https://", "<URL>", 5).splitlines()[:500])   # scrubbed, truncated
    held = [{"repo": "click", "path": "src/click/core.py", "content": scrubbed},
            {"repo": "acme", "path": "src/acme/ledger.py", "content": "def post_entry(x):\n    return x\n"}]

    def settings(**model) -> Settings:
        return Settings(base_dir=str(tmp_path), home=str(tmp_path / "var"), model=ModelSettings(**model),
                        repos=[RepoSettings(name="acme", path=".")])

    kept, dropped = _unseen_by_base(settings(tiny_pretrain_source="public", tiny_pretrain_packages=["click"]), held)
    assert [f["repo"] for f in kept] == ["acme"] and dropped == {"click": 1}       # a near copy is a copy
    kept, dropped = _unseen_by_base(settings(tiny_pretrain_source="public", tiny_pretrain_packages=["typer"]), held)
    assert len(kept) == 2 and dropped == {}                     # another corpus: nothing it has read
    kept, dropped = _unseen_by_base(settings(tiny_pretrain_source="dataset"), held)
    assert len(kept) == 2 and dropped == {}                     # pre-trained on the train split: never a held-out file
