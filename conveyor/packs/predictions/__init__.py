"""Default-risk predictions (seed 004): bulk uploads of company financial statements, each row
scored with Altman's Z (1968) or Z'' (1995), Ohlson's O-score (1980) and Zmijewski's score
(1984).

A pack: two job types (`predictions.annual`, `predictions.quarterly`) built on the public
job-type API only. The API's `/api/v1/predictions` family stores an upload in a workspace
under the data directory and enqueues one of them with the workspace's name; the job reads
the file a chunk at a time and writes its scored rows and per-row errors beside it.

Importing the pack is cheap: polars, calamine and xlsxwriter are imported when a job runs
or results are read.
"""

from conveyor.packs.predictions.columns import REQUIRED, MissingColumns, Period, optional_columns
from conveyor.packs.predictions.jobtype import KINDS, PredictionInput, jobtypes
from conveyor.packs.predictions.scoring import RESULT_COLUMNS, RISK_LEVELS
from conveyor.packs.predictions.sources import FileFormat, detect_format
from conveyor.packs.predictions.workspace import XLSX_MAX_ROWS, Workspace

__all__ = [
    "KINDS",
    "REQUIRED",
    "RESULT_COLUMNS",
    "RISK_LEVELS",
    "XLSX_MAX_ROWS",
    "FileFormat",
    "MissingColumns",
    "Period",
    "PredictionInput",
    "Workspace",
    "detect_format",
    "jobtypes",
    "optional_columns",
]
