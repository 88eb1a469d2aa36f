"""Canary progression and production-quality rules, as tables."""

from dataclasses import dataclass

import pytest

from codellm_assets.core.monitoring.rollout import decide_canary, production_quality
from codellm_assets.settings import CanaryThresholds, ProductionThresholds

LIMITS = CanaryThresholds(max_error_rate=0.05, max_p95_latency_s=3.0, max_buggy_code_rate=0.10,
                          min_requests=50, min_users=3)
STEPS = [5, 25, 100]


@dataclass
class S:
    requests: int = 200
    error_rate: float = 0.0
    p95_latency_s: float = 0.5
    buggy_code_rate: float = 0.0
    acceptance_rate: float | None = 0.9
    distinct_users: int = 10
    feedback_events: int = 50
    p95_latency_per_token_s: float | None = 0.02
    errors: int = -1

    def __post_init__(self):
        if self.errors < 0:
            self.errors = round(self.error_rate * self.requests)


@pytest.mark.parametrize("stats,weight,action,next_weight", [
    (S(), 5, "promote", 25),
    (S(), 25, "promote", 100),
    (S(), 100, "complete", 100),
    (S(buggy_code_rate=None), 5, "promote", 25),                     # nothing assessed yet: not a breach
    (S(requests=0, distinct_users=0), 5, "hold", 5),                 # no data never promotes
    (S(requests=500, distinct_users=1), 5, "hold", 5),               # one user's spike decides nothing
    (S(requests=49), 5, "hold", 5),
    (S(error_rate=0.06), 25, "rollback", 0),
    (S(p95_latency_s=3.5, p95_latency_per_token_s=None), 5, "rollback", 0),  # no token counts: per request
    (S(p95_latency_per_token_s=0.3), 5, "rollback", 0),
    (S(p95_latency_s=12.0, p95_latency_per_token_s=0.05), 5, "promote", 25),  # long completions, fast tokens
    (S(buggy_code_rate=0.11), 5, "rollback", 0),
    (S(requests=10, distinct_users=1, error_rate=0.5), 5, "rollback", 0),  # hard failure: 5 errors of 10
    (S(requests=4, distinct_users=1, error_rate=1.0), 5, "hold", 5),       # 4 errors: below the hard minimum
    (S(requests=3, distinct_users=2, error_rate=1 / 3, errors=1), 5, "hold", 5),  # one failure of three
    (S(requests=1, distinct_users=1, p95_latency_s=9.0, p95_latency_per_token_s=2.0), 5, "hold", 5),  # 1 slow
    (S(requests=49, buggy_code_rate=0.5), 5, "hold", 5),                   # breach below the sample size
    (S(requests=50, buggy_code_rate=0.5), 5, "rollback", 0),               # ... and at it
    (S(error_rate=0.05, p95_latency_per_token_s=0.25, buggy_code_rate=0.10), 5, "promote", 25),  # inclusive
])
def test_decide_canary(stats, weight, action, next_weight):
    d = decide_canary(stats, weight, STEPS, LIMITS)
    assert (d.action, d.next_weight) == (action, next_weight), d.reason
    assert d.figures["requests"] == stats.requests


PROD = ProductionThresholds(min_acceptance_rate=0.75, max_buggy_code_rate=0.05, max_p95_latency_s=2.0, min_requests=50)


@pytest.mark.parametrize("stats,retrain,needle", [
    (S(), False, None),
    (S(acceptance_rate=0.6), True, "acceptance rate"),
    (S(buggy_code_rate=0.2), True, "buggy-code rate"),
    (S(p95_latency_s=2.5), True, "p95 latency"),
    (S(acceptance_rate=None), False, None),                  # no feedback yet: no acceptance verdict
    (S(requests=10, acceptance_rate=0.1), False, "only 10 requests"),
])
def test_production_quality(stats, retrain, needle):
    v = production_quality(stats, PROD)
    assert v.retrain is retrain
    if needle:
        assert any(needle in r for r in v.reasons)
