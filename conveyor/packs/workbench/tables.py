"""Reading tables a batch at a time: CSV, JSON Lines, Parquet and XLSX.

CSV is read with the standard library's reader, so that every record knows the physical line
it starts on (quoted newlines included). The text comes in blocks decoded whole as UTF-8; a
block that is not UTF-8 is decoded line by line, Windows-1252 where a line is not UTF-8 (a file
pasted together from two systems). Records are taken a slice at a time and each slice becomes
a frame at once (no Python code per record unless the slice holds a malformed or blank one);
tests/test_workbench_csv_blocks.py checks the result against a record-by-record read.
A record with the wrong number of fields is a malformed row, reported with its
line number and left out. Rows are gathered into polars frames of `batch_rows` rows at most;
the schema (integer, float, boolean, date, datetime or text) is inferred from the first batch
and later batches are cast to it, a value that does not fit becoming null and reported once
per column and batch. Memory follows the batch, not the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
from collections.abc import Iterator, Sequence
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


# A block lives as bytes, decoded text and the reader's StringIO (4 bytes a character) at once,
# with the block before it: ~11 times its size. bench.workloads on 150 MB: 8 MB blocks 222 MB
# over the base, 1 MB 135 MB, and no slower (the reader's per-block cost is small).
BLOCK_BYTES = 1024 * 1024
SLICE_RECORDS = 10_000


class _Source:
    """The file's text a block at a time, for one csv.reader over all of it: each block is cut
    at a line end and decoded whole as UTF-8, or line by line where it is not UTF-8 (a line
    that is not UTF-8 is read as Windows-1252 and its number kept). Lines end at "\\n" only,
    as binary lines do. The reader pulls lines through itertools.chain (no Python code per
    line); `mark` and `since` give the text from a point on again, for the rare slice of
    records that has to be read a second time."""

    def __init__(self, f: IO[bytes], state: ReadState) -> None:
        self.f = f
        self.state = state
        self.lines_before = 0  # line ends in the blocks read so far
        self.blocks: list[io.StringIO] = []  # since the last mark
        self.current: io.StringIO | None = None

    def _blocks(self) -> Iterator[io.StringIO]:
        carry = b""
        first = True
        while True:
            data = self.f.read(BLOCK_BYTES)
            if not data:
                if not carry:
                    return
                block, carry = carry, b""  # the last line, without a line end
            else:
                data = carry + data
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one long line: read on
                    carry = data
                    continue
                block, carry = data[:cut], data[cut:]
            self.state.bytes_read += len(block)
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                text = self._by_line(block)
            self.lines_before += block.count(b"\n")
            if first:
                text, first = text.removeprefix("\ufeff"), False
            self.current = io.StringIO(text, newline="\n")
            self.blocks.append(self.current)
            yield self.current

    def _by_line(self, block: bytes) -> str:
        out = []
        for number, raw in enumerate(block.split(b"\n"), start=self.lines_before + 1):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("cp1252", errors="replace"))
                self.state.recoded_lines.append(number)
        return "\n".join(out)

    def lines(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._blocks())

    def mark(self) -> tuple[io.StringIO | None, int]:
        self.blocks = [self.current] if self.current is not None else []
        return self.current, self.current.tell() if self.current is not None else 0

    def since(self, mark: tuple[io.StringIO | None, int]) -> str:
        """The text pulled since `mark` (to the end of the last block pulled)."""
        block, at = mark
        parts = [b.getvalue() for b in self.blocks]
        if block is not None and parts:
            parts[0] = parts[0][at:]
        return "".join(parts)


def _record_lines(records: list[list[str]], start: int, end: int) -> Sequence[int]:
    """The line each record starts on, the first on line start + 1; a record spans one line
    more for every line end inside its quoted fields."""
    if end - start == len(records):
        return range(start + 1, end + 1)
    out: list[int] = []
    line = start
    for record in records:
        out.append(line + 1)
        line += 1 + sum(value.count("\n") for value in record)
    return out


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
    """Records are read SLICE_RECORDS at a time (`list(islice(reader))`: no Python code per
    record); only a slice with a malformed or blank record is walked record by record."""
    import polars as pl

    state = ReadState()
    with path.open("rb") as f:
        sample = f.read(64 * 1024).decode("utf-8", errors="replace")
        f.seek(0)
        try:
            dialect: Any = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        options = {"delimiter": dialect.delimiter, "quotechar": '"', "doublequote": True}
        source = _Source(f, state)
        reader = csv.reader(source.lines(), **options)
        header: list[str] | None = None
        # Each slice's records become a frame at once: a batch's worth of Python lists kept
        # alive would make every garbage collection walk them all.
        frames: list[pl.DataFrame] = []
        held = 0  # rows in `frames`
        lines: list[int] = []
        errors: list[RowError] = []
        records = 0
        caster = Caster()
        unreadable: RowError | None = None
        while unreadable is None:
            mark, start = source.mark(), reader.line_num
            try:
                chunk = list(itertools.islice(reader, SLICE_RECORDS))
                numbers = _record_lines(chunk, start, reader.line_num)
            except csv.Error:  # read the slice again, record by record, up to the error
                again = csv.reader(io.StringIO(source.since(mark), newline="\n"), **options)
                chunk, numbers = [], []
                before = 0
                try:
                    for record in again:
                        chunk.append(record)
                        numbers.append(start + before + 1)
                        before = again.line_num
                except csv.Error as exc:  # an unterminated quote runs to the end of the file
                    unreadable = RowError(start + before + 1, f"unreadable from here to the end of the file: {exc}")
                    read = start + again.line_num  # lines after it were decoded, not read
                    state.recoded_lines = [n for n in state.recoded_lines if n <= read]
            if not chunk and unreadable is None:
                break
            width = len(header) if header is not None else -1
            if header is None or not all(len(record) == width for record in chunk):
                good: list[list[str]] = []
                kept: list[int] = []
                for record, line in zip(chunk, numbers, strict=True):
                    if not record or record == [""]:
                        continue
                    if header is None:
                        header = unique_names(record)
                        width = len(header)
                        continue
                    records += 1
                    if len(record) != width:
                        errors.append(RowError(line, f"expected {width} fields, found {len(record)}"))
                    else:
                        good.append(record)
                        kept.append(line)
                chunk, numbers = good, kept
            else:
                records += len(chunk)
            if header is not None and chunk:
                frames.append(_raw_frame(header, chunk))
                lines += numbers
                held += len(chunk)
            del chunk
            while header is not None and held >= batch_rows:
                whole = pl.concat(frames) if len(frames) > 1 else frames[0]
                yield caster.batch(header, whole.head(batch_rows), lines[:batch_rows], errors, state, records)
                rest = whole.slice(batch_rows)
                frames, held, lines, errors = [rest], rest.height, lines[batch_rows:], []
        if unreadable is not None:
            errors.append(unreadable)
        for number in state.recoded_lines:
            errors.append(RowError(number, "not UTF-8: read as Windows-1252", code="RECODED_LINE"))
        state.recoded_lines.clear()
        if header is None:
            raise ValueError("the file has no header line")
        whole = pl.concat(frames) if len(frames) > 1 else frames[0] if frames else _raw_frame(header, [])
        yield caster.batch(header, whole, lines, errors, state, records)


def _raw_frame(header: list[str], rows: list[list[str]]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(rows, schema=dict.fromkeys(header, pl.String), orient="row")


# --- schema ---------------------------------------------------------------------------------------


class Caster:
    """Infers each column's type from the first batch and casts every batch to it."""

    def __init__(self) -> None:
        self.schema: dict[str, Any] | None = None

    def batch(
        self,
        header: list[str],
        rows: list[list[str]] | pl.DataFrame,
        lines: Sequence[int],
        errors: list[RowError],
        state: ReadState,
        records: int,
    ) -> Batch:
        import polars as pl

        raw = rows if isinstance(rows, pl.DataFrame) else _raw_frame(header, rows)
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


def _cell_text(value: Any) -> str:
    """A cell as the text the type inference reads. A workbook stores every number as a float:
    an integral one is written as an integer, so a column of ids is read as integers."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


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
        cells = [_cell_text(v) for v in values]
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
