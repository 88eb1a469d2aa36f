"""The champion gate as a table: worse blocks, better passes, the perplexity fallback below the floor."""

import pytest

from codellm_assets.core.evaluation.evaluate import gate


def m(p1, company, ppl=100.0):
    return {"pass@1": p1, "company_score": company, "holdout_perplexity": ppl}


@pytest.mark.parametrize("challenger,reference,passed", [
    (m(0.40, 0.60), m(0.35, 0.55), True),      # better on both
    (m(0.34, 0.60), m(0.35, 0.60), True),      # within the 0.02 margin
    (m(0.30, 0.60), m(0.35, 0.60), False),     # pass@1 regressed by 0.05
    (m(0.40, 0.50), m(0.40, 0.60), False),     # company score regressed by 0.10
    (m(0.0, 0.05, ppl=90), m(0.0, 0.10, ppl=100), True),     # below the floor: lower perplexity wins
    (m(0.0, 0.15, ppl=120), m(0.0, 0.10, ppl=100), False),   # below the floor: 20 % worse perplexity blocks
    (m(0.0, 0.50, ppl=120), m(0.0, 0.10, ppl=100), True),    # above the floor: generation decides
    ({"pass@1": 0.3, "company_score": None}, m(0.3, 0.6), True),   # missing metric: not comparable
])
def test_gate(challenger, reference, passed):
    verdict = gate(challenger, reference, reference_label="champion v3", margin=0.02, floor=0.2)
    assert verdict.passed is passed, verdict.rows
    assert all("metric" in r and "champion v3" in r for r in verdict.rows)
