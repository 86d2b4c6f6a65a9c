"""Datasets: the tables `file_processing` writes and `data_export` reads.

    <data dir>/workbench/datasets/<datasetId>/
        meta.json               owner organisation, source, columns, rows, statistics
        part-000000.parquet     the rows, one file per chunk, in file order

A dataset belongs to the organisation of the job that wrote it; a job of another
organisation is told it does not exist. A run writes into a staging directory and swaps it
in at the end, so a reader sees the previous version or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from conveyor import PermanentError

if TYPE_CHECKING:
    import polars as pl

ROOT = Path("workbench") / "datasets"


class DatasetNotFound(PermanentError):
    def __init__(self, dataset_id: UUID | str) -> None:
        super().__init__(f"dataset {dataset_id} not found")


@dataclass
class Dataset:
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list[Path]:
        return sorted(self.path.glob("part-*.parquet"))

    def scan(self) -> pl.LazyFrame:
        import polars as pl

        parts = self.parts
        if not parts:
            schema = {c["name"]: getattr(pl, c["dtype"], pl.String) for c in self.meta.get("columns", [])}
            return pl.LazyFrame(schema=schema)
        return pl.scan_parquet(parts)


def _directory(data_dir: Path, dataset_id: UUID | str) -> Path:
    return Path(data_dir) / ROOT / str(UUID(str(dataset_id)))


def owner_key(org_id: str | None) -> str:
    return org_id or ""


def open_dataset(data_dir: Path, dataset_id: UUID | str, org_id: str | None) -> Dataset:
    """The dataset, if the organisation owns it; DatasetNotFound otherwise (whether it is
    missing or another's: ids leak nothing)."""
    path = _directory(data_dir, dataset_id)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        raise DatasetNotFound(dataset_id) from None
    if meta.get("orgId") != owner_key(org_id):
        raise DatasetNotFound(dataset_id)
    return Dataset(path, meta)


class DatasetWriter:
    """Writes a new version of a dataset a part at a time; `commit` swaps it in."""

    def __init__(self, data_dir: Path, dataset_id: UUID | str, org_id: str | None, job_id: UUID) -> None:
        self.target = _directory(data_dir, dataset_id)
        existing = self.target / "meta.json"
        if existing.exists():
            meta = json.loads(existing.read_text(encoding="utf-8"))
            if meta.get("orgId") != owner_key(org_id):
                # Another organisation's id: refuse without saying whose it is.
                raise PermanentError(f"datasetId {dataset_id} is in use; choose another")
        self.staging = self.target.with_name(f"{self.target.name}.staging-{job_id.hex}")
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        self.org_id = owner_key(org_id)
        self.parts = 0
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        target = self.staging / f"part-{self.parts:06d}.parquet"
        frame.write_parquet(target, compression="zstd", statistics=True)
        self.parts += 1
        self.rows += frame.height

    def commit(self, meta: dict[str, Any]) -> Dataset:
        meta = {**meta, "orgId": self.org_id, "rows": self.rows}
        (self.staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        old = self.target.with_name(f"{self.target.name}.old-{os.getpid()}")
        if self.target.exists():
            self.target.rename(old)
        self.staging.rename(self.target)
        shutil.rmtree(old, ignore_errors=True)
        return Dataset(self.target, meta)

    def abandon(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
