"""The sentiment workbench (seed 002): batch sentiment analysis with PII masking, large file
processing into datasets, security scans and data exports.

A pack: four job types (`sentiment_analysis_batch`, `file_processing`, `security_scan`,
`data_export`) built on the public job-type API only. Files reach jobs as paths confined to
the data roots (paths.py) or through `POST /api/v1/files`; a dataset is the table that
`file_processing` writes under the data directory (datasets.py). Importing the pack is cheap:
polars, VADER, phonenumbers and xlsxwriter load when a job runs.
"""

from conveyor.packs.workbench import pii
from conveyor.packs.workbench.datasets import DatasetNotFound, open_dataset
from conveyor.packs.workbench.export import EXPORT_TTL, MEDIA_TYPES, export_path
from conveyor.packs.workbench.jobtypes import (
    DataExportInput,
    FileProcessingInput,
    SecurityScanInput,
    SentimentBatchInput,
    jobtypes,
)
from conveyor.packs.workbench.paths import SAFE_PATH, PathRefused, confine

KINDS = ("sentiment_analysis_batch", "file_processing", "security_scan", "data_export")

__all__ = [
    "EXPORT_TTL",
    "KINDS",
    "MEDIA_TYPES",
    "SAFE_PATH",
    "DataExportInput",
    "DatasetNotFound",
    "FileProcessingInput",
    "PathRefused",
    "SecurityScanInput",
    "SentimentBatchInput",
    "confine",
    "export_path",
    "jobtypes",
    "open_dataset",
    "pii",
]
