"""Seed 004's view of a bulk upload job: its statuses, the detailed job and the quick status.

Statuses in this family: pending (waiting for a worker), queued (waiting for its run time:
a retry's backoff), processing, completed, and failed, which also covers cancelled jobs
(seed 004's cancel "updates job status to failed with cancellation message") and timed-out
ones. `celery_info` keeps seed 004's field names for the worker's view of the job, with
Celery's state names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.api.timefmt import iso
from conveyor.model import Job, Status, utc_now
from conveyor.packs.predictions import KINDS

_PERIOD_OF_KIND = {kind: period for period, kind in KINDS.items()}

STATUS = {
    Status.SCHEDULED: "queued",
    Status.PENDING: "pending",
    Status.RUNNING: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "failed",
    Status.TIMEOUT: "failed",
}
FAMILY_STATUSES: dict[str, tuple[Status, ...]] = {
    "pending": (Status.PENDING,),
    "queued": (Status.SCHEDULED,),
    "processing": (Status.RUNNING,),
    "completed": (Status.COMPLETED,),
    "failed": (Status.FAILED, Status.CANCELLED, Status.TIMEOUT),
}
CELERY_STATE = {
    Status.SCHEDULED: "RETRY",
    Status.PENDING: "PENDING",
    Status.RUNNING: "STARTED",
    Status.COMPLETED: "SUCCESS",
    Status.FAILED: "FAILURE",
    Status.CANCELLED: "REVOKED",
    Status.TIMEOUT: "FAILURE",
}
CANCELLED_MESSAGE = "Job cancelled by user"


def period_of(job: Job) -> str | None:
    """annual or quarterly; None for a job that is not a bulk upload."""
    return _PERIOD_OF_KIND.get(job.kind)


def family_status(job: Job) -> str:
    return STATUS[job.status]


def duration_text(seconds: float) -> str:
    """Seed 004's estimated_completion_time: "1m 25s", "2h 5m 0s", "45s"."""
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def error_message(job: Job) -> str | None:
    if job.status is Status.CANCELLED:
        return CANCELLED_MESSAGE
    if job.error:
        return str(job.error.get("message") or job.error.get("type") or "failed")
    return None


def progress_view(job: Job) -> dict[str, Any]:
    p = job.progress
    total = p.total or 0
    processed = p.processed
    if total:
        percentage = round(min(100.0 * processed / total, 100.0), 1)
    else:
        percentage = 100.0 if job.status is Status.COMPLETED else 0.0
    return {
        "total_rows": total,
        "processed_rows": processed,
        "successful_rows": p.successful,
        "failed_rows": p.failed,
        "progress_percentage": percentage,
        "remaining_rows": max(total - processed, 0),
    }


def performance_view(job: Job, now: datetime | None = None) -> dict[str, Any]:
    """Seed 004's calculated fields: rows/s = processed / processing time; while the job is
    processing, the remaining rows at that speed."""
    if job.started_at is None:
        return {"processing_time_seconds": None, "rows_per_second": None, "estimated_completion_time": None}
    end = job.completed_at if job.status.is_finished and job.completed_at else (now or utc_now())
    seconds = max((end - job.started_at).total_seconds(), 0.0)
    processed = job.progress.processed
    speed = processed / seconds if seconds > 0 else None
    out: dict[str, Any] = {
        "processing_time_seconds": round(seconds, 2),
        "rows_per_second": round(speed, 2) if speed is not None else None,
        "estimated_completion_time": None,
    }
    if job.status is Status.RUNNING:
        remaining = max((job.progress.total or 0) - processed, 0)
        eta = remaining / speed if speed else None
        out["estimated_completion_seconds"] = round(eta) if eta is not None else None
        out["estimated_completion_time"] = duration_text(eta) if eta is not None else None
    return out


def row_errors(job: Job) -> list[dict[str, Any]]:
    return [
        {"row": e.get("item"), "company_symbol": (e.get("details") or {}).get("company_symbol"), "error": e["message"]}
        for e in job.item_errors
    ]


def errors_view(job: Job, *, include_errors: bool) -> dict[str, Any]:
    message = error_message(job)
    failed_rows = job.progress.failed
    details = None
    if include_errors:
        details = {"errors": row_errors(job), "truncated": job.item_errors_dropped > 0}
    return {
        "has_errors": bool(message) or failed_rows > 0,
        "error_message": message,
        "error_details": details,
        "error_count": failed_rows,
    }


def celery_view(job: Job) -> dict[str, Any]:
    meta: dict[str, Any] | None = None
    if job.attempt:
        meta = {
            "worker_id": job.worker_id,
            "queue": job.queue,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
        }
        if job.error and job.status is not Status.COMPLETED:
            meta |= {"exc_type": job.error.get("type"), "exc_message": job.error.get("message")}
    return {"task_id": str(job.id), "celery_status": CELERY_STATE[job.status], "celery_meta": meta}


def job_view(job: Job, *, include_errors: bool = False, summary: bool = False) -> dict[str, Any]:
    """The detailed job of seed 004's GET /jobs/{job_id} (and each item of the list)."""
    file_info = job.file_info or {}
    view: dict[str, Any] = {
        "id": str(job.id),
        "status": family_status(job),
        "job_type": period_of(job),
        "file_info": {
            "original_filename": file_info.get("original_filename"),
            "file_size": file_info.get("file_size"),
            "file_size_mb": file_info.get("file_size_mb"),
        },
        "progress": progress_view(job),
        "performance": performance_view(job),
        "timestamps": {
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "completed_at": iso(job.completed_at),
            "updated_at": iso(job.updated_at),
        },
        "context": {
            "user_id": job.owner.user_id,
            "organization_id": job.owner.org_id,
            "created_by": job.owner.created_by,
        },
        "errors": errors_view(job, include_errors=include_errors),
        "celery_info": celery_view(job),
    }
    if summary and job.status is Status.COMPLETED and isinstance(job.result, dict):
        view["summary"] = job.result.get("summary")
        view["results_url"] = f"/api/v1/predictions/jobs/{job.id}/results"
    return view


def quick_status(job: Job) -> dict[str, Any]:
    """The small answer of GET /jobs/{job_id}/status, for polling."""
    progress = progress_view(job)
    return {
        "success": True,
        "job_id": str(job.id),
        "status": family_status(job),
        "job_type": period_of(job),
        "progress_percentage": progress["progress_percentage"],
        "total_rows": progress["total_rows"],
        "processed_rows": progress["processed_rows"],
        "successful_rows": progress["successful_rows"],
        "failed_rows": progress["failed_rows"],
        "estimated_completion_time": performance_view(job)["estimated_completion_time"],
        "error_message": error_message(job),
        "updated_at": iso(job.updated_at),
    }
