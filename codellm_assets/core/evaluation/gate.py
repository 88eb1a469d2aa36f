"""The champion gate: challenger and reference scored on the SAME tasks, compared task by task.

Each gated metric is a statistic over per-task results (per-file results for held-out likelihood).
A paired bootstrap resamples the tasks (the same resample for both sides), recomputes the statistic
on each side and takes the difference; the verdict is a non-inferiority test on its two-sided
interval at ``eval.gate_confidence``:

- higher is better (pass@1; company score: repo_bench's macro mean over FIM task kinds of (EM + ES) / 2):
  passes iff the interval's LOWER end >= -margin;
- held-out bits per character (lower is better): passes iff the interval's UPPER end <= log2(1 + margin)
  (i.e. the challenger's per-character perplexity at most ``1 + margin`` times the reference's).

Fail closed: a gated metric missing on either side, different task sets, or fewer than
``eval.gate_min_tasks`` paired tasks (``eval.gate_min_files`` held-out files) fails its row. Below
``eval.gate_floor`` on both sides the company score of a tiny model is noise (it writes no working
code): that comparison is then reported but decided on held-out bits per character instead, which
such a model does measure (also paired).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codellm_assets.settings import EvalSettings

GATED = ("pass@1", "company_score")
FALLBACK = "holdout_bits_per_char"
_UNSIGNED = ("fingerprint", "run_id")   # what a value's fingerprint does not cover


@dataclass
class GateVerdict:
    passed: bool
    reference: str
    rows: list[dict]
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"passed": self.passed, "reference": self.reference, "confidence": self.confidence,
                "rows": self.rows, "notes": self.notes}


# ---- per-task statistics, vectorized over bootstrap resamples (idx: (B, n) task indices) -------------

Stat = Callable[[np.ndarray], np.ndarray]


def _pass_at_1(rows: Sequence[Mapping]) -> Stat:
    rate = np.array([r["correct"] / r["samples"] for r in rows], dtype=float)
    return lambda idx: rate[idx].mean(axis=1)


def _company_score(rows: Sequence[Mapping]) -> Stat:
    """repo_bench's headline on the FIM tasks: the macro mean over task kinds of the per-kind mean of
    ``(EM + ES) / 2`` (a kind absent from a resample is left out of that resample's mean)."""
    kinds = sorted({str(r["kind"]) for r in rows})
    value = np.array([(float(r["em"]) + float(r["es"])) / 2 for r in rows])
    member = [np.array([str(r["kind"]) == k for r in rows], dtype=float) for k in kinds]

    def stat(idx: np.ndarray) -> np.ndarray:
        total, present = np.zeros(idx.shape[0]), np.zeros(idx.shape[0])
        for m in member:                                          # one (B, n) slice per kind
            count = m[idx].sum(axis=1)
            total += np.divide((m * value)[idx].sum(axis=1), count, out=np.zeros(len(count)), where=count > 0)
            present += count > 0
        return total / np.maximum(present, 1)

    return stat


def _bits_per_char(rows: Sequence[Mapping]) -> Stat:
    nll = np.array([r["nll"] for r in rows], dtype=float)
    chars = np.array([r["chars"] for r in rows], dtype=float)
    return lambda idx: nll[idx].sum(axis=1) / np.maximum(chars[idx].sum(axis=1), 1.0) / math.log(2)


# metric -> (per-task table in the scores, key of a row, statistic, higher is better)
METRICS: dict[str, tuple[str, str, Callable[[Sequence[Mapping]], Stat], bool]] = {
    "pass@1": ("humaneval", "task_id", _pass_at_1, True),
    "company_score": ("company", "task_id", _company_score, True),
    FALLBACK: ("holdout", "id", _bits_per_char, False),
}


def paired_bootstrap(stat_c: Stat, stat_r: Stat, n: int, *, samples: int, confidence: float,
                     seed: int) -> tuple[float, float, float, float, float]:
    """(challenger, reference, delta, low, high): point estimates and the two-sided percentile interval
    of challenger - reference at ``confidence``, both sides evaluated on the same resampled tasks."""
    identity = np.arange(n)[None, :]
    point_c, point_r = float(stat_c(identity)[0]), float(stat_r(identity)[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    deltas = stat_c(idx) - stat_r(idx)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(deltas, [alpha, 1 - alpha])
    return point_c, point_r, point_c - point_r, float(low), float(high)


def _aligned(name: str, challenger: Mapping, reference: Mapping) -> tuple[list, list] | str:
    table, key, _, _ = METRICS[name]
    ours, theirs = challenger.get(table), reference.get(table)
    if not ours or not theirs:
        side = "challenger" if not ours else "reference"
        return f"missing on the {side}'s side: fails closed"
    by_key = {r[key]: r for r in theirs}
    if set(by_key) != {r[key] for r in ours} or len(by_key) != len(ours):
        return "challenger and reference were not scored on the same tasks: fails closed"
    return list(ours), [by_key[r[key]] for r in ours]


def compare(name: str, challenger: Mapping, reference: Mapping, ev: EvalSettings) -> dict:
    """One row of the verdict: point estimates, the paired interval, the bound it must meet, ok."""
    row: dict[str, Any] = {"metric": name, "n": 0, "ok": False}
    aligned = _aligned(name, challenger, reference)
    if isinstance(aligned, str):
        return {**row, "note": aligned}
    ours, theirs = aligned
    _, _, make_stat, higher_better = METRICS[name]
    try:
        stat_c, stat_r = make_stat(ours), make_stat(theirs)
    except (KeyError, TypeError, ValueError) as e:   # rows of another shape (an older benchmark's record)
        return {**row, "note": f"per-task rows without {e}: fails closed"}
    c, r, delta, low, high = paired_bootstrap(stat_c, stat_r, len(ours),
                                              samples=ev.gate_bootstrap_samples,
                                              confidence=ev.gate_confidence, seed=ev.gate_seed)
    bound = -ev.gate_margin if higher_better else math.log2(1 + ev.gate_margin)
    ok = low >= bound - 1e-12 if higher_better else high <= bound + 1e-12
    note = "higher is better: lower end >= -margin" if higher_better else \
        "lower is better: upper end <= log2(1 + margin)"
    least, knob = (ev.gate_min_files, "gate_min_files") if name == FALLBACK else (ev.gate_min_tasks, "gate_min_tasks")
    if len(ours) < least:
        ok, note = False, f"{len(ours)} paired tasks < eval.{knob} {least}: not enough evidence"
    return {"metric": name, "n": len(ours), "challenger": round(c, 4), "reference": round(r, 4),
            "delta": round(delta, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
            "bound": round(bound, 4), "ok": bool(ok), "note": note}


def decide(challenger: Mapping, reference: Mapping, *, reference_label: str, ev: EvalSettings) -> GateVerdict:
    """The verdict over the gated metrics (see the module docstring). ``challenger`` / ``reference`` are
    per-task score tables as written by :func:`evaluate.paired_record`."""
    rows = [compare(name, challenger, reference, ev) for name in GATED]
    notes = []
    company = next(r for r in rows if r["metric"] == "company_score")
    if "challenger" in company and max(company["challenger"], company["reference"]) < ev.gate_floor:
        company["ok"] = None   # reported, not decisive
        company["note"] = f"both below eval.gate_floor {ev.gate_floor}: decided on held-out bits per character"
        rows.append(compare(FALLBACK, challenger, reference, ev))
        notes.append(company["note"])
    passed = all(r["ok"] is not False for r in rows) and any(r["ok"] for r in rows)
    return GateVerdict(bool(passed), reference_label, rows, ev.gate_confidence, notes)


def decide_scores(eval_scores: Mapping, ev: EvalSettings) -> GateVerdict:
    """The verdict for an ``eval_scores`` value (what the check records and registration re-derives)."""
    paired = eval_scores.get("paired") or {}
    return decide(paired.get("challenger") or {}, paired.get("reference") or {},
                  reference_label=str(eval_scores.get("reference_label", "reference")), ev=ev)


# ---- identity of an eval_scores value --------------------------------------------------------------

def fingerprint(value: Mapping) -> str:
    """sha256 of the value's canonical JSON (without its own fingerprint and run id): its data version."""
    body = {k: v for k, v in value.items() if k not in _UNSIGNED}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def seal(value: dict, run_id: str) -> dict:
    """The value as the IO manager will store it (JSON round trip), with its run id and fingerprint."""
    value = json.loads(json.dumps(value, default=str))
    value["run_id"] = run_id
    value["fingerprint"] = fingerprint(value)
    return value


def identity_problems(value: Mapping, *, run_id: str | None, data_version: str | None) -> list[str]:
    """Why ``value`` is not the materialization (run id, data version) it is said to be; [] if it is."""
    problems = []
    if value.get("fingerprint") != fingerprint(value):
        problems.append("the stored eval_scores value does not match its own fingerprint (edited after the run)")
    if not run_id:
        problems.append("the eval_scores materialization was not produced by a run (a reported event)")
    elif value.get("run_id") != run_id:
        problems.append(f"the stored eval_scores value comes from run {value.get('run_id')}, not from run "
                        f"{run_id} of the materialization being consumed")
    if data_version != value.get("fingerprint"):
        problems.append(f"data version {data_version} of the materialization is not the stored value's "
                        f"{value.get('fingerprint')}")
    return problems
