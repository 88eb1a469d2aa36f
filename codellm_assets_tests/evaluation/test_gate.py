"""The champion gate, paired task by task: worse beyond the margin blocks, equal passes, too little evidence
blocks, a missing metric blocks, a noisy small-sample "within the margin" no longer passes."""

import math
import random

import pytest

from codellm_assets.core.evaluation import gate
from codellm_assets.settings import EvalSettings

EV = EvalSettings(gate_margin=0.02, gate_floor=0.2, gate_min_tasks=30, gate_bootstrap_samples=2000)


def he(passed: list[bool]) -> list[dict]:
    return [{"task_id": f"HumanEval/{i}", "samples": 1, "correct": int(p)} for i, p in enumerate(passed)]


KINDS = ("single_line", "multi_line", "call_args", "condition", "function_body")


def company(scores: list[float]) -> list[dict]:
    """FIM task rows (repo_bench.score's shape) whose (EM + ES) / 2 is each score, kinds in turn."""
    return [{"task_id": f"fim/{i}", "kind": KINDS[i % len(KINDS)], "em": s, "es": s} for i, s in enumerate(scores)]


def holdout(bpc: list[float], chars: int = 1000) -> list[dict]:
    return [{"id": f"f{i}", "nll": b * chars * math.log(2), "chars": chars, "tokens": chars // 3}
            for i, b in enumerate(bpc)]


def side(passed, comp, bpc=None) -> dict:
    return {"humaneval": he(passed), "company": company(comp), "holdout": holdout(bpc or [2.0] * 40)}


def rows(verdict) -> dict:
    return {r["metric"]: r for r in verdict.rows}


def test_the_same_model_passes_with_a_zero_width_interval():
    rng = random.Random(1)
    passed = [rng.random() < 0.4 for _ in range(164)]
    comp = [rng.random() for _ in range(40)]
    v = gate.decide(side(passed, comp), side(passed, comp), reference_label="champion v3", ev=EV)
    assert v.passed, v.rows
    assert rows(v)["pass@1"]["ci_low"] == rows(v)["pass@1"]["ci_high"] == 0.0
    assert rows(v)["pass@1"]["n"] == 164 and v.confidence == 0.95


def test_a_clear_regression_fails_and_reports_its_interval():
    ref = [i % 2 == 0 for i in range(164)]                    # 82 / 164
    ours = [p and i % 8 != 0 for i, p in enumerate(ref)]       # loses 21 tasks: -0.128
    comp = [0.5] * 40
    v = gate.decide(side(ours, comp), side(ref, comp), reference_label="champion v3", ev=EV)
    r = rows(v)["pass@1"]
    assert not v.passed and r["ok"] is False
    assert r["ci_low"] <= r["delta"] <= r["ci_high"] < -EV.gate_margin


def test_a_ten_task_subset_within_the_old_margin_does_not_pass():
    """Today's gate: 0.3 vs 0.3 on 10 tasks 'within 0.02' passes. Swapped outcomes on 6 tasks are no evidence."""
    ref = [True, True, True, False, False, False, False, False, False, False]
    ours = [False, False, False, True, True, True, False, False, False, False]
    v = gate.decide(side(ours, [0.5] * 10), side(ref, [0.5] * 10), reference_label="base", ev=EV)
    assert not v.passed
    assert "not enough evidence" in rows(v)["pass@1"]["note"]
    wide = gate.compare("pass@1", side(ours * 4, []), side(ref * 4, []), EV)   # 40 tasks, same 0 delta
    assert wide["delta"] == 0 and wide["ci_low"] < -EV.gate_margin and wide["ok"] is False


def test_a_small_consistent_gain_passes():
    ref = [i % 3 == 0 for i in range(164)]
    ours = [p or i % 20 == 1 for i, p in enumerate(ref)]
    v = gate.decide(side(ours, [0.5] * 40), side(ref, [0.5] * 40), reference_label="champion v1", ev=EV)
    assert v.passed, v.rows
    assert rows(v)["pass@1"]["ci_low"] >= 0


@pytest.mark.parametrize("drop", ["humaneval", "company"])
def test_a_missing_metric_fails_closed(drop):
    ours = side([True] * 40, [0.6] * 40)
    ref = side([True] * 40, [0.6] * 40)
    ours[drop] = []
    v = gate.decide(ours, ref, reference_label="champion v3", ev=EV)
    assert not v.passed
    assert any("fails closed" in (r.get("note") or "") for r in v.rows)


def test_an_unscorable_reference_fails_closed():
    v = gate.decide(side([True] * 40, [0.6] * 40), {"metrics": {}, "error": "base gone"}, reference_label="x", ev=EV)
    assert not v.passed


def test_different_task_sets_fail_closed():
    ours, ref = side([True] * 40, [0.6] * 40), side([True] * 40, [0.6] * 40)
    ref["humaneval"][0]["task_id"] = "HumanEval/999"
    assert "same tasks" in gate.compare("pass@1", ours, ref, EV)["note"]


def test_below_the_floor_held_out_bits_per_char_decide_paired():
    rng = random.Random(3)
    ref_bpc = [2.0 + rng.random() for _ in range(40)]
    comp = [0.05] * 40
    better = gate.decide(side([False] * 40, comp, [b - 0.05 for b in ref_bpc]), side([False] * 40, comp, ref_bpc),
                         reference_label="base", ev=EV)
    assert better.passed, better.rows
    assert rows(better)["company_score"]["ok"] is None and "holdout_bits_per_char" in rows(better)
    worse = gate.decide(side([False] * 40, comp, [b * 1.1 for b in ref_bpc]), side([False] * 40, comp, ref_bpc),
                        reference_label="base", ev=EV)
    assert not worse.passed and rows(worse)["holdout_bits_per_char"]["ci_low"] > 0
    # The per-file pairing is what makes a 1 % gain visible among files whose difficulty varies by 50 %.
    assert rows(better)["holdout_bits_per_char"]["ci_high"] < 0


def test_below_the_floor_without_held_out_scores_fails():
    comp = [0.05] * 40
    ours, ref = side([False] * 40, comp), side([False] * 40, comp)
    ours["holdout"] = []
    assert not gate.decide(ours, ref, reference_label="base", ev=EV).passed


def test_verdict_is_reproducible():
    rng = random.Random(5)
    a, b = [rng.random() < 0.5 for _ in range(100)], [rng.random() < 0.5 for _ in range(100)]
    one = gate.compare("pass@1", side(a, []), side(b, []), EV)
    two = gate.compare("pass@1", side(a, []), side(b, []), EV)
    assert one == two


def test_identity_of_a_sealed_value():
    value = gate.seal({"challenger": {"pass@1": 0.5}, "paired": {}}, run_id="run-1")
    assert gate.identity_problems(value, run_id="run-1", data_version=value["fingerprint"]) == []
    assert gate.identity_problems(value, run_id="", data_version=value["fingerprint"])       # reported, no run
    assert gate.identity_problems(value, run_id="run-2", data_version=value["fingerprint"])  # another run's
    edited = {**value, "challenger": {"pass@1": 0.9}}
    assert "fingerprint" in gate.identity_problems(edited, run_id="run-1", data_version=value["fingerprint"])[0]


def test_company_score_is_repo_bench_headline_paired():
    """The gate's statistic is repo_bench.summarize's company_score (macro over kinds), on the same rows."""
    from codellm_assets.core.evaluation.repo_bench import summarize

    rng = random.Random(7)
    rows_ = [{"task_id": f"fim/{i}", "kind": KINDS[i % 3], "language": "python", "cross_file": i % 2 == 0,
              "em": float(rng.random() < 0.3), "es": rng.random(), "id_em": 0.0, "id_f1": 0.0} for i in range(61)]
    rows_ += [{**rows_[0], "task_id": "fim/rare", "kind": "function_body", "em": 1.0, "es": 1.0}]  # one task, one kind
    stat = gate._company_score(rows_)
    import numpy as np

    assert math.isclose(float(stat(np.arange(len(rows_))[None])[0]), summarize(rows_)["company_score"], abs_tol=1e-4)
    worse = [{**r, "em": 0.0, "es": r["es"] * 0.5} for r in rows_]
    r = gate.compare("company_score", {"company": worse}, {"company": rows_}, EV)
    assert r["ok"] is False and r["ci_high"] < 0
    assert gate.compare("company_score", {"company": rows_}, {"company": rows_}, EV)["ok"] is True


def test_company_rows_of_another_shape_fail_closed():
    old = [{"task_id": f"fim/{i}", "edit_similarity": 0.5, "passed": None} for i in range(40)]
    r = gate.compare("company_score", {"company": old}, {"company": old}, EV)
    assert r["ok"] is False and "fails closed" in r["note"]
