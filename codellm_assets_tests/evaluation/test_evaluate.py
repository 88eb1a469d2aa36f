"""What the gate pairs: a HumanEval subset drawn once by seed, per-file held-out likelihood (batched equals
one at a time), and a benchmark identity that changes with what is scored."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from codellm_assets.core.evaluation import evaluate
from codellm_assets.core.evaluation.company_bench import BenchTask
from codellm_assets.settings import EvalSettings


def test_the_subset_is_drawn_by_seed_not_the_first_n():
    a = evaluate.humaneval_problems(EvalSettings(humaneval_subset=40, humaneval_seed=0))
    again = evaluate.humaneval_problems(EvalSettings(humaneval_subset=40, humaneval_seed=0))
    other = evaluate.humaneval_problems(EvalSettings(humaneval_subset=40, humaneval_seed=1))
    assert list(a) == list(again) and len(a) == 40
    assert list(a) != [f"HumanEval/{i}" for i in range(40)]
    assert set(a) != set(other)
    ids = [int(t.split("/")[1]) for t in a]
    assert ids == sorted(ids)   # file order, whatever the draw
    assert len(evaluate.humaneval_problems(EvalSettings(humaneval_subset=0))) == 164
    assert EvalSettings().humaneval_subset >= 100   # the default resolves 0.01, below the 0.02 margin


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from codellm_assets.testing.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_held_out_likelihood_is_per_file_and_batching_does_not_change_it(tiny):
    model, tok = tiny
    tok.padding_side = "left"   # as generation leaves it
    sources = (p.read_text() for p in sorted(Path(evaluate.__file__).parent.glob("*.py")))
    texts = [t for t in sources if len(t) > 700][:6]
    texts.append("x = 1\n")   # too short: skipped on every tokenizer alike
    batched = evaluate.holdout_nll(model, tok, texts, max_chars=600, max_files=10, batch_size=4)
    single = evaluate.holdout_nll(model, tok, texts, max_chars=600, max_files=10, batch_size=1)
    assert len(batched) == 6 and [r["id"] for r in batched] == [r["id"] for r in single]
    for b, s in zip(batched, single):
        assert b["tokens"] == s["tokens"] and b["chars"] == s["chars"] > 500
        assert math.isclose(b["nll"], s["nll"], rel_tol=1e-4)
    assert tok.padding_side == "left"   # restored for generation


def test_the_benchmark_identity_follows_what_is_scored():
    ev = EvalSettings(humaneval_subset=20)
    task = BenchTask(task_id="company/1", prompt="def f():\n", reference="    return 1\n", entry_point="f",
                     source="handwritten")
    texts = ["def g():\n    return 2\n" * 10]
    base = evaluate.benchmark_hash(ev, [task], texts)
    assert base == evaluate.benchmark_hash(ev, [task], texts)
    assert base != evaluate.benchmark_hash(EvalSettings(humaneval_subset=20, humaneval_seed=3), [task], texts)
    assert base != evaluate.benchmark_hash(ev, [], texts)
    assert base != evaluate.benchmark_hash(ev, [task], texts + ["class A:\n    pass\n" * 10])
    assert base == evaluate.benchmark_hash(EvalSettings(humaneval_subset=20, gate_margin=0.5), [task], texts)
