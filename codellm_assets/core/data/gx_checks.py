"""Data-quality validation with great-expectations 1.x (ephemeral context, whole-dataframe batches).

dagster-ge only supports GX < 1, so the Dagster asset checks call this module directly. Each call
returns a plain report (success, per-expectation counts and a few unexpected examples) that the
check turns into metadata.
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

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def as_metadata(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
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


def validate_dataframe(df, expectations: list) -> ValidationReport:
    """Validate a pandas (or polars: converted) DataFrame against GX expectation objects."""
    import great_expectations as gx

    if hasattr(df, "to_pandas"):
        df = df.to_pandas()
    ctx = _gx_context()
    name = f"check-{uuid.uuid4().hex[:8]}"
    with _lock:
        source = ctx.data_sources.add_pandas(name)
        asset = source.add_dataframe_asset(name="frame")
        batch_def = asset.add_batch_definition_whole_dataframe("all")
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in expectations:
            suite.add_expectation(exp)
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
