"""Which IDE feedback may become training text, and what that text is.

- One example per completion: the LAST event on it decides (accept then reject is a reject).
- At most ``max_per_key`` examples per API key per time window (a key posting thousands of accepts with
  arbitrary ``final_code`` cannot flood the training data); the earliest are kept.
- The text is clean source: the prefix the IDE sent, the accepted completion (or the developer's final
  code in its place), and the suffix -- never the rendered prompt with FIM markup or chat role tags. A chat
  completion contributes its code (the final code, else the code blocks of the answer).

Everything dropped is counted by reason. The gate after this (quality rules, scrub, the independent
leftover check, dedup, decontamination) is the corpus's own, applied in ``defs/monitoring.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from codellm_assets.core.serving.assessor import extract_code
from codellm_assets.core.serving.backends.base import has_fim_markup
from codellm_assets.settings import Settings

KEPT_EVENTS = ("accept", "modify")


@dataclass
class Selection:
    rows: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    last_events: Counter[str] = field(default_factory=Counter)


def _window(t: datetime | None, window: timedelta) -> int:
    return int(t.timestamp() // window.total_seconds()) if t is not None else 0


def select_feedback(rows: Iterable[dict[str, Any]], *, max_per_key: int, window: timedelta) -> Selection:
    """``rows``: feedback joined to requests (``Store.feedback_examples``), any order. See the module doc."""
    out = Selection()
    last: dict[str, dict[str, Any]] = {}
    n = 0
    for r in sorted(rows, key=lambda r: r["feedback_id"]):
        n += 1
        last[r["completion_id"]] = r
    out.dropped["earlier_event_on_same_completion"] = n - len(last)
    per_key: Counter[tuple[str, int]] = Counter()
    for r in sorted(last.values(), key=lambda r: r["feedback_id"]):
        out.last_events[r["event"]] += 1
        if r["event"] not in KEPT_EVENTS:
            out.dropped[f"last_event_{r['event']}"] += 1
            continue
        who = r.get("api_key") or f"team:{r.get('team') or 'unknown'}"
        bucket = (who, _window(r.get("time"), window))
        if per_key[bucket] >= max_per_key:
            out.dropped["over_per_key_cap"] += 1
            continue
        per_key[bucket] += 1
        out.rows.append(r)
    return out


def example_text(row: dict[str, Any]) -> tuple[str | None, str | None]:
    """(source text, None) or (None, why there is none) for one selected feedback row."""
    kept = row.get("final_code")          # what the developer kept in place of the completion, if sent
    if str(row.get("completion_id", "")).startswith("chatcmpl-"):
        code = kept if kept is not None else extract_code(row.get("completion") or "")
        return (code, None) if code and code.strip() else (None, "no_code_in_chat_answer")
    if row.get("raw_prefix") is None:
        # stored before the gateway kept the IDE's own text: the rendered prompt holds FIM markup
        return None, "no_raw_prompt_stored"
    middle = kept if kept is not None else (row.get("completion") or "")
    text = row["raw_prefix"] + middle + (row.get("raw_suffix") or "")
    if has_fim_markup(text):      # a template the gateway could not take apart: never train on markup
        return None, "fim_markup"
    return (text, None) if text.strip() else (None, "empty")


@dataclass
class GateResult:
    kept: list[dict[str, Any]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    redactions: Counter[str] = field(default_factory=Counter)
    decontaminated: dict[str, list[str]] = field(default_factory=dict)


def through_the_corpus_gate(records: list[dict[str, Any]], settings: Settings,
                            extra_eval_items: Iterable[str | tuple[str, str]] = ()) -> GateResult:
    """The repo files' path for feedback records (corpus-shaped dicts with ``path`` and ``content``):
    quality rules -> scrub -> the independent leftover check (an example with a leftover is dropped: fail
    closed) -> decontamination against HumanEval and the company tasks -> exact + near dedup."""
    from codellm_assets.core.data import dedup, filters
    from codellm_assets.core.data.scrub.leftovers import LeftoverPolicy, find_leftovers
    from codellm_assets.core.data.scrub.scrubber import scrub_text

    out = GateResult()
    quality = filters.apply_quality_rules(records, settings.quality)
    out.dropped.update({f"quality:{k}": v for k, v in quality.dropped.items()})
    policy = LeftoverPolicy.from_scrub_settings(settings.scrub)
    scrubbed = {}
    for rec in quality.kept:
        res = scrub_text(rec["content"], settings.scrub)
        out.redactions.update(res.counts)
        if find_leftovers(res.text, policy):
            out.dropped["leftover_secret"] += 1
            continue
        scrubbed[rec["path"]] = {**rec, "content": res.text, "bytes": len(res.text.encode()),
                                 "redactions": sum(res.counts.values())}
    docs = [dedup.Doc(id=p, text=r["content"], repo=r["repo"], path=p) for p, r in scrubbed.items()]
    outcome = dedup.dedup_and_decontaminate(docs, settings.dedup, extra_eval_items=extra_eval_items)
    out.decontaminated = dict(outcome.decontam_hits)
    out.dropped["decontaminated"] += len(outcome.decontam_hits)
    kept_ids = set(outcome.kept_ids)
    out.dropped["duplicate"] += len(scrubbed) - len(outcome.decontam_hits) - len(kept_ids)
    out.kept = [r for p, r in sorted(scrubbed.items()) if p in kept_ids]
    return out
