"""Reading tables a batch at a time: CSV, JSON Lines, Parquet and XLSX.

CSV is read with the standard library's reader over binary lines, so that every record
knows the physical line it starts on (quoted newlines included) and each line is decoded on
its own: UTF-8, or Windows-1252 where a line is not UTF-8 (a file pasted together from two
systems). A record with the wrong number of fields is a malformed row, reported with its
line number and left out. Rows are gathered into polars frames of `batch_rows` rows at most;
the schema (integer, float, boolean, date, datetime or text) is inferred from the first batch
and later batches are cast to it, a value that does not fit becoming null and reported once
per column and batch. Memory follows the batch, not the file.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

FORMATS = ("csv", "jsonl", "parquet", "xlsx")
DEFAULT_BATCH_ROWS = 100_000
BOOLEANS = {"true": True, "false": False, "yes": True, "no": False}
csv.field_size_limit(64 * 1024 * 1024)


@dataclass
class RowError:
    line: int
    message: str
    column: str | None = None
    code: str = "MALFORMED_ROW"  # or BAD_VALUE (a value unlike its column's type), RECODED_LINE


@dataclass
class Batch:
    frame: pl.DataFrame
    errors: list[RowError]
    bytes_read: int  # of the file, so far
    rows_read: int  # records seen so far, good or not


@dataclass
class ReadState:
    bytes_read: int = 0
    recoded_lines: list[int] = field(default_factory=list)


def detect_format(path: Path) -> str:
    """By content first (Parquet and XLSX have signatures), then by extension."""
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04":
        return "xlsx"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return "csv"


def read_batches(path: Path, file_format: str, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Batch]:
    readers = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet, "xlsx": _xlsx}
    return readers[file_format](path, batch_rows)


# --- CSV -------------------------------------------------------------------------------------


def _decoded_lines(f: IO[bytes], state: ReadState) -> Iterator[str]:
    first = True
    for number, raw in enumerate(f, start=1):
        state.bytes_read += len(raw)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("cp1252", errors="replace")
            state.recoded_lines.append(number)
        if first:
            first = False
            line = line.removeprefix("\ufeff")
        yield line


def unique_names(header: list[str]) -> list[str]:
    names: list[str] = []
    for n, raw in enumerate(header, start=1):
        name = raw.strip() or f"column_{n}"
        base, k = name, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _csv(path: Path, batch_rows: int) -> Iterator[Batch]:
    state = ReadState()
    with path.open("rb") as f:
        sample = f.read(64 * 1024).decode("utf-8", errors="replace")
        f.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(_decoded_lines(f, state), delimiter=dialect.delimiter, quotechar='"', doublequote=True)
        last_line = 0
        header: list[str] | None = None
        rows: list[list[str]] = []
        lines: list[int] = []
        errors: list[RowError] = []
        records = 0
        caster = Caster()
        try:
            for record in reader:
                line, last_line = last_line + 1, reader.line_num
                if not record or record == [""]:
                    continue
                if header is None:
                    header = unique_names(record)
                    continue
                records += 1
                if len(record) != len(header):
                    errors.append(RowError(line, f"expected {len(header)} fields, found {len(record)}"))
                else:
                    rows.append(record)
                    lines.append(line)
                if len(rows) >= batch_rows:
                    yield caster.batch(header, rows, lines, errors, state, records)
                    rows, lines, errors = [], [], []
        except csv.Error as exc:  # an unterminated quote runs to the end of the file
            errors.append(RowError(last_line + 1, f"unreadable from here to the end of the file: {exc}"))
        for number in state.recoded_lines:
            errors.append(RowError(number, "not UTF-8: read as Windows-1252", code="RECODED_LINE"))
        state.recoded_lines.clear()
        if header is None:
            raise ValueError("the file has no header line")
        yield caster.batch(header, rows, lines, errors, state, records)


# --- schema ---------------------------------------------------------------------------------------


class Caster:
    """Infers each column's type from the first batch and casts every batch to it."""

    def __init__(self) -> None:
        self.schema: dict[str, Any] | None = None

    def batch(
        self,
        header: list[str],
        rows: list[list[str]],
        lines: list[int],
        errors: list[RowError],
        state: ReadState,
        records: int,
    ) -> Batch:
        import polars as pl

        raw = pl.DataFrame(rows, schema=dict.fromkeys(header, pl.String), orient="row")
        raw = raw.with_columns(pl.col(c).str.strip_chars().replace("", None) for c in header)
        if self.schema is None:
            self.schema = {c: infer(raw[c]) for c in header}
        columns = []
        for name, dtype in self.schema.items():
            values, bad = cast(raw[name], dtype)
            if bad is not None:
                line = lines[int(bad.arg_true()[0])]
                errors.append(
                    RowError(line, f"{bad.sum()} value(s) of column {name!r} are not {dtype}", name, "BAD_VALUE")
                )
            columns.append(values)
        return Batch(pl.DataFrame(columns), errors, state.bytes_read, records)


DTYPES = ("Int64", "Float64", "Boolean", "Date", "Datetime", "String")


def cast(series: pl.Series, dtype: str) -> tuple[pl.Series, pl.Series | None]:
    """The series as `dtype`, and a mask of values that did not fit (None when all did)."""
    import polars as pl

    if series.dtype != pl.String:
        series = series.cast(pl.String)
    if dtype == "String":
        return series, None
    if dtype == "Int64":
        out = series.str.to_integer(strict=False)
    elif dtype == "Float64":
        out = series.cast(pl.Float64, strict=False)
    elif dtype == "Boolean":
        out = series.str.to_lowercase().replace_strict(BOOLEANS, default=None, return_dtype=pl.Boolean)
    else:
        try:
            if dtype == "Date":
                out = series.str.to_date(strict=False)
            else:
                out = series.str.to_datetime(strict=False, time_unit="us")
        except pl.exceptions.ComputeError:  # no format fits the first values
            out = pl.Series(series.name, [None] * series.len(), pl.Date if dtype == "Date" else pl.Datetime("us"))
    bad = out.is_null() & series.is_not_null()
    return out.alias(series.name), bad if bad.any() else None


INFER_SAMPLE = 1000


def infer(series: pl.Series) -> str:
    """The first of DTYPES that every present value fits.

    Tried on a sample first: a type the sample refuses, the whole series refuses too, so only
    the sample's type (and, where the rest of the series misfits, the wider ones after it) is
    cast over the whole series. Casting 100,000 review texts to each of five types to learn
    they are text took most of a CSV parse."""
    present = series.drop_nulls()
    if present.len() == 0:
        return "String"
    sample = present.head(INFER_SAMPLE)
    first = next((i for i, dtype in enumerate(DTYPES[:-1]) if cast(sample, dtype)[1] is None), len(DTYPES) - 1)
    for dtype in DTYPES[first:-1]:
        if cast(present, dtype)[1] is None:
            return dtype
    return "String"


# --- JSON Lines, Parquet, XLSX ------------------------------------------------------------------------


def _jsonl(path: Path, batch_rows: int) -> Iterator[Batch]:
    import polars as pl

    state = ReadState()
    records: list[dict[str, Any]] = []
    errors: list[RowError] = []
    count = 0
    schema: dict[str, Any] | None = None
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            state.bytes_read += len(raw)
            if not raw.strip():
                continue
            count += 1
            try:
                value = json.loads(codecs.decode(raw, "utf-8", errors="replace"))
            except json.JSONDecodeError as exc:
                errors.append(RowError(number, f"not JSON: {exc.msg}"))
                continue
            if not isinstance(value, dict):
                errors.append(RowError(number, "not a JSON object"))
                continue
            records.append(value)
            if len(records) >= batch_rows:
                frame = pl.DataFrame(records, infer_schema_length=None)
                schema = schema or dict(frame.schema)
                yield Batch(_conform(frame, schema), errors, state.bytes_read, count)
                records, errors = [], []
    frame = pl.DataFrame(records, infer_schema_length=None) if records else pl.DataFrame()
    schema = schema or dict(frame.schema)
    yield Batch(_conform(frame, schema), errors, state.bytes_read, count)


def _conform(frame: pl.DataFrame, schema: dict[str, Any]) -> pl.DataFrame:
    import polars as pl

    return frame.select(
        (pl.col(name).cast(dtype, strict=False) if name in frame.columns else pl.lit(None, dtype)).alias(name)
        for name, dtype in schema.items()
    )


def _parquet(path: Path, batch_rows: int) -> Iterator[Batch]:
    import polars as pl

    size = path.stat().st_size
    total = pl.scan_parquet(path).select(pl.len()).collect().item()
    offset = 0
    while True:
        frame = pl.scan_parquet(path).slice(offset, batch_rows).collect()
        offset += frame.height
        yield Batch(frame, [], size * offset // max(total, 1), offset)
        if frame.height < batch_rows:
            return


def _xlsx(path: Path, batch_rows: int) -> Iterator[Batch]:
    from python_calamine import CalamineWorkbook

    size = path.stat().st_size
    sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0)
    total = max(sheet.total_height, 1)
    state = ReadState()
    caster = Caster()
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    errors: list[RowError] = []
    records = 0
    for number, values in enumerate(sheet.iter_rows(), start=1):
        cells = ["" if v is None else str(v) for v in values]
        if header is None:
            if any(cells):
                header = unique_names(cells)
            continue
        if not any(cells):
            continue
        records += 1
        rows.append((cells + [""] * len(header))[: len(header)])
        lines.append(number)
        if len(rows) >= batch_rows:
            state.bytes_read = size * number // total
            yield caster.batch(header, rows, lines, errors, state, records)
            rows, lines, errors = [], [], []
    if header is None:
        raise ValueError("the sheet has no header row")
    state.bytes_read = size
    yield caster.batch(header, rows, lines, errors, state, records)
