"""The predictions pack without a database: the published models on worked examples computed
by hand from their coefficients, the per-row checks in seed 004's words, column matching, and
reading CSV and XLSX a chunk at a time with spreadsheet line numbers."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter

from conveyor.packs.predictions.columns import MissingColumns, map_columns, normalise
from conveyor.packs.predictions.scoring import ScoringOptions, prepare, score, split
from conveyor.packs.predictions.sources import CsvSource, XlsxSource, detect_format, last_record_end, record_end

HEADER = (
    "company_symbol", "company_name", "sector", "fiscal_year", "market_cap", "total_assets", "total_liabilities",
    "current_assets", "current_liabilities", "retained_earnings", "ebit", "revenue", "net_income",
    "net_income_prior", "funds_from_operations",
)  # fmt: skip

# Two companies, amounts in millions of dollars.
# ACME, a manufacturer: TA 1000, TL 400, CA 500, CL 200, RE 300, EBIT 150, sales 1200,
# market cap 900, NI 100 (80 the year before), funds from operations 140.
ACME = {
    "company_symbol": "ACME", "company_name": "Acme Corp", "sector": "Manufacturing", "fiscal_year": "2023",
    "market_cap": "900", "total_assets": "1000", "total_liabilities": "400", "current_assets": "500",
    "current_liabilities": "200", "retained_earnings": "300", "ebit": "150", "revenue": "1200",
    "net_income": "100", "net_income_prior": "80", "funds_from_operations": "140",
}  # fmt: skip
# BUST, a services firm in trouble: TA 100, TL 120, CA 30, CL 60, RE -50, EBIT -10, sales 80,
# market cap 5, NI -15 (-5 the year before), funds from operations -8.
BUST = {
    "company_symbol": "BUST", "company_name": "Bust Services", "sector": "Services", "fiscal_year": "2023",
    "market_cap": "5", "total_assets": "100", "total_liabilities": "120", "current_assets": "30",
    "current_liabilities": "60", "retained_earnings": "-50", "ebit": "-10", "revenue": "80",
    "net_income": "-15", "net_income_prior": "-5", "funds_from_operations": "-8",
}  # fmt: skip


def frame(*rows: dict[str, Any], first_row: int = 2) -> pl.DataFrame:
    columns = {c: [r.get(c) for r in rows] for c in HEADER}
    return pl.DataFrame(
        {"row": list(range(first_row, first_row + len(rows))), **columns},
        schema_overrides=dict.fromkeys(HEADER, pl.String),
    )


def scored(*rows: dict[str, Any], options: ScoringOptions | None = None) -> list[dict[str, Any]]:
    good, errors = split(prepare(frame(*rows), "annual"))
    assert errors.height == 0, errors.to_dicts()
    return score(good, "annual", options or ScoringOptions(amounts_in="millions")).to_dicts()


# --- the models on worked examples ------------------------------------------------------------


def test_altman_z_1968_for_a_manufacturer() -> None:
    # X1 = (500-200)/1000 = 0.3, X2 = 300/1000 = 0.3, X3 = 150/1000 = 0.15,
    # X4 = 900/400 = 2.25 (market value of equity / total liabilities), X5 = 1200/1000 = 1.2
    # Z = 1.2*0.3 + 1.4*0.3 + 3.3*0.15 + 0.6*2.25 + 1.0*1.2 = 0.36 + 0.42 + 0.495 + 1.35 + 1.2 = 3.825
    (acme,) = scored(ACME)
    assert acme["altman_model"] == "Z"
    assert acme["altman_z_score"] == pytest.approx(3.825, abs=1e-9)
    assert acme["zone"] == "safe"  # above 2.99


def test_altman_z_double_prime_1995_for_a_non_manufacturer() -> None:
    # X1 = (30-60)/100 = -0.3, X2 = -50/100 = -0.5, X3 = -10/100 = -0.1,
    # X4 = (100-120)/120 = -1/6 (book value of equity / total liabilities)
    # Z'' = 6.56*-0.3 + 3.26*-0.5 + 6.72*-0.1 + 1.05*(-1/6) = -1.968 - 1.63 - 0.672 - 0.175 = -4.445
    (bust,) = scored(BUST)
    assert bust["altman_model"] == "Z''"
    assert bust["altman_z_score"] == pytest.approx(-4.445, abs=1e-9)
    assert bust["zone"] == "distress"  # below 1.10


def test_the_same_firm_outside_manufacturing_gets_z_double_prime() -> None:
    # ACME's ratios, X4 = (1000-400)/400 = 1.5: Z'' = 6.56*0.3 + 3.26*0.3 + 6.72*0.15 + 1.05*1.5
    # = 1.968 + 0.978 + 1.008 + 1.575 = 5.529
    (acme,) = scored(ACME | {"sector": "Technology"})
    assert acme["altman_model"] == "Z''"
    assert acme["altman_z_score"] == pytest.approx(5.529, abs=1e-9)


def test_ohlson_o_score_1980_model_1_and_its_probability() -> None:
    # ACME: SIZE = ln(1000e6 dollars / (100/100)) = 9 ln 10 = 20.72326584
    # TLTA 0.4, WCTA 0.3, CLCA 200/500 = 0.4, OENEG 0, NITA 0.1, FUTL 140/400 = 0.35, INTWO 0,
    # CHIN = (100-80)/(100+80) = 1/9
    # O = -1.32 - 0.407*20.72326584 + 6.03*0.4 - 1.43*0.3 + 0.0757*0.4 - 1.72*0 - 2.37*0.1
    #     - 1.83*0.35 + 0.285*0 - 0.521/9
    #   = -1.32 - 8.43436920 + 2.412 - 0.429 + 0.03028 - 0.237 - 0.6405 - 0.05788889 = -8.67647809
    # P = 1 / (1 + e^8.67647809) = 0.000171
    (acme,) = scored(ACME)
    assert acme["ohlson_o_score"] == pytest.approx(-8.67647809, abs=1e-7)
    assert acme["probability_of_default"] == pytest.approx(1 / (1 + math.exp(8.67647809)), rel=1e-6)
    assert acme["probability_of_default"] == pytest.approx(0.000171, abs=5e-7)

    # BUST: SIZE = ln(100e6) = 8 ln 10 = 18.42068074; TLTA 1.2, WCTA -0.3, CLCA 60/30 = 2,
    # OENEG 1 (TL > TA), NITA -0.15, FUTL -8/120 = -1/15, INTWO 1 (two losses), CHIN = (-15+5)/(15+5) = -0.5
    # O = -1.32 - 0.407*18.42068074 + 6.03*1.2 - 1.43*-0.3 + 0.0757*2 - 1.72*1 - 2.37*-0.15
    #     - 1.83*(-1/15) + 0.285*1 - 0.521*-0.5
    #   = -1.32 - 7.49721706 + 7.236 + 0.429 + 0.1514 - 1.72 + 0.3555 + 0.122 + 0.285 + 0.2605 = -1.69781706
    # P = 1 / (1 + e^1.69781706) = 0.154751
    (bust,) = scored(BUST)
    assert bust["ohlson_o_score"] == pytest.approx(-1.69781706, abs=1e-7)
    assert bust["probability_of_default"] == pytest.approx(0.154751, abs=5e-7)


def test_ohlson_size_follows_the_unit_and_the_price_level() -> None:
    # Same firm in thousands with the price level doubled (index 200): SIZE falls by
    # ln(1000) + ln(2) = 6.90775528 + 0.69314718 = 7.60090246, so O rises by 0.407 * 7.60090246 = 3.0935673
    options = ScoringOptions(amounts_in="thousands", price_level_index=200)
    (acme,) = scored(ACME, options=options)
    assert acme["ohlson_o_score"] == pytest.approx(-8.67647809 + 3.0935673, abs=1e-6)


def test_ohlson_without_prior_income_or_funds_from_operations() -> None:
    # BUST without net_income_prior (INTWO = 0, CHIN = 0) nor funds from operations (net income -15
    # stands in: FUTL = -15/120 = -0.125). From the worked O of -1.69781706: INTWO 0 takes 0.285
    # away, CHIN 0 takes 0.2605 away, FUTL adds -1.83*-0.125 - 0.122 = 0.22875 - 0.122 = 0.10675:
    # O = -1.69781706 - 0.285 - 0.2605 + 0.10675 = -2.13656706
    (bust,) = scored(BUST | {"net_income_prior": None, "funds_from_operations": None})
    assert bust["ohlson_o_score"] == pytest.approx(-2.13656706, abs=1e-7)


def test_zmijewski_1984_score_and_probit_probability() -> None:
    # ACME: X = -4.336 - 4.513*0.1 + 5.679*0.4 + 0.004*(500/200) = -4.336 - 0.4513 + 2.2716 + 0.01 = -2.5057
    # BUST: X = -4.336 - 4.513*-0.15 + 5.679*1.2 + 0.004*(30/60) = -4.336 + 0.67695 + 6.8148 + 0.002 = 3.15775
    # P = Phi(X): Phi(-2.5057) = 0.006110, Phi(3.15775) = 0.999205
    acme, bust = scored(ACME, BUST)
    assert acme["zmijewski_score"] == pytest.approx(-2.5057, abs=1e-9)
    assert bust["zmijewski_score"] == pytest.approx(3.15775, abs=1e-9)
    assert acme["zmijewski_probability"] == pytest.approx(0.5 * math.erfc(2.5057 / math.sqrt(2)), rel=1e-9)
    assert acme["zmijewski_probability"] == pytest.approx(0.006110, abs=5e-7)
    assert bust["zmijewski_probability"] == pytest.approx(0.999205, abs=5e-7)


def test_risk_levels_follow_the_documented_cut_offs() -> None:
    acme, bust = scored(ACME, BUST)
    # ACME: safe zone, Ohlson 0.0002, Zmijewski 0.006: no model predicts failure.
    assert acme["risk_level"] == "low"
    # BUST: distress zone and Zmijewski 0.9992 >= 0.5: two models predict failure.
    assert bust["risk_level"] == "critical"
    # ACME with EBIT 10 and sales 900: Z = 0.36 + 0.42 + 3.3*0.01 + 1.35 + 0.9 = 3.063: still safe;
    # with retained earnings 0 too: Z = 0.36 + 0 + 0.033 + 1.35 + 0.9 = 2.643: grey -> medium.
    (grey,) = scored(ACME | {"ebit": "10", "revenue": "900", "retained_earnings": "0"})
    assert grey["zone"] == "grey" and grey["risk_level"] == "medium"


def test_quarterly_rows_use_the_same_ratios_and_name_their_quarter() -> None:
    rows = [
        {k: v for k, v in ACME.items() if k != "fiscal_year"} | {"fiscal_quarter": q}
        for q in ("2024Q3", "2024-q3", "Q3 2024", " 2024 Q3 ")
    ]
    data = pl.DataFrame(
        {"row": [2, 3, 4, 5], **{c: [r.get(c) for r in rows] for c in [*HEADER[:3], *HEADER[4:], "fiscal_quarter"]}},
        schema_overrides={c: pl.String for c in [*HEADER, "fiscal_quarter"] if c != "fiscal_year"},
    )
    good, errors = split(prepare(data, "quarterly"))
    assert errors.height == 0
    out = score(good, "quarterly", ScoringOptions(amounts_in="millions")).to_dicts()
    assert [r["fiscal_quarter"] for r in out] == ["2024Q3"] * 4
    assert all(r["altman_z_score"] == pytest.approx(3.825) for r in out)


# --- per-row errors ----------------------------------------------------------------------------


def errors_of(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return split(prepare(frame(*rows), "annual"))[1].to_dicts()


def test_row_errors_in_seed_004_words_with_the_row_number() -> None:
    errors = errors_of(
        ACME,
        ACME | {"company_symbol": "TEST123", "sector": " "},
        ACME | {"company_symbol": "INVALID", "market_cap": "12abc"},
        ACME | {"company_symbol": "NEG", "market_cap": "-1"},
        ACME | {"company_symbol": "ZERO", "total_assets": "0"},
        ACME | {"company_symbol": "NAN", "revenue": "nan"},
        ACME | {"company_symbol": "YEAR", "fiscal_year": "2023.5"},
        ACME | {"company_symbol": "FFO", "funds_from_operations": "n/a"},
        ACME | {"company_symbol": None},
    )
    assert errors == [
        {"row": 3, "company_symbol": "TEST123", "error": "Missing required field: sector"},
        {"row": 4, "company_symbol": "INVALID", "error": "Invalid market cap value"},
        {"row": 5, "company_symbol": "NEG", "error": "Invalid market cap value"},
        {"row": 6, "company_symbol": "ZERO", "error": "Invalid total assets value"},
        {"row": 7, "company_symbol": "NAN", "error": "Invalid revenue value"},
        {"row": 8, "company_symbol": "YEAR", "error": "Invalid fiscal year value"},
        {"row": 9, "company_symbol": "FFO", "error": "Invalid funds from operations value"},
        {"row": 10, "company_symbol": None, "error": "Missing required field: company_symbol"},
    ]


def test_a_market_cap_of_zero_and_negative_earnings_are_scored() -> None:
    assert errors_of(ACME | {"market_cap": "0", "ebit": "-5", "retained_earnings": "-1e3"}) == []


def test_blank_rows_are_skipped_not_errors() -> None:
    data = prepare(frame(ACME, {}, ACME), "annual")
    assert data["row"].to_list() == [2, 4]


# --- columns -------------------------------------------------------------------------------------


def test_headers_match_ignoring_case_spaces_and_underscores() -> None:
    header = [
        "Company Symbol",
        "SECTOR",
        "Market_Cap",
        "total assets",
        "TotalLiabilities",
        "current_assets",
        "Current Liabilities",
        "retained earnings",
        "EBIT",
        "Revenue",
        "Net Income",
        "Fiscal Year",
        "notes",
    ]
    columns = map_columns(header, "annual")
    assert columns.positions["market_cap"] == 2 and columns.positions["fiscal_year"] == 11
    assert "company_name" not in columns
    assert normalise("\ufeffCompany_Symbol ") == "companysymbol"


def test_missing_required_columns_are_all_named() -> None:
    with pytest.raises(MissingColumns, match=r"^Missing required columns: ebit, revenue$"):
        map_columns([c for c in HEADER if c not in ("ebit", "revenue")], "annual")


# --- reading files -------------------------------------------------------------------------------


def test_record_boundaries_ignore_newlines_inside_quotes() -> None:
    data = b'a,"x\ny",1\nb,2\n'
    assert record_end(data) == len(b'a,"x\ny",1\n')
    assert last_record_end(data) == len(data)
    assert last_record_end(b'a,1\nb,"open\nstill') == len(b"a,1\n")
    assert last_record_end(b'"no end\n') == -1


def write_csv(path: Path, rows: list[dict[str, Any]], header: tuple[str, ...] = HEADER, sep: str = ",") -> None:
    import csv

    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in header])


def rows_read(source: CsvSource | XlsxSource, chunk_rows: int) -> list[pl.DataFrame]:
    return list(source.chunks(chunk_rows, map_columns(source.header, "annual")))


def test_csv_chunks_keep_spreadsheet_line_numbers_across_chunks(tmp_path: Path) -> None:
    rows = [ACME | {"company_symbol": f"C{i}"} for i in range(5000)]
    rows[2999]["company_name"] = 'Spans "two"\nlines, with a comma'
    path = tmp_path / "upload.csv"
    write_csv(path, rows)
    source = CsvSource(path)
    assert source.estimated_rows() == 5001  # one name spans two lines
    chunks = rows_read(source, 500)
    assert len(chunks) > 1
    data = pl.concat(chunks)
    assert data["row"].to_list() == list(range(2, 5002))
    assert data.filter(pl.col("row") == 3001)["company_name"].item() == 'Spans "two"\nlines, with a comma'
    assert data["company_symbol"].to_list() == [f"C{i}" for i in range(5000)]


def test_csv_with_semicolons_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "upload.csv"
    write_csv(path, [ACME], sep=";")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    source = CsvSource(path)
    assert source.delimiter == ";" and source.header[0] == "company_symbol"
    (chunk,) = rows_read(source, 100)
    assert chunk["market_cap"].to_list() == ["900"]


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = workbook.add_worksheet()
    for i, row in enumerate(rows):
        sheet.write_row(i, 0, row)
    workbook.close()
    return out.getvalue()


def test_xlsx_rows_as_text_with_sheet_row_numbers(tmp_path: Path) -> None:
    header = list(HEADER)
    numbers = [2023, 900, 1000, 400, 500, 200, 300, 150, 1200, 100, 80, 140]
    path = tmp_path / "upload.xlsx"
    path.write_bytes(
        xlsx_bytes([header, ["ACME", "Acme", "Manufacturing", *numbers], ["BAD", None, "Tech", 2023, "x"]])
    )
    assert detect_format(path) == "xlsx"
    (chunk,) = rows_read(XlsxSource(path), 100)
    assert chunk["row"].to_list() == [2, 3]
    assert chunk["fiscal_year"].to_list() == ["2023", "2023"]
    assert chunk["market_cap"].to_list() == ["900", "x"]
    assert chunk["company_name"].to_list() == ["Acme", None]


def test_the_format_is_read_from_the_content(tmp_path: Path) -> None:
    cases = {
        "csv-named-xlsx.xlsx": (b"company_symbol,sector\nA,B\n", "csv"),
        "xlsx-named-csv.csv": (xlsx_bytes([["a"]]), "xlsx"),
        "png.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None),
        "legacy.xls": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, None),
        "empty.csv": (b"", None),
        "windows-1252.csv": ("company_symbol,company_name\nA,Soci\u00e9t\u00e9\n".encode("cp1252"), "csv"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert detect_format(path) == expected, name
