"""Exports of a dataset as CSV, JSON or XLSX, written a part at a time (constant memory).

    <data dir>/workbench/exports/<job id>.<csv|json|xlsx>

Filters: `sentiment` (the dataset must have been analysed), `dateRange` (on the dataset's
date column), `limit`. With `includeMetadata`, CSV starts with `#` comment lines, JSON is
`{"metadata": …, "records": […]}` and XLSX gets a second sheet, `metadata`. An export is kept
as long as its job: its queue's retention of completed jobs (24 hours by default, seed 002's
completedJobTTL; EXPORT_TTL where the worker offers no retention service). When retention
prunes the job, the pack's prune hook removes the file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor import PermanentError
from conveyor.packs.workbench.datasets import Dataset

if TYPE_CHECKING:
    import polars as pl

ROOT = Path("workbench") / "exports"
EXPORT_TTL = timedelta(hours=24)
MEDIA_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def export_path(data_dir: Path, job_id: Any, file_format: str) -> Path:
    return Path(data_dir) / ROOT / f"{job_id}.{file_format}"


def sweep_expired(data_dir: Path, now: float | None = None, max_age: timedelta | None = EXPORT_TTL) -> int:
    """Remove exports older than `max_age` (the longest any completed job is kept: their jobs
    are gone, and the prune hook that removes a pruned job's file missed them); None removes
    none. How many went."""
    directory = Path(data_dir) / ROOT
    if max_age is None or not directory.is_dir():
        return 0
    cutoff = (now or time.time()) - max_age.total_seconds()
    removed = 0
    for path in directory.iterdir():
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def filtered_parts(
    dataset: Dataset, *, sentiment: str | None, start: datetime | None, end: datetime | None
) -> Iterator[pl.DataFrame]:
    """The dataset's rows that pass the filters, a part at a time."""
    import polars as pl

    columns = {c["name"] for c in dataset.meta.get("columns", [])}
    conditions: list[pl.Expr] = []
    if sentiment is not None:
        if "sentiment" not in columns:
            raise PermanentError("the dataset has no sentiment: process it with processingType 'analyze' first")
        conditions.append(pl.col("sentiment") == sentiment)
    if start is not None or end is not None:
        column = dataset.meta.get("dateColumn")
        if column is None:
            raise PermanentError("the dataset has no date column to filter by dateRange")
        value = pl.col(column).cast(pl.Datetime("us"))
        if start is not None:
            conditions.append(value >= start.replace(tzinfo=None))
        if end is not None:
            conditions.append(value <= end.replace(tzinfo=None))
    for part in dataset.parts:
        frame = pl.scan_parquet(part)
        if conditions:
            frame = frame.filter(pl.all_horizontal(conditions))
        yield frame.collect()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def write_export(
    dataset: Dataset,
    target: Path,
    file_format: str,
    *,
    sentiment: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    metadata: dict[str, Any] | None = None,
    on_part: Callable[[int], None] = lambda rows: None,
) -> int:
    """Write the export to `target` (through a temporary name); the number of records."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    parts = filtered_parts(dataset, sentiment=sentiment, start=start, end=end)
    writer = {"csv": _write_csv, "json": _write_json, "xlsx": _write_xlsx}[file_format]
    written = writer(_limited(_sliced(parts), limit, on_part), partial, metadata)
    partial.replace(target)
    return written


SLICE_ROWS = 10_000


def _sliced(parts: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """A dataset's part holds up to 100,000 rows; each writer turns what it is given into text
    or Python values at once, so it is given 10,000 rows at a time (bench.workloads: the JSON
    export of 110,000 records took 115 MB given whole parts)."""
    for frame in parts:
        if frame.height == 0:
            yield frame  # still carries the columns: an export with no records has its header
        yield from frame.iter_slices(SLICE_ROWS)


def _limited(parts: Iterator[pl.DataFrame], limit: int | None, on_part: Callable[[int], None]) -> Iterator[Any]:
    remaining = limit
    for frame in parts:
        if remaining is not None:
            frame = frame.head(remaining)
            remaining -= frame.height
        yield frame
        on_part(frame.height)
        if remaining == 0:
            return


def _write_csv(parts: Iterator[pl.DataFrame], path: Path, metadata: dict[str, Any] | None) -> int:
    written = 0
    with path.open("wb") as f:
        if metadata:
            for key, value in metadata.items():
                f.write(f"# {key}: {json.dumps(value, default=str)}\n".encode())
        header = True
        for frame in parts:
            buffer = io.BytesIO()
            frame.write_csv(buffer, include_header=header)
            f.write(buffer.getvalue())
            header = False
            written += frame.height
    return written


def _write_json(parts: Iterator[pl.DataFrame], path: Path, metadata: dict[str, Any] | None) -> int:
    written = 0
    with path.open("wb") as f:
        f.write(b"{")
        if metadata:
            f.write(b'"metadata": ' + json.dumps(metadata, default=str).encode() + b", ")
        f.write(b'"records": [')
        for frame in parts:
            if frame.height == 0:
                continue
            body = frame.write_json().encode()  # an array of row objects
            if written:
                f.write(b",")
            f.write(body[1:-1])
            written += frame.height
        f.write(b"]}")
    return written


def _write_xlsx(parts: Iterator[pl.DataFrame], path: Path, metadata: dict[str, Any] | None) -> int:
    import polars as pl
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "nan_inf_to_errors": True})
    sheet = workbook.add_worksheet("data")
    line = 0
    for frame in parts:
        if line == 0:
            sheet.write_row(0, 0, frame.columns)
            line = 1
        # A writer per column, chosen once (not `write`'s type checks per cell): text is
        # written as text, so a value that looks like a formula stays inert; dates as ISO text.
        columns: list[list[Any]] = []
        writers: list[Callable[[int, int, Any], Any]] = []
        for name, dtype in frame.schema.items():
            series = frame[name]
            if dtype == pl.Date:
                series = series.cast(pl.String)
            if series.dtype == pl.String:
                writers.append(sheet.write_string)
            elif series.dtype.is_numeric():
                writers.append(sheet.write_number)
            elif series.dtype == pl.Boolean:
                writers.append(sheet.write_boolean)
            else:
                writers.append(lambda row, column, value: sheet.write(row, column, _plain(value)))
            columns.append(series.to_list())
        numbered = list(enumerate(writers))
        for values in zip(*columns, strict=True):
            for (column, write), value in zip(numbered, values, strict=True):
                if value is not None:
                    write(line, column, value)
            line += 1
    if metadata:
        meta = workbook.add_worksheet("metadata")
        for n, (key, value) in enumerate(metadata.items()):
            meta.write_string(n, 0, key)
            meta.write_string(n, 1, json.dumps(value, default=str))
    workbook.close()
    return max(line - 1, 0)


def expires_at(now: datetime | None = None, ttl: timedelta | None = EXPORT_TTL) -> datetime | None:
    """When an export kept for `ttl` expires; None when it is kept for good."""
    return (now or datetime.now(UTC)) + ttl if ttl is not None else None


def read_back_csv(path: Path) -> list[dict[str, str]]:
    """An export's CSV records (comment lines skipped): for tests and the benchmark."""
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))
