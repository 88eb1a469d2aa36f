"""Which feedback becomes training text: the last event per completion, a cap per key per window, and the
text itself (the IDE's prefix + kept code + suffix; the code of a chat answer; never the rendered prompt)."""

from __future__ import annotations

from datetime import datetime, timedelta

from codellm_assets.core.monitoring.feedback_examples import example_text, select_feedback

T0 = datetime(2026, 12, 1, 9, 0)


def row(fid: int, cid: str, event: str, key: str | None = "cl-a", hours: float = 0, **kw) -> dict:
    return {"feedback_id": fid, "completion_id": cid, "event": event, "api_key": key, "team": "bars",
            "time": T0 + timedelta(hours=hours), **kw}


def test_the_last_event_on_a_completion_decides():
    rows = [row(1, "cmpl-1", "accept"), row(2, "cmpl-2", "reject"), row(3, "cmpl-1", "reject"),
            row(4, "cmpl-2", "modify", final_code="x = 2\n"), row(5, "cmpl-3", "accept"), row(6, "cmpl-3", "accept")]
    sel = select_feedback(list(reversed(rows)), max_per_key=10, window=timedelta(hours=24))
    assert [r["completion_id"] for r in sel.rows] == ["cmpl-2", "cmpl-3"]
    assert sel.rows[0]["feedback_id"] == 4 and sel.rows[1]["feedback_id"] == 6
    assert dict(sel.dropped) == {"earlier_event_on_same_completion": 3, "last_event_reject": 1}
    assert dict(sel.last_events) == {"reject": 1, "modify": 1, "accept": 1}


def test_the_cap_is_per_key_and_per_window():
    rows = [row(i, f"cmpl-a{i}", "accept", hours=i * 0.1) for i in range(5)]            # key a, one window
    rows += [row(10 + i, f"cmpl-b{i}", "accept", key="cl-b") for i in range(2)]          # key b
    rows += [row(20 + i, f"cmpl-n{i}", "accept", hours=25 + i) for i in range(3)]        # key a, next day
    rows += [row(30 + i, f"cmpl-t{i}", "accept", key=None) for i in range(4)]            # no key: its team
    sel = select_feedback(rows, max_per_key=3, window=timedelta(hours=24))
    kept = [r["completion_id"] for r in sel.rows]
    assert kept == ["cmpl-a0", "cmpl-a1", "cmpl-a2", "cmpl-b0", "cmpl-b1", "cmpl-n0", "cmpl-n1", "cmpl-n2",
                    "cmpl-t0", "cmpl-t1", "cmpl-t2"]
    assert sel.dropped["over_per_key_cap"] == 3


def test_example_text_is_source_not_the_rendered_prompt():
    fim = row(1, "cmpl-1", "accept", prompt="<fim_prefix>def f():\n<fim_suffix>\n<fim_middle>",
              completion="    return 1\n", raw_prefix="def f():\n", raw_suffix="\nprint(f())\n")
    assert example_text(fim) == ("def f():\n    return 1\n\nprint(f())\n", None)
    modified = {**fim, "event": "modify", "final_code": "    return 2\n"}
    assert example_text(modified) == ("def f():\n    return 2\n\nprint(f())\n", None)
    chat = row(2, "chatcmpl-2", "accept", prompt="<|user|>\nsort\n<|assistant|>\n",
               completion="Here:\n```python\nxs.sort()\n```\n", raw_prefix=None)
    assert example_text(chat) == ("xs.sort()\n", None)
    old = {**fim, "raw_prefix": None}          # stored before the raw prefix was kept
    assert example_text(old) == (None, "no_raw_prompt_stored")
    markup = {**fim, "raw_prefix": "<fim_prefix>def f():\n", "raw_suffix": "<fim_middle>"}   # fail closed
    assert example_text(markup) == (None, "fim_markup")
