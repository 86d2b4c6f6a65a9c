"""The CSV reader reads blocks of text and slices of records at a time
(conveyor.packs.workbench.tables._csv); what it returns must be what a record-by-record read
of binary lines returns (the reference below, the reader as it was before): the same rows,
the same line numbers for malformed rows, for quoted newlines, blank lines, Windows-1252
lines and an unterminated quote, wherever block and slice boundaries fall."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl
import pytest

from conveyor.packs.workbench import tables
from conveyor.packs.workbench.tables import Batch, Caster, ReadState, RowError, unique_names


def _decoded_lines(f: IO[bytes], state: ReadState) -> Iterator[str]:
    for number, raw in enumerate(f, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("cp1252", errors="replace")
            state.recoded_lines.append(number)
        yield line.removeprefix("\ufeff") if number == 1 else line


def reference(path: Path, batch_rows: int) -> Iterator[Batch]:
    state = ReadState()
    with path.open("rb") as f:
        reader = csv.reader(_decoded_lines(f, state), delimiter=",", quotechar='"', doublequote=True)
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
        except csv.Error as exc:
            errors.append(RowError(last_line + 1, f"unreadable from here to the end of the file: {exc}"))
        for number in state.recoded_lines:
            errors.append(RowError(number, "not UTF-8: read as Windows-1252", code="RECODED_LINE"))
        assert header is not None
        yield caster.batch(header, rows, lines, errors, state, records)


def outcome(batches: Iterator[Batch]) -> tuple[Any, ...]:
    """Each batch's rows; every error (a malformed row found in a slice that straddles two
    batches may come with the earlier one); the records seen, in all."""
    got = list(batches)
    errors = sorted((e.line, e.code, e.message, e.column or "") for b in got for e in b.errors)
    return [b.frame.to_dicts() for b in got], errors, got[-1].rows_read


def tricky_csv(rng: random.Random, rows: int, *, unreadable: bool) -> bytes:
    out = [b"\xef\xbb\xbfid,when,text,amount\r\n"]
    for n in range(1, rows + 1):
        roll = rng.random()
        if roll < 0.05:
            out.append(f'{n},2024-01-0{1 + n % 9},"two\nlines, ""quoted""",{n}.5\n'.encode())
        elif roll < 0.08:
            out.append(f"{n},2024-01-01,too,many,fields\n".encode())
        elif roll < 0.10:
            out.append(b"\n")
        elif roll < 0.13:
            out.append(f"{n},2024-01-01,caf\xe9 cr\xe8me,{n}\n".encode("cp1252"))
        elif roll < 0.15:
            out.append(f"{n},2024-01-01,short\n".encode())
        elif roll < 0.17:
            out.append(f'{n},2024-01-01,"three\r\nline\nfield",x{n}\r\n'.encode())
        elif roll < 0.19:
            out.append(f"{n},not a date,ünïcödé text,{n}\n".encode())
        else:
            out.append(f'{n},2024-02-{1 + n % 28:02d},"plain, with comma",{n * 1.25}\n'.encode())
    if unreadable:  # a field over the limit the test sets: csv.Error, the rest is unreadable
        out.insert(len(out) * 3 // 4, b'999,2024-01-01,"' + b"y" * 300 + b'",1\n')
    return b"".join(out)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("block", "slice_records", "batch_rows"), [(64, 3, 7), (1000, 17, 50), (1 << 20, 10_000, 1000)]
)
def test_blocks_and_slices_read_like_a_record_by_record_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, block: int, slice_records: int, batch_rows: int
) -> None:
    monkeypatch.setattr(tables, "BLOCK_BYTES", block)
    monkeypatch.setattr(tables, "SLICE_RECORDS", slice_records)
    path = tmp_path / "tricky.csv"
    path.write_bytes(tricky_csv(random.Random(seed), 400, unreadable=seed == 4))
    limit = csv.field_size_limit(200)
    try:
        got = outcome(tables.read_batches(path, "csv", batch_rows))
        assert got == outcome(reference(path, batch_rows))
    finally:
        csv.field_size_limit(limit)
    codes = {code for _, code, _, _ in got[1]}
    assert {"MALFORMED_ROW", "RECODED_LINE"} <= codes
    if seed == 4:
        assert any(message.startswith("unreadable") for _, _, message, _ in got[1])


def test_a_line_longer_than_a_block_and_no_final_line_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "BLOCK_BYTES", 16)
    path = tmp_path / "long.csv"
    path.write_bytes(b"a,b\n1," + b"x" * 100 + b"\n2,last")
    got = outcome(tables.read_batches(path, "csv", 10))
    assert got == outcome(reference(path, 10))
    assert pl.DataFrame(got[0][0])["b"].to_list() == ["x" * 100, "last"]
