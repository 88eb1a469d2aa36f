"""Data-quality validation with great-expectations 1.x (ephemeral context, whole-dataframe batches).

dagster-ge only supports GX < 1, so the Dagster asset checks call this module directly. Each call
returns a plain report (success, per-expectation counts and a few unexpected examples) that the
check turns into metadata.

Bounded memory: GX validates pandas frames, and converting a whole corpus (every file's content) to pandas
costs several times its size. So above ``sample_rows`` rows GX sees a deterministic, evenly spread sample
(every k-th row: the same rows on every run of the same frame, from the whole frame rather than its head),
and every expectation is ALSO evaluated on every row by polars, columnar and without copying the content
(``full_violations``): a bad row outside the sample still fails the check. An expectation polars cannot
evaluate is validated by GX on every row, in batches of ``sample_rows``: never only on the sample (fail closed).
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

_lock = threading.Lock()
_context = None


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: list[Any] = field(default_factory=list)


@dataclass
class ValidationReport:
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome]
    rows_checked: int | None = None   # rows GX saw (a sample of ``rows``); None: all of them

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_metadata(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_checked_by_gx": self.rows if self.rows_checked is None else self.rows_checked,
            "sampled": self.rows_checked is not None,
            "expectations": len(self.outcomes),
            "failed_expectations": len(self.failed),
            "results": [
                {"expectation": o.expectation, "column": o.column, "success": o.success,
                 "unexpected_count": o.unexpected_count, "examples": [str(e)[:120] for e in o.examples[:5]]}
                for o in self.outcomes
            ],
        }


def _gx_context():
    global _context
    with _lock:
        if _context is None:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _context = gx.get_context(mode="ephemeral")
            # Progress bars per metric flood the Dagster logs with tqdm lines.
            _context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        return _context


def validate_dataframe(df, expectations: list, *, sample_rows: int | None = None) -> ValidationReport:
    """Validate a polars (or pandas) DataFrame against GX expectation objects.

    A polars frame of more than ``sample_rows`` rows: GX on an evenly spread sample plus every expectation on
    every row (see the module docstring); ``rows_checked`` in the report says how many rows GX saw.
    """
    import polars as pl

    if not isinstance(df, pl.DataFrame) or sample_rows is None or df.height <= sample_rows:
        return _validate_pandas(df.to_pandas() if hasattr(df, "to_pandas") else df, expectations)
    step = -(-df.height // sample_rows)   # ceil: at most sample_rows rows, spread over the whole frame
    sample = df.gather_every(step)
    report = _validate_pandas(sample.to_pandas(), expectations)
    on_sample = {(o.expectation, o.column): o for o in report.outcomes}
    combined = []
    for exp in expectations:
        outcome = on_sample[(exp.expectation_type, getattr(exp, "column", None))]
        full = full_violations(df, exp)
        if full is None and outcome.column is None:   # a table-level rule a sample cannot answer: fail closed
            combined.append(ExpectationOutcome(outcome.expectation, None, False, 1,
                                               ["not evaluable on a sampled frame; raise checks.gx_sample_rows"]))
            continue
        if full is None:   # no columnar equivalent: GX itself on every row, a batch at a time
            full = sum(_validate_pandas(df.slice(i, sample_rows).to_pandas(), [exp]).outcomes[0].unexpected_count
                       for i in range(0, df.height, sample_rows))
        if outcome.column is None:   # a table-level rule (row count): only the whole frame can answer it
            combined.append(ExpectationOutcome(outcome.expectation, None, full == 0, full))
            continue
        combined.append(ExpectationOutcome(
            outcome.expectation, outcome.column, outcome.success and full == 0,
            max(full, outcome.unexpected_count), outcome.examples))
    return ValidationReport(all(o.success for o in combined), df.height, combined, rows_checked=sample.height)


def full_violations(df, exp) -> int | None:
    """How many rows of the polars frame ``df`` break ``exp`` (GX semantics: nulls are not "unexpected" except
    for the not-null rule); None for an expectation type without a columnar equivalent here."""
    import polars as pl

    kind = type(exp).__name__
    if kind == "ExpectTableRowCountToBeBetween":
        low, high = exp.min_value, exp.max_value
        return int((low is not None and df.height < low) or (high is not None and df.height > high))
    col = getattr(exp, "column", None)
    if col is None or col not in df.columns or getattr(exp, "mostly", 1.0) not in (None, 1, 1.0):
        return None
    if kind == "ExpectColumnValuesToNotBeNull":
        return int(df[col].null_count())
    if kind == "ExpectColumnValuesToBeInSet":
        bad = ~pl.col(col).is_in(list(exp.value_set))
    elif kind == "ExpectColumnValuesToBeBetween":
        if getattr(exp, "strict_min", False) or getattr(exp, "strict_max", False):
            return None
        bad = pl.lit(False)
        if exp.min_value is not None:
            bad = bad | (pl.col(col) < exp.min_value)
        if exp.max_value is not None:
            bad = bad | (pl.col(col) > exp.max_value)
    else:
        return None
    return int(df.select(bad.fill_null(False).sum()).item())


def _validate_pandas(df, expectations: list) -> ValidationReport:
    import great_expectations as gx

    ctx = _gx_context()
    name = f"check-{uuid.uuid4().hex[:8]}"
    with _lock:
        source = ctx.data_sources.add_pandas(name)
        asset = source.add_dataframe_asset(name="frame")
        batch_def = asset.add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in expectations:
            # A copy: GX ties an expectation to the suite it joins, and the same object is validated again
            # (every batch of a large frame, every run of a check)
            suite.add_expectation(exp.copy(update={"id": None}))
        vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch_def, suite=suite))
    try:
        result = vd.run(batch_parameters={"dataframe": df})
    finally:
        with _lock:
            ctx.validation_definitions.delete(name)
            ctx.suites.delete(name)
            ctx.data_sources.delete(name)
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        res = r.result or {}
        outcomes.append(ExpectationOutcome(
            expectation=cfg.type, column=cfg.kwargs.get("column"), success=bool(r.success),
            unexpected_count=int(res.get("unexpected_count") or (0 if r.success else 1)),
            examples=list(res.get("partial_unexpected_list") or [])[:5],
        ))
    return ValidationReport(success=all(o.success for o in outcomes), rows=len(df), outcomes=outcomes)
