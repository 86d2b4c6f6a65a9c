"""Column types inferred from a CSV batch: the first type every present value fits, also when
the value that rules a type out comes long after the sample the inference starts from."""

from __future__ import annotations

import polars as pl
import pytest

from conveyor.packs.workbench.tables import INFER_SAMPLE, infer

LATE = INFER_SAMPLE + 500  # past the sample


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "2", None, "-3"], "Int64"),
        (["1.5", "2", "3e2"], "Float64"),
        (["true", "False", "TRUE"], "Boolean"),
        (["2024-01-05", "2024-02-10"], "Date"),
        (["2024-01-05 10:00:00", "2024-02-10 11:30:00"], "Datetime"),
        (["great food", "1", "2024-01-05"], "String"),
        ([None, None], "String"),
        ([str(i) for i in range(LATE)] + ["2.5"], "Float64"),
        ([str(i) for i in range(LATE)] + ["n/a"], "String"),
        (["2024-01-05"] * LATE + ["yesterday"], "String"),
    ],
)
def test_infer_picks_the_first_type_every_value_fits(values: list[str | None], expected: str) -> None:
    assert infer(pl.Series("c", values, dtype=pl.String)) == expected
