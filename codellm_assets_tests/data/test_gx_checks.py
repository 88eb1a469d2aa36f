"""gx_checks on large frames: GX sees a bounded, deterministic sample, every rule still runs on every row, and a
bad row outside the sample fails the validation (fail closed); the full frame never goes to pandas."""

from __future__ import annotations

import great_expectations.expectations as gxe
import polars as pl
import pytest

from codellm_assets.core.data.gx_checks import full_violations, validate_dataframe

ROWS, SAMPLE = 1000, 50   # GX sees every 20th row: 0, 20, 40, ...; row 7 is never in the sample


def frame(bad: dict | None = None, at: int = 7) -> pl.DataFrame:
    rows = [{"path": f"f{i}.py", "language": "python", "bytes": 100 + i, "content": f"x = {i}\n"} for i in range(ROWS)]
    if bad:
        rows[at] = {**rows[at], **bad}
    return pl.DataFrame(rows, schema={"path": pl.String, "language": pl.String, "bytes": pl.Int64,
                                      "content": pl.String})


# (expectation, a row breaking it) - each breaking row sits at index 7, outside the sample
RULES = [
    (lambda: gxe.ExpectColumnValuesToNotBeNull(column="content"), {"content": None}),
    (lambda: gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1, max_value=5000), {"bytes": 10**7}),
    (lambda: gxe.ExpectColumnValuesToBeBetween(column="bytes", min_value=1), {"bytes": 0}),
    (lambda: gxe.ExpectColumnValuesToBeInSet(column="language", value_set=["python", "go"]), {"language": "klingon"}),
    # no columnar equivalent: GX itself on every row, in batches
    (lambda: gxe.ExpectColumnValueLengthsToBeBetween(column="path", min_value=1, max_value=12), {"path": "x" * 40}),
]


@pytest.mark.parametrize(("make", "bad"), RULES, ids=[str(b) for _, b in RULES])
def test_a_bad_row_outside_the_sample_still_fails(make, bad):
    good = validate_dataframe(frame(), [make()], sample_rows=SAMPLE)
    assert good.success and good.rows == ROWS and good.rows_checked == SAMPLE
    report = validate_dataframe(frame(bad), [make()], sample_rows=SAMPLE)
    assert not report.success and report.outcomes[0].unexpected_count == 1
    assert report.rows_checked == SAMPLE and report.as_metadata()["sampled"] is True


@pytest.mark.parametrize(("make", "bad"), RULES[:4], ids=[str(b) for _, b in RULES[:4]])
def test_full_violations_counts_like_gx(make, bad):
    """The columnar rule agrees with GX on the same (small, unsampled) frame, bad rows and nulls included."""
    df = pl.concat([frame(bad, at=3).head(10), frame(bad, at=5).head(10)])
    assert full_violations(df, make()) == validate_dataframe(df, [make()]).outcomes[0].unexpected_count == 2


def test_table_row_count_is_checked_on_the_whole_frame():
    exp = gxe.ExpectTableRowCountToBeBetween(min_value=ROWS + 1)
    assert not validate_dataframe(frame(), [exp], sample_rows=SAMPLE).success
    assert validate_dataframe(frame(), [gxe.ExpectTableRowCountToBeBetween(min_value=ROWS)], sample_rows=SAMPLE).success


def test_small_frames_are_validated_whole_and_the_sample_is_deterministic(monkeypatch):
    small = validate_dataframe(frame().head(SAMPLE), [RULES[0][0]()], sample_rows=SAMPLE)
    assert small.rows_checked is None and small.as_metadata()["rows_checked_by_gx"] == SAMPLE
    converted = []
    real = pl.DataFrame.to_pandas
    monkeypatch.setattr(pl.DataFrame, "to_pandas", lambda self, *a, **k: (converted.append(self), real(self))[1])
    exps = [make() for make, _ in RULES]
    samples = []
    for _ in range(2):
        converted.clear()
        validate_dataframe(frame(), exps, sample_rows=SAMPLE)
        assert max(df.height for df in converted) <= SAMPLE, "a frame larger than the sample went to pandas"
        samples.append(converted[0]["path"].to_list())   # the sample goes first, then the batches of one rule
    assert samples[0] == samples[1] == [f"f{i}.py" for i in range(0, ROWS, 20)]
