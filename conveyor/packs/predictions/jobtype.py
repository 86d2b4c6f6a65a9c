"""The job types: score every row of an uploaded file, a chunk at a time.

Per chunk: read it, check each row (per-row errors in seed 004's wording, with spreadsheet
line numbers), score the good rows with the three models, write both to the workspace, then
report progress (rows processed, successful, failed; the worker derives rows/s and the ETA)
and stop there if the job was cancelled. Memory follows the chunk size, not the file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conveyor import Context, JobType, PermanentError, Registry
from conveyor.model import PrunedJob
from conveyor.packs.predictions.columns import MissingColumns, Period, map_columns
from conveyor.packs.predictions.scoring import RISK_LEVELS, ScoringOptions, prepare, score, split
from conveyor.packs.predictions.sources import UnreadableFile, open_source
from conveyor.packs.predictions.workspace import WORKSPACE_NAME, Workspace

if TYPE_CHECKING:
    import polars as pl

KINDS: dict[Period, str] = {"annual": "predictions.annual", "quarterly": "predictions.quarterly"}
RISKIEST = 10  # companies listed in the summary
ZONES = ("safe", "grey", "distress")


class PredictionInput(BaseModel):
    """A bulk upload to score. The file is in the workspace the API made for it."""

    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(pattern=r"^[0-9a-f]{32}$", description="the upload's workspace under the data directory")
    file_format: Literal["csv", "xlsx"]
    amounts_in: Literal["units", "thousands", "millions", "billions"] = Field(
        "units", description="the unit of the uploaded amounts (Ohlson's SIZE needs dollars)"
    )
    price_level_index: float = Field(
        100.0, gt=0, le=1_000_000, description="GNP price-level index of the statements' year, 1968 = 100"
    )
    chunk_rows: int = Field(50_000, ge=10, le=1_000_000, description="rows read, scored and written at a time")


class Tally:
    """Running totals over the chunks, and the summary a finished job reports."""

    def __init__(self) -> None:
        self.processed = 0
        self.successful = 0
        self.failed = 0
        self.by_risk = dict.fromkeys(RISK_LEVELS, 0)
        self.by_zone = dict.fromkeys(ZONES, 0)
        self.probability_sum = 0.0
        self.riskiest: pl.DataFrame | None = None

    def add(self, scored: pl.DataFrame, failed: int) -> None:
        import polars as pl

        self.processed += scored.height + failed
        self.successful += scored.height
        self.failed += failed
        if scored.height == 0:
            return
        for column, counts in (("risk_level", self.by_risk), ("zone", self.by_zone)):
            for key, n in scored.group_by(column).len().iter_rows():
                counts[key] += n
        self.probability_sum += float(scored["probability_of_default"].sum())
        top = scored.top_k(RISKIEST, by="probability_of_default").select(
            "row", "company_symbol", "company_name", "sector", "probability_of_default", "risk_level", "zone",
            "altman_z_score",
        )  # fmt: skip
        both = top if self.riskiest is None else pl.concat([self.riskiest, top])
        self.riskiest = both.sort(["probability_of_default", "row"], descending=[True, False]).head(RISKIEST)

    def result(self, seconds: float) -> dict[str, Any]:
        mean = self.probability_sum / self.successful if self.successful else None
        return {
            "total_rows": self.processed,
            "successful_rows": self.successful,
            "failed_rows": self.failed,
            "processing_seconds": round(seconds, 3),
            "summary": {
                "by_risk_level": self.by_risk,
                "by_zone": self.by_zone,
                "mean_probability_of_default": mean,
                "riskiest_companies": self.riskiest.to_dicts() if self.riskiest is not None else [],
            },
        }


def score_upload(ctx: Context, data: PredictionInput, period: Period) -> dict[str, Any]:
    started = time.monotonic()
    workspace = Workspace(ctx.data_dir, data.workspace)
    upload = workspace.upload_path(data.file_format)
    if not upload.is_file():
        raise PermanentError("The uploaded file is no longer stored (the job's files were deleted)")
    try:
        source = open_source(upload, data.file_format)
        columns = map_columns(source.header, period)
    except (UnreadableFile, MissingColumns) as exc:
        raise PermanentError(str(exc)) from None
    total = source.estimated_rows()
    workspace.reset_rows()
    ctx.progress(processed=0, total=total, successful=0, failed=0)
    ctx.info(f"scoring about {total} {period} rows, {data.chunk_rows} at a time", component="predictions")
    options = ScoringOptions(amounts_in=data.amounts_in, price_level_index=data.price_level_index)
    tally = Tally()
    for number, chunk in enumerate(source.chunks(data.chunk_rows, columns)):
        ctx.checkpoint()
        good, errors = split(prepare(chunk, period))
        scored = score(good, period, options)
        workspace.write_part("results", number, scored)
        if errors.height:
            workspace.write_part("errors", number, errors)
            for row, symbol, message in errors.iter_rows():
                ctx.item_error(row, message, details={"company_symbol": symbol})
        tally.add(scored, errors.height)
        ctx.progress(
            processed=tally.processed,
            total=max(total, tally.processed),
            successful=tally.successful,
            failed=tally.failed,
        )
    ctx.progress(total=tally.processed)
    ctx.info(
        f"scored {tally.successful} rows, {tally.failed} failed, in {time.monotonic() - started:.1f}s",
        component="predictions",
    )
    return tally.result(time.monotonic() - started)


jobtypes = Registry()


@jobtypes.add
class AnnualPredictions(JobType):
    """Scores an uploaded file of annual financial statements."""

    kind = KINDS["annual"]
    runs_in = "thread"  # polars does the work outside the GIL; the worker's loop stays free
    description = "default-risk scores of annual statements (seed 004)"

    def execute(self, ctx: Context, data: PredictionInput) -> dict[str, Any]:
        return score_upload(ctx, data, "annual")


@jobtypes.add
class QuarterlyPredictions(JobType):
    """Scores an uploaded file of quarterly financial statements."""

    kind = KINDS["quarterly"]
    runs_in = "thread"
    description = "default-risk scores of quarterly statements (seed 004)"

    def execute(self, ctx: Context, data: PredictionInput) -> dict[str, Any]:
        return score_upload(ctx, data, "quarterly")


def remove_workspaces(data_dir: Path, jobs: list[PrunedJob]) -> None:
    """Retention removed these uploads' jobs: their workspaces (upload, scored rows, errors) go
    too. A retry by hand shares its original's workspace: pruned first, the original takes it."""
    for job in jobs:
        name = job.data.get("workspace") if isinstance(job.data, dict) else None
        if isinstance(name, str) and WORKSPACE_NAME.match(name):
            Workspace(data_dir, name).remove()


for _kind in KINDS.values():
    jobtypes.on_pruned(_kind)(remove_workspaces)
