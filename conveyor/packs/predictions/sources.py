"""Reading an upload a chunk at a time: what kind of file it is, its header, its rows.

The kind is read from the content, not the name: an XLSX is a zip holding `xl/workbook.xml`;
a CSV is text (no NUL bytes). Each chunk is a polars DataFrame with the known columns as
text, named as in `columns`, and `row`: the row's line number as a spreadsheet shows it
(the header is line 1, so the first data row is line 2; a quoted value spanning lines is one
row, as in a spreadsheet).

CSV is cut into blocks of whole records (a newline outside quotes ends a record) and each
block is parsed by polars, so memory follows the chunk size, never the file size. XLSX is
read with calamine, which holds one sheet in memory (a sheet has at most 1,048,576 rows);
rows are handed on a chunk at a time.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conveyor.packs.predictions.columns import ColumnMap

if TYPE_CHECKING:
    import polars as pl

FileFormat = Literal["csv", "xlsx"]

SNIFF_BYTES = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
# Bytes a CSV row takes at most when sizing blocks before any row was seen.
FALLBACK_ROW_BYTES = 256
HEADER_ROW = 1  # the spreadsheet line of the header


class UnreadableFile(ValueError):
    """The upload cannot be read as the kind of file it looked like."""


def detect_format(path: Path) -> FileFormat | None:
    """'xlsx' or 'csv' from the file's content; None when it is neither (a PDF, an image, a
    legacy .xls, a zip of something else, an empty file)."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        return None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            return None
        return "xlsx" if "xl/workbook.xml" in names else None
    if b"\x00" in head:
        return None  # binary: UTF-16 text, images, OLE2 (.xls), executables
    return "csv" if _looks_like_text(head) else None


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            # Other 8-bit encodings (Windows-1252 exports): text if control bytes are rare.
            controls = sum(1 for b in head if b < 0x20 and b not in b"\t\r\n\x0c")
            return controls <= len(head) // 100
    return True


def record_end(data: bytes, start: int = 0) -> int:
    """The index just past the first newline at or after `start` that lies outside quotes
    (data[start:] begins at a record boundary); -1 when there is none."""
    quotes = 0
    position = start
    while True:
        newline = data.find(b"\n", position)
        if newline < 0:
            return -1
        quotes += data.count(b'"', position, newline)
        if quotes % 2 == 0:
            return newline + 1
        position = newline + 1


def last_record_end(data: bytes) -> int:
    """The index just past the last newline outside quotes in `data` (which begins at a record
    boundary); -1 when there is none. Counted backwards, so the usual case is one rfind."""
    total = data.count(b'"')
    newline = data.rfind(b"\n")
    after = 0  # quotes after the newline being looked at
    end = len(data)
    while newline >= 0:
        after += data.count(b'"', newline, end)
        if (total - after) % 2 == 0:
            return newline + 1
        end = newline
        newline = data.rfind(b"\n", 0, newline)
    return -1


class CsvSource:
    """A CSV upload: its header, an estimate of its rows, and its rows a block at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
            while (end := record_end(head)) < 0:
                more = f.read(SNIFF_BYTES)
                if not more:
                    end = len(head)
                    break
                head += more
        self._data_start = end
        text = head[:end].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
        self.delimiter = max(DELIMITERS, key=lambda d: (text.count(d), d == ","))
        self.header: list[str] = next(csv.reader([text], delimiter=self.delimiter), [])
        sample = head[end:]
        cut = last_record_end(sample)
        rows_seen = sample[:cut].count(b"\n") if cut > 0 else 0
        self._row_bytes = max(cut // rows_seen, 1) if rows_seen else FALLBACK_ROW_BYTES

    def estimated_rows(self) -> int:
        """Data lines in the file (exact unless values span lines or lines are blank)."""
        lines = 0
        last = b"\n"
        with self.path.open("rb") as f:
            f.seek(self._data_start)
            while block := f.read(8 * 1024 * 1024):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (0 if last == b"\n" else 1)

    def chunks(self, chunk_rows: int, columns: ColumnMap) -> Iterator[pl.DataFrame]:
        import polars as pl

        width = max(len(self.header), 1)
        schema = {f"c{i}": pl.String for i in range(width)}
        wanted = {f"c{position}": name for name, position in columns.positions.items()}
        next_row = HEADER_ROW + 1
        for block in self._blocks(chunk_rows * self._row_bytes):
            frame = pl.read_csv(
                block,
                has_header=False,
                separator=self.delimiter,
                schema=schema,
                truncate_ragged_lines=True,
                encoding="utf8-lossy",
            )
            frame = frame.select(
                pl.int_range(next_row, next_row + frame.height, dtype=pl.Int64).alias("row"),
                *[pl.col(source).alias(name) for source, name in wanted.items()],
            )
            next_row += frame.height
            yield frame

    def _blocks(self, block_bytes: int) -> Iterator[bytes]:
        """The data a block of whole records at a time, each about `block_bytes` long."""
        carry = b""
        with self.path.open("rb") as f:
            f.seek(self._data_start)
            while True:
                data = f.read(max(block_bytes, 8 * 1024))
                if not data:
                    if carry.strip():
                        yield carry
                    return
                buffer = carry + data
                cut = last_record_end(buffer)
                if cut <= 0:  # one record longer than the block: read on
                    carry = buffer
                    continue
                yield buffer[:cut]
                carry = buffer[cut:]


def _cell(value: Any) -> str | None:
    """A spreadsheet cell as the text a CSV would hold (empty cells: None)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


class XlsxSource:
    """The first sheet of an XLSX upload."""

    def __init__(self, path: Path) -> None:
        from python_calamine import CalamineWorkbook

        try:
            workbook = CalamineWorkbook.from_path(str(path))
            self._sheet = workbook.get_sheet_by_index(0)
        except Exception as exc:  # noqa: BLE001 - calamine raises its own kinds for corrupt files
            raise UnreadableFile(f"The file could not be read as XLSX: {exc}") from None
        self._rows = iter(self._sheet.iter_rows())
        first = next(self._rows, [])
        self.header: list[str] = [_cell(v) or "" for v in first]
        start = self._sheet.start  # (row, column) of the first used cell, from 0
        self._header_row = (start[0] + 1) if start else HEADER_ROW

    def estimated_rows(self) -> int:
        return max(self._sheet.height - 1, 0)

    def chunks(self, chunk_rows: int, columns: ColumnMap) -> Iterator[pl.DataFrame]:
        import polars as pl

        next_row = self._header_row + 1
        while True:
            rows = [row for _, row in zip(range(chunk_rows), self._rows, strict=False)]
            if not rows:
                return
            data: dict[str, pl.Series] = {
                "row": pl.Series("row", range(next_row, next_row + len(rows)), dtype=pl.Int64)
            }
            for name, position in columns.positions.items():
                values = [_cell(row[position]) if position < len(row) else None for row in rows]
                data[name] = pl.Series(name, values, dtype=pl.String)
            next_row += len(rows)
            yield pl.DataFrame(data)


Source = CsvSource | XlsxSource


def open_source(path: Path, file_format: FileFormat) -> Source:
    return XlsxSource(path) if file_format == "xlsx" else CsvSource(path)
