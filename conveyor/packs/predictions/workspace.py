"""Where a bulk upload's files live: `<data dir>/predictions/<workspace>/`.

    upload.csv | upload.xlsx       the file as uploaded (never in the job row)
    results/part-000000.parquet    scored rows, one file per chunk, in row order
    errors/part-000000.parquet     rows that could not be scored: row, company_symbol, error

Parts are written under a temporary name and renamed, so a reader (the results endpoint,
while the job runs) sees whole parts only. The workspace name is a random 32-hex token that
the job's data carries; nothing else in the data names a path, so no job can be pointed
outside the data directory.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl

WORKSPACE_NAME = re.compile(r"^[0-9a-f]{32}$")
ROOT = "predictions"
XLSX_MAX_ROWS = 1_048_575  # a sheet's 1,048,576 rows, less the header

RowKind = Literal["results", "errors"]


class Workspace:
    def __init__(self, data_dir: Path, name: str) -> None:
        if not WORKSPACE_NAME.match(name):
            raise ValueError(f"not a workspace name: {name!r}")
        self.name = name
        self.path = Path(data_dir) / ROOT / name

    @classmethod
    def create(cls, data_dir: Path) -> Workspace:
        workspace = cls(data_dir, secrets.token_hex(16))
        workspace.path.mkdir(parents=True, exist_ok=False)
        return workspace

    def upload_path(self, file_format: str) -> Path:
        return self.path / f"upload.{file_format}"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # --- the job's side -------------------------------------------------------------------

    def reset_rows(self) -> None:
        """Forget the parts of an earlier attempt."""
        for kind in ("results", "errors"):
            shutil.rmtree(self.path / kind, ignore_errors=True)
            (self.path / kind).mkdir(parents=True)

    def write_part(self, kind: RowKind, number: int, frame: pl.DataFrame) -> None:
        target = self.path / kind / f"part-{number:06d}.parquet"
        partial = target.with_suffix(".partial")
        frame.write_parquet(partial, compression="lz4", statistics=False)
        partial.rename(target)

    # --- the reader's side -----------------------------------------------------------------

    def parts(self, kind: RowKind) -> list[Path]:
        directory = self.path / kind
        return sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []

    def count(self, kind: RowKind) -> int:
        import polars as pl

        files = self.parts(kind)
        if not files:
            return 0
        return int(pl.scan_parquet(files).select(pl.len()).collect().item())

    def page(self, kind: RowKind, offset: int, limit: int) -> list[dict[str, Any]]:
        import polars as pl

        files = self.parts(kind)
        if not files or limit <= 0:
            return []
        return pl.scan_parquet(files).slice(offset, limit).collect().to_dicts()

    def csv_stream(self, kind: RowKind) -> Iterator[bytes]:
        """The rows as CSV, a part at a time (the header once)."""
        import io

        import polars as pl

        for number, path in enumerate(self.parts(kind)):
            out = io.BytesIO()
            pl.read_parquet(path).write_csv(out, include_header=number == 0)
            yield out.getvalue()

    def write_xlsx(self, kind: RowKind, target: Path) -> int:
        """The rows as one XLSX sheet at `target`, written row by row (xlsxwriter's constant
        memory mode); the number of rows. ValueError when they do not fit in a sheet."""
        import polars as pl
        import xlsxwriter

        rows = self.count(kind)
        if rows > XLSX_MAX_ROWS:
            raise ValueError(f"{rows} rows do not fit in one XLSX sheet ({XLSX_MAX_ROWS} at most); download CSV")
        workbook = xlsxwriter.Workbook(str(target), {"constant_memory": True, "nan_inf_to_errors": True})
        sheet = workbook.add_worksheet(kind)
        line = 0
        for path in self.parts(kind):
            frame = pl.read_parquet(path)
            if line == 0:
                sheet.write_row(0, 0, frame.columns)
                line = 1
            for values in frame.iter_rows():
                sheet.write_row(line, 0, values)
                line += 1
        workbook.close()
        return rows
