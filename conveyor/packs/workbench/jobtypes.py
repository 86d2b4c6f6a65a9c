"""Seed 002's four job types: sentiment_analysis_batch, file_processing, security_scan and
data_export, with its validation rules (field names as the seed spells them).

Each reports progress (items or bytes, with speed and ETA from the worker), logs, per-item
errors, and stops at a checkpoint between items or chunks when cancelled. Texts and file
contents never reach a log line or an error message; only counts, kinds and line numbers do.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from conveyor import Context, JobType, PermanentError, Registry, Status
from conveyor.model import PrunedJob
from conveyor.packs.workbench import export, pii, scan, sentiment, tables
from conveyor.packs.workbench.datasets import DatasetWriter, open_dataset
from conveyor.packs.workbench.paths import check_pattern, confine

MB = 1024 * 1024
DEFAULT_CHUNK = 256 * MB
TEXT_COLUMN_NAMES = ("text", "review", "reviews", "comment", "comments", "message", "body", "content", "feedback")
DATE_COLUMN_NAMES = ("date", "created_at", "createdat", "timestamp", "time", "datetime")

Text = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
FilePath = Annotated[str, Field(max_length=1024, description="under a data root; ^[a-zA-Z0-9/_.-]+$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _safe_path(value: str) -> str:
    return check_pattern(value)


# --- sentiment_analysis_batch ------------------------------------------------------------------


class SentimentBatchInput(_Input):
    texts: list[Text] = Field(min_length=1, max_length=10_000, description="1 to 10,000 texts")
    enablePIIMasking: bool = Field(True, description="mask identifiers before anything leaves the job")
    includeKeywords: bool = False
    language: str = Field("en", description="language code; supported: en")

    @field_validator("language")
    @classmethod
    def _supported(cls, value: str) -> str:
        code = value.strip().lower()
        if code not in sentiment.LANGUAGES:
            raise ValueError(f"unsupported language {value[:20]!r}: supported are {', '.join(sentiment.LANGUAGES)}")
        return code


# bench.workloads (README, "Measured"): 10,000 PII-dense texts masked and scored in 1.4-4.7 s
# (2.1 s of CPU); the first job in a worker took 12 MB for 1,000 texts and 79 MB for 10,000
# (VADER's lexicon and phonenumbers loaded, then ~7 KB a text: the text, its result, the
# result's JSON while it is stored).
SENTIMENT_TEXTS_PER_SECOND = 1_500
SENTIMENT_BASE_BYTES = 16 * MB
SENTIMENT_BYTES_PER_TEXT = 7 * 1024
PROGRESS_EVERY = 200


def analyze_texts(ctx: Context, data: SentimentBatchInput) -> dict[str, Any]:
    sentiment.warm()
    total = len(data.texts)
    ctx.progress(processed=0, total=total, successful=0, failed=0)
    ctx.info(f"analysing {total} texts (PII masking {'on' if data.enablePIIMasking else 'off'})", component="sentiment")
    results: list[dict[str, Any]] = []
    distribution = {"positive": 0, "negative": 0, "neutral": 0}
    score_sum = 0.0
    failed = 0
    pii_counts: dict[str, int] = {}
    for index, text in enumerate(data.texts):
        if index % PROGRESS_EVERY == 0:
            ctx.progress(processed=index, successful=index - failed, failed=failed)
        shown, spans = pii.mask(text) if data.enablePIIMasking else (text, [])
        if not any(ch.isalnum() for ch in shown):
            failed += 1
            ctx.item_error(index, "the text has no words to analyse", code="EMPTY_TEXT")
            continue
        verdict = sentiment.analyze(shown)
        kinds = sorted({s.kind for s in spans})
        for kind in kinds:
            pii_counts[kind] = pii_counts.get(kind, 0) + 1
        item: dict[str, Any] = {
            "index": index,
            "text": shown,
            "sentiment": verdict.label,
            "score": verdict.score,
            "confidence": verdict.confidence,
            "piiTypes": kinds,
        }
        if data.includeKeywords:
            item["keywords"] = sentiment.keywords(shown)
        results.append(item)
        distribution[verdict.label] += 1
        score_sum += verdict.score
    successful = total - failed
    ctx.progress(processed=total, successful=successful, failed=failed)
    ctx.info(f"{successful} texts analysed, {failed} failed; texts with PII: {pii_counts}", component="sentiment")
    return {
        "totalProcessed": total,
        "results": results,
        "summary": {
            "successful": successful,
            "failed": failed,
            "averageScore": round(score_sum / successful, 4) if successful else None,
            "distribution": distribution,
            "piiFound": pii_counts,
        },
        "engine": "vader",
        "language": data.language,
    }


# --- file_processing ----------------------------------------------------------------------------------


class FileProcessingInput(_Input):
    filePath: FilePath
    datasetId: UUID
    processingType: Literal["parse", "analyze"] = "parse"
    chunkSize: int = Field(DEFAULT_CHUNK, ge=64 * 1024, le=4096 * MB, description="bytes per chunk (256 MB)")

    _path = field_validator("filePath")(lambda cls, v: _safe_path(v))


# bench.workloads: a 1 GB CSV parsed and stored in 41 s (46 s of CPU) on a quiet machine, 85 s
# of CPU on a busy one (12 MB/s). `analyze` adds VADER on a text column (~20,000 short texts/s in
# workloads.md, ~2 MB/s for rows of ~100 bytes): not measured on a file yet, so a guess below.
PARSE_BYTES_PER_SECOND = 10 * MB
ANALYZE_BYTES_PER_SECOND = 1 * MB
ROW_BYTES_GUESS = 100
# Memory follows the batch of rows (chunkSize / ROW_BYTES_GUESS, 1,000 to 100,000), over a base:
# polars, a 1 MB block of text and its decoding, the CSV reader, the Parquet writer. Measured on
# a 150 MB CSV, first job in a worker: 106 MB with 10,485-row batches (chunkSize 1 MB), 132 MB
# with 41,943, 172 MB with 100,000 (the default).
PARSE_BASE_BYTES = 110 * MB  # the 1 GB file took 181 MB: a margin over the 150 MB file's 172
PARSE_BYTES_PER_BATCH_ROW = 850


def batch_rows_for(chunk_size: int) -> int:
    return max(1_000, min(tables.DEFAULT_BATCH_ROWS, chunk_size // ROW_BYTES_GUESS))


def text_column(frame: Any) -> str | None:
    import polars as pl

    strings = [c for c, t in frame.schema.items() if t == pl.String]
    for name in strings:
        if name.lower() in TEXT_COLUMN_NAMES:
            return name
    lengths = {c: frame[c].str.len_chars().mean() or 0 for c in strings}
    best = max(lengths, key=lambda c: lengths[c], default=None)
    return best if best is not None and lengths[best] >= 20 else None


def date_column(schema: dict[str, Any]) -> str | None:
    import polars as pl

    temporal = [c for c, t in schema.items() if t in (pl.Date, pl.Datetime) or isinstance(t, pl.Datetime)]
    for name in temporal:
        if name.lower() in DATE_COLUMN_NAMES:
            return name
    return temporal[0] if temporal else None


def add_sentiment(frame: Any, column: str) -> Any:
    import polars as pl

    labels: list[str | None] = []
    scores: list[float | None] = []
    for text in frame[column]:
        if text is None:
            labels.append(None)
            scores.append(None)
            continue
        verdict = sentiment.analyze(text)
        labels.append(verdict.label)
        scores.append(verdict.score)
    return frame.with_columns(pl.Series("sentiment", labels, pl.String), pl.Series("sentiment_score", scores))


def column_statistics(dataset: Any) -> list[dict[str, Any]]:
    """Per column: nulls, a distinct estimate, min, max, mean, top values; one streaming pass
    over the dataset's parts for the aggregates, one per text column for its top values."""
    import polars as pl

    frame = dataset.scan()
    schema = frame.collect_schema()
    aggregates: list[pl.Expr] = []
    for name, dtype in schema.items():
        col = pl.col(name)
        aggregates += [col.null_count().alias(f"{name}\x00nulls"), col.approx_n_unique().alias(f"{name}\x00distinct")]
        if dtype.is_numeric() or dtype.is_temporal():
            aggregates += [col.min().alias(f"{name}\x00min"), col.max().alias(f"{name}\x00max")]
        if dtype.is_numeric():
            aggregates.append(col.mean().alias(f"{name}\x00mean"))
    row = frame.select(aggregates).collect(engine="streaming").row(0, named=True) if aggregates else {}
    out = []
    for name, dtype in schema.items():
        stats: dict[str, Any] = {"name": name, "type": str(dtype)}
        for key in ("nulls", "distinct", "min", "max", "mean"):
            value = row.get(f"{name}\x00{key}")
            if key in ("nulls", "distinct") or value is not None:
                stats[key] = export._plain(value)
        if dtype == pl.String or dtype == pl.Boolean:
            top = (
                frame.group_by(name).len().drop_nulls(name).sort(["len", name], descending=[True, False]).head(5)
            ).collect(engine="streaming")
            stats["topValues"] = [{"value": v, "count": n} for v, n in top.iter_rows()]
        out.append(stats)
    return out


def process_file(ctx: Context, data: FileProcessingInput) -> dict[str, Any]:
    started = time.monotonic()
    path = confine(data.filePath, ctx.data_roots)
    size = path.stat().st_size
    file_format = tables.detect_format(path)
    batch_rows = batch_rows_for(data.chunkSize)
    ctx.progress(processed=0, total=size, step=1, total_steps=2, step_name="reading")
    ctx.info(f"{data.processingType}: a {file_format} file of {size} bytes", component="file_processing")
    writer = DatasetWriter(ctx.data_dir, data.datasetId, ctx.owner.org_id, ctx.job_id)
    rows = malformed = 0
    schema: dict[str, Any] | None = None
    sentiment_column: str | None = None
    try:
        for batch in tables.read_batches(path, file_format, batch_rows):
            ctx.checkpoint()
            frame = batch.frame
            if data.processingType == "analyze" and frame.height:
                if sentiment_column is None and schema is None:
                    sentiment_column = text_column(frame)
                if sentiment_column is not None:
                    frame = add_sentiment(frame, sentiment_column)
            schema = schema or dict(frame.schema)
            writer.write(frame)
            rows += frame.height
            for error in batch.errors:
                malformed += error.code == "MALFORMED_ROW"
                ctx.item_error(error.line, error.message, code=error.code)
            ctx.progress(processed=batch.bytes_read, successful=rows, failed=malformed)
        if schema is None:
            raise PermanentError("the file holds no rows")
        meta = {
            "datasetId": str(data.datasetId),
            "source": data.filePath,
            "format": file_format,
            "columns": [{"name": c, "dtype": str(t.base_type()).split("(")[0]} for c, t in schema.items()],
            "dateColumn": date_column(schema),
            "textColumn": sentiment_column,
            "createdBy": str(ctx.job_id),
            "createdAt": datetime.now(UTC).isoformat(),
            "processingType": data.processingType,
        }
        dataset = writer.commit(meta)
    except (ValueError, OSError) as exc:
        writer.abandon()
        raise PermanentError(f"the file could not be read: {type(exc).__name__}") from None
    except BaseException:
        writer.abandon()
        raise
    ctx.progress(
        processed=size, total=size, step=2, step_name="statistics" if data.processingType == "analyze" else "done"
    )
    result: dict[str, Any] = {
        "datasetId": str(data.datasetId),
        "processingType": data.processingType,
        "format": file_format,
        "fileSize": size,
        "rows": rows,
        "malformedRows": malformed,
        "columns": meta["columns"],
        "seconds": round(time.monotonic() - started, 3),
    }
    if data.processingType == "analyze":
        result["statistics"] = column_statistics(dataset)
        result["textColumn"] = sentiment_column
        if sentiment_column is not None:
            import polars as pl

            counts = dataset.scan().group_by("sentiment").len().drop_nulls("sentiment").collect()
            result["sentimentDistribution"] = {"positive": 0, "negative": 0, "neutral": 0} | dict(counts.iter_rows())
            result["averageScore"] = dataset.scan().select(pl.col("sentiment_score").mean()).collect().item()
    ctx.info(f"{rows} rows written, {malformed} malformed", component="file_processing")
    return result


# --- security_scan ----------------------------------------------------------------------------------------


class SecurityScanInput(_Input):
    filePath: FilePath
    datasetId: UUID
    scanType: Literal["quick", "full"] = "full"
    complianceFramework: list[Literal["HIPAA", "GDPR", "PCI-DSS", "SOC 2"]] | None = Field(
        None, max_length=4, description="HIPAA, GDPR, PCI-DSS, SOC 2 (default: all four)"
    )

    _path = field_validator("filePath")(lambda cls, v: _safe_path(v))


# bench.workloads: 100 MB of log-like text in 3-4 s of CPU through the prefilter (25-30 MB/s)
# once it is compiled; the first scan in a data directory compiles it first (~5 s of CPU, in a
# helper process whose ~175 MB go when it exits); text dense with findings is slower. Memory:
# 33 MB for the first scan in a worker (hyperscan, phonenumbers, the ~8 MB database, a block of
# text and its line offsets), whatever the file's size.
SCAN_BYTES_PER_SECOND = 8 * MB
SCAN_BYTES = 4 * scan.BLOCK_BYTES + 30 * MB


def scan_one(ctx: Context, data: SecurityScanInput) -> dict[str, Any]:
    started = time.monotonic()
    path = confine(data.filePath, ctx.data_roots)
    size = path.stat().st_size
    frameworks = list(dict.fromkeys(data.complianceFramework or scan.FRAMEWORKS))
    planned = size if data.scanType == "full" else min(size, scan.SAMPLE_BYTES)
    ctx.progress(processed=0, total=max(planned, 1))
    ctx.info(f"{data.scanType} scan of {size} bytes for {', '.join(frameworks)}", component="security_scan")

    def on_block(scanned: int) -> None:
        ctx.progress(processed=min(scanned, planned))  # also the cancellation checkpoint

    report = scan.scan_file(
        path,
        full=data.scanType == "full",
        frameworks=frameworks,
        on_block=on_block,
        cache_dir=Path(ctx.data_dir) / "workbench" / "cache",
    )
    ctx.progress(processed=max(planned, 1), total=max(planned, 1))
    failing = [name for name, v in report["frameworks"].items() if v["verdict"] == "fail"]
    ctx.info(f"{len(report['findings'])} findings; failing: {', '.join(failing) or 'none'}", component="security_scan")
    return {
        "datasetId": str(data.datasetId),
        "scanType": data.scanType,
        **report,
        "seconds": round(time.monotonic() - started, 3),
    }


# --- data_export ---------------------------------------------------------------------------------------------


class DateRange(_Input):
    start: datetime
    end: datetime


class ExportFilters(_Input):
    sentiment: Literal["positive", "negative", "neutral"] | None = None
    dateRange: DateRange | None = None
    limit: int | None = Field(None, ge=1, le=10_000_000)


class DataExportInput(_Input):
    datasetId: UUID
    format: Literal["csv", "json", "xlsx"]
    filters: ExportFilters | None = None
    includeMetadata: bool = False


# bench.workloads, 110,000 records of 5 columns: CSV and JSON 0.3-0.5 s of CPU, XLSX 4.4-5.5 s
# (20,000-25,000/s); lowered for a busy machine. Memory does not follow the records: the writers
# take 10,000 rows at a time from parts of up to 100,000; the first export in a worker took
# 67 MB (CSV), 72 MB (JSON) and 67 MB (XLSX), polars' own ~40 MB included.
EXPORT_RECORDS_PER_SECOND = {"csv": 60_000, "json": 60_000, "xlsx": 10_000}
EXPORT_BYTES = 80 * MB


def kept_for(ctx: Context) -> tuple[timedelta | None, timedelta | None]:
    """How long this job's export is kept (its queue's retention of completed jobs; None: for
    good), and the longest any completed job is kept (the sweep's age)."""
    try:
        retention = ctx.service("retention")
    except LookupError:
        return export.EXPORT_TTL, export.EXPORT_TTL
    ttls = [retention.default.ttl(Status.COMPLETED), *(p.ttl(Status.COMPLETED) for p in retention.queues.values())]
    longest = None if any(t is None for t in ttls) else max(ttls)
    return retention.ttl(Status.COMPLETED, ctx.job.queue), longest


def export_dataset(ctx: Context, data: DataExportInput) -> dict[str, Any]:
    started = time.monotonic()
    ttl, longest = kept_for(ctx)
    export.sweep_expired(ctx.data_dir, max_age=longest)
    dataset = open_dataset(ctx.data_dir, data.datasetId, ctx.owner.org_id)
    filters = data.filters or ExportFilters()
    rows_in_dataset = int(dataset.meta.get("rows", 0))
    total = min(rows_in_dataset, filters.limit or rows_in_dataset)
    ctx.progress(processed=0, total=total)
    done = 0

    def on_part(rows: int) -> None:
        nonlocal done
        done += rows
        ctx.progress(processed=min(done, total))

    metadata = None
    if data.includeMetadata:
        metadata = {
            "datasetId": str(data.datasetId),
            "exportedAt": datetime.now(UTC).isoformat(),
            "jobId": str(ctx.job_id),
            "filters": filters.model_dump(mode="json", exclude_none=True),
            "columns": dataset.meta.get("columns"),
            "source": dataset.meta.get("source"),
        }
    target = export.export_path(ctx.data_dir, ctx.job_id, data.format)
    date_range = filters.dateRange
    written = export.write_export(
        dataset,
        target,
        data.format,
        sentiment=filters.sentiment,
        start=date_range.start if date_range else None,
        end=date_range.end if date_range else None,
        limit=filters.limit,
        metadata=metadata,
        on_part=on_part,
    )
    if metadata is not None:
        metadata["records"] = written
    ctx.progress(processed=written, total=written)
    ctx.info(f"{written} records exported as {data.format}", component="data_export")
    expiry = export.expires_at(ttl=ttl)
    return {
        "datasetId": str(data.datasetId),
        "format": data.format,
        "records": written,
        "bytes": target.stat().st_size,
        "fileName": f"export-{data.datasetId}.{data.format}",
        "downloadUrl": f"/api/v1/jobs/{ctx.job_id}/download",
        "expiresAt": expiry.isoformat() if expiry is not None else None,  # None: kept for good
        "metadata": metadata,
        "seconds": round(time.monotonic() - started, 3),
    }


# --- registration -------------------------------------------------------------------------------------------

jobtypes = Registry()


@jobtypes.add
class SentimentAnalysisBatch(JobType):
    """Sentiment of up to 10,000 texts, identifiers masked first."""

    kind = "sentiment_analysis_batch"
    queue = "default"
    runs_in = "thread"
    sensitive = True  # the texts may carry personal data
    timeout = timedelta(minutes=10)
    description = "batch sentiment analysis with PII masking (seed 002)"

    def execute(self, ctx: Context, data: SentimentBatchInput) -> dict[str, Any]:
        return analyze_texts(ctx, data)

    def estimate_time(self, data: SentimentBatchInput) -> timedelta:
        return timedelta(seconds=1 + len(data.texts) / SENTIMENT_TEXTS_PER_SECOND)

    def estimate_memory(self, data: SentimentBatchInput) -> int:
        return SENTIMENT_BASE_BYTES + len(data.texts) * SENTIMENT_BYTES_PER_TEXT


@jobtypes.add
class FileProcessing(JobType):
    """CSV, JSON Lines, Parquet or XLSX into a dataset, a chunk at a time."""

    kind = "file_processing"
    runs_in = "thread"
    timeout = timedelta(minutes=30)
    description = "large file processing into a dataset (seed 002)"

    def execute(self, ctx: Context, data: FileProcessingInput) -> dict[str, Any]:
        return process_file(ctx, data)

    def estimate_time(self, data: FileProcessingInput) -> timedelta:
        """For one chunk: the file's size is known only where the job runs (the first progress
        report carries it, and the ETA follows from the measured speed)."""
        rate = PARSE_BYTES_PER_SECOND if data.processingType == "parse" else ANALYZE_BYTES_PER_SECOND
        return timedelta(seconds=1 + data.chunkSize / rate)

    def estimate_memory(self, data: FileProcessingInput) -> int:
        return PARSE_BASE_BYTES + batch_rows_for(data.chunkSize) * PARSE_BYTES_PER_BATCH_ROW


@jobtypes.add
class SecurityScan(JobType):
    """PII, secrets, dangerous content, file type and encoding of one file."""

    kind = "security_scan"
    runs_in = "thread"
    timeout = timedelta(minutes=30)
    description = "security and compliance scan of a file (seed 002)"

    def execute(self, ctx: Context, data: SecurityScanInput) -> dict[str, Any]:
        return scan_one(ctx, data)

    def estimate_time(self, data: SecurityScanInput) -> timedelta | None:
        """quick: the sample; full: one 100 MB file's worth until the job reports the real size."""
        planned = scan.SAMPLE_BYTES if data.scanType == "quick" else 100 * MB
        return timedelta(seconds=1 + planned / SCAN_BYTES_PER_SECOND)

    def estimate_memory(self, data: SecurityScanInput) -> int:
        return SCAN_BYTES


@jobtypes.add
class DataExport(JobType):
    """A dataset as CSV, JSON or XLSX, downloadable from /api/v1/jobs/{id}/download."""

    kind = "data_export"
    runs_in = "thread"
    timeout = timedelta(minutes=10)
    description = "export of a dataset as CSV, JSON or XLSX (seed 002)"

    def execute(self, ctx: Context, data: DataExportInput) -> dict[str, Any]:
        return export_dataset(ctx, data)

    def estimate_time(self, data: DataExportInput) -> timedelta:
        """By the limit, else for 100,000 records (the dataset's size is read when the job runs)."""
        records = (data.filters.limit if data.filters else None) or 100_000
        return timedelta(seconds=1 + records / EXPORT_RECORDS_PER_SECOND[data.format])

    def estimate_memory(self, data: DataExportInput) -> int:
        return EXPORT_BYTES


@jobtypes.on_pruned("data_export")
def remove_exports(data_dir: Path, jobs: list[PrunedJob]) -> None:
    """Retention removed these exports' jobs: their files go too (export.sweep_expired
    catches a file whose job went without this hook)."""
    for job in jobs:
        for file_format in export.MEDIA_TYPES:
            export.export_path(data_dir, job.id, file_format).unlink(missing_ok=True)
