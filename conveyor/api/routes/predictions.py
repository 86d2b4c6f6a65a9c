"""The predictions family (seed 004): default-risk bulk uploads and the jobs that score them.

Seed 004 fixes the paths, the detailed job view, delete, cancel, its messages and the error
shape `{"detail": …}`; it documents no upload, quick-status, list or results bodies, so those
answer in the same vocabulary (conveyor.api.predictions_view). The job type, column rules and
scoring live in the pack (conveyor.packs.predictions); uploads and results are files in a
workspace under CONVEYOR_DATA_DIR, never in the job row.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.predictions_view import (
    FAMILY_STATUSES,
    family_status,
    job_view,
    period_of,
    quick_status,
)
from conveyor.api.routes.canonical import parse_job_id
from conveyor.api.services import Services, admit_jobs, queue_of, services
from conveyor.api.uploads import UploadRefused, receive_file
from conveyor.errors import JobNotCancellable, JobNotDeletable, JobNotFound
from conveyor.model import Job, JobFilter, Status
from conveyor.packs.predictions import KINDS, Period, PredictionInput, Workspace, detect_format

router = APIRouter(prefix="/api/v1/predictions", tags=["predictions (seed 004)"], route_class=LeanRoute)

Creator = Annotated[Principal, Depends(require(Permission.JOBS_CREATE))]
Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
Svc = Annotated[Services, Depends(services)]

UPLOAD_PATHS = tuple(f"/api/v1/predictions/{period}/bulk-upload-async" for period in KINDS)
NOT_FOUND = "Job not found or access denied"
MEDIA_TYPES = {"csv": "text/csv", "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
# How long a cancel waits for a running job to stop, beyond the worker's grace for it.
CANCEL_WAIT_MARGIN_SECONDS = 5.0
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "CSV or XLSX"},
                        "amounts_in": {"type": "string", "enum": ["units", "thousands", "millions", "billions"]},
                        "price_level_index": {"type": "number", "description": "GNP price level, 1968 = 100"},
                    },
                }
            }
        },
    }
}


# Seed 004's own examples (its job view, delete and cancel answers and messages).
_JOB_ID = ex.JOB_ID
SEED_JOB = {
    "id": _JOB_ID,
    "status": "completed",
    "job_type": "annual",
    "file_info": {"original_filename": "annual_predictions_1000_rows.csv", "file_size": 2048576, "file_size_mb": 1.95},
    "progress": {
        "total_rows": 1000, "processed_rows": 1000, "successful_rows": 985, "failed_rows": 15,
        "progress_percentage": 100.0, "remaining_rows": 0,
    },
    "performance": {"processing_time_seconds": 125.5, "rows_per_second": 7.97, "estimated_completion_time": None},
    "timestamps": {
        "created_at": "2024-01-15T10:30:00.000Z", "started_at": "2024-01-15T10:30:05.000Z",
        "completed_at": "2024-01-15T10:32:10.000Z", "updated_at": "2024-01-15T10:32:10.000Z",
    },
    "context": {"user_id": "user-uuid", "organization_id": "org-uuid", "created_by": "john.doe"},
    "errors": {
        "has_errors": True,
        "error_message": None,
        "error_details": {
            "errors": [
                {"row": 45, "company_symbol": "INVALID", "error": "Invalid market cap value"},
                {"row": 123, "company_symbol": "TEST123", "error": "Missing required field: sector"},
            ],
            "truncated": False,
        },
        "error_count": 15,
    },
    "celery_info": {"task_id": _JOB_ID, "celery_status": "SUCCESS", "celery_meta": None},
}  # fmt: skip
NOT_FOUND_EXAMPLE = ex.example(404, {"detail": "Job not found or access denied"})
UPLOADED = {
    "success": True,
    "message": f"File annual_data.csv accepted: job {_JOB_ID} scores its rows in the background",
    "job_id": _JOB_ID,
    "status": "pending",
    "job_type": "annual",
    "file_info": {
        "original_filename": "annual_data.csv",
        "file_size": 2048576,
        "file_size_mb": 1.95,
        "file_format": "csv",
    },
    "status_url": f"/api/v1/predictions/jobs/{_JOB_ID}/status",
    "details_url": f"/api/v1/predictions/jobs/{_JOB_ID}",
}
UPLOAD_EXAMPLES = (
    ex.example(202, UPLOADED)
    | ex.example(400, {"detail": "Unsupported file type: upload a CSV or XLSX file"})
    | ex.example(413, {"detail": "File too large: the limit is 100 MB"})
)
STATUS_EXAMPLE = {
    "success": True, "job_id": _JOB_ID, "status": "processing", "job_type": "annual", "progress_percentage": 34.7,
    "total_rows": 1000, "processed_rows": 347, "successful_rows": 340, "failed_rows": 7,
    "estimated_completion_time": "1m 25s", "error_message": None, "updated_at": "2024-01-15T10:30:45.000Z",
}  # fmt: skip
RESULTS_EXAMPLE = {
    "success": True, "job_id": _JOB_ID, "status": "completed", "job_type": "annual", "rows": "scored", "total": 985,
    "limit": 100, "offset": 0, "has_more": True,
    "results": [{
        "row": 2, "company_symbol": "ACME", "company_name": "Acme Corp", "sector": "Manufacturing",
        "fiscal_year": 2023, "altman_model": "Z", "altman_z_score": 3.825, "zone": "safe",
        "ohlson_o_score": -8.676478, "probability_of_default": 0.000171, "zmijewski_score": -2.5057,
        "zmijewski_probability": 0.00611, "risk_level": "low",
    }],
}  # fmt: skip
DELETED = {
    "success": True,
    "message": f"Job {_JOB_ID} deleted successfully",
    "deleted_job": {"id": _JOB_ID, "status": "completed", "job_type": "annual", "original_filename": "annual_data.csv"},
}
NOT_DELETABLE = {
    "detail": "Cannot delete job that is currently processing. Please cancel the job first or wait for it to complete."
}
CANCELLED = {
    "success": True,
    "message": f"Job {_JOB_ID} cancelled successfully",
    "cancelled_job": {
        "id": _JOB_ID, "status": "failed", "job_type": "quarterly", "original_filename": "quarterly_data.xlsx",
        "celery_cancelled": True,
    },
}  # fmt: skip
NOT_CANCELLABLE = {
    "detail": "Cannot cancel job with status 'completed'. Only pending or processing jobs can be cancelled."
}


def _not_found() -> ApiError:
    return ApiError(404, "JOB_NOT_FOUND", NOT_FOUND)


async def _visible_job(svc: Services, principal: Principal, job_id: str) -> Job:
    """A predictions job the caller may see; 404 for any other (another organisation's, or
    not a bulk upload at all), so that ids leak nothing."""
    try:
        job = await svc.engine.get(parse_job_id(job_id), visible_to=principal.visibility)
    except JobNotFound:
        raise _not_found() from None
    if period_of(job) is None:
        raise _not_found()
    return job


def _workspace(svc: Services, job: Job) -> Workspace:
    return Workspace(Path(svc.settings.data_dir), job.data["workspace"])


# --- upload --------------------------------------------------------------------------------------


def _options(fields: dict[str, str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if amounts_in := fields.get("amounts_in", "").strip().lower():
        if amounts_in not in ("units", "thousands", "millions", "billions"):
            raise UploadRefused(400, "Invalid amounts_in: use units, thousands, millions or billions")
        options["amounts_in"] = amounts_in
    if index := fields.get("price_level_index", "").strip():
        try:
            value = float(index)
        except ValueError:
            value = -1.0
        if not 0 < value <= 1_000_000:
            raise UploadRefused(400, "Invalid price_level_index: a number above 0 (1968 = 100)")
        options["price_level_index"] = value
    return options


async def _upload(svc: Services, principal: Principal, request: Request, period: Period) -> dict[str, Any]:
    settings = svc.settings
    await admit_jobs(svc, principal, 1, queue_of(svc, KINDS[period], None))  # before the upload is read
    workspace = Workspace.create(Path(settings.data_dir))
    try:
        incoming = workspace.path / "incoming"
        received = await receive_file(request, file_field="file", target=incoming, max_bytes=settings.max_upload_bytes)
        if not received.has_file:
            raise UploadRefused(400, "No file uploaded: send it in the multipart field 'file'")
        if received.size == 0:
            raise UploadRefused(400, "The uploaded file is empty")
        file_format = detect_format(incoming)
        if file_format is None:
            raise UploadRefused(400, "Unsupported file type: upload a CSV or XLSX file")
        incoming.rename(workspace.upload_path(file_format))
        data = PredictionInput(
            workspace=workspace.name,
            file_format=file_format,
            chunk_rows=settings.predictions_chunk_rows,
            **_options(received.fields),
        )
        filename = received.filename or f"upload.{file_format}"
        file_info = {
            "original_filename": filename,
            "file_size": received.size,
            "file_size_mb": round(received.size / 1024 / 1024, 2),
            "file_format": file_format,
        }
        job = await svc.engine.enqueue(KINDS[period], data, owner=principal.owner, file_info=file_info)
    except UploadRefused as exc:
        workspace.remove()
        raise ApiError(exc.status, "INVALID_UPLOAD", exc.message) from None
    except BaseException:
        workspace.remove()
        raise
    return {
        "success": True,
        "message": f"File {filename} accepted: job {job.id} scores its rows in the background",
        "job_id": str(job.id),
        "status": family_status(job),
        "job_type": period,
        "file_info": file_info,
        "status_url": f"/api/v1/predictions/jobs/{job.id}/status",
        "details_url": f"/api/v1/predictions/jobs/{job.id}",
    }


@router.post(
    "/annual/bulk-upload-async",
    status_code=202,
    summary="Upload annual statements",
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_EXAMPLES,
)
async def upload_annual(svc: Svc, principal: Creator, request: Request) -> dict[str, Any]:
    """A CSV or XLSX of annual statements (kind read from the content), scored in the
    background; answers at once with the job's id and status."""
    return await _upload(svc, principal, request, "annual")


@router.post(
    "/quarterly/bulk-upload-async",
    status_code=202,
    summary="Upload quarterly statements",
    openapi_extra=UPLOAD_BODY,
    responses=UPLOAD_EXAMPLES,
)
async def upload_quarterly(svc: Svc, principal: Creator, request: Request) -> dict[str, Any]:
    """As the annual upload, for quarterly statements (`fiscal_quarter` like 2024Q3)."""
    return await _upload(svc, principal, request, "quarterly")


# --- reads ---------------------------------------------------------------------------------------


@router.get(
    "/jobs",
    summary="List bulk upload jobs",
    responses=ex.example(
        200, {"success": True, "jobs": [SEED_JOB], "total": 1, "limit": 20, "offset": 0, "has_more": False}
    ),
)
async def list_jobs(
    svc: Svc,
    principal: Reader,
    status: Annotated[Literal["pending", "queued", "processing", "completed", "failed"] | None, Query()] = None,
    job_type: Annotated[Literal["annual", "quarterly"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """Newest first; `status` in this family's words, `job_type` annual or quarterly."""
    where = JobFilter(
        statuses=FAMILY_STATUSES[status] if status else (),
        kinds=(KINDS[job_type],) if job_type else tuple(KINDS.values()),
        visible_to=principal.visibility,
    )
    jobs, total = await svc.engine.list(where, limit=limit, offset=offset)
    return {
        "success": True,
        "jobs": [job_view(j) for j in jobs],
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": offset + len(jobs) < total,
    }


@router.get(
    "/jobs/{job_id}",
    summary="Get job details",
    responses=ex.example(200, {"success": True, "job": SEED_JOB}) | NOT_FOUND_EXAMPLE,
)
async def get_job(
    svc: Svc, principal: Reader, job_id: str, include_errors: Annotated[bool, Query()] = False
) -> dict[str, Any]:
    """File info, row progress, speed and ETA, timestamps, owner, errors (per row with
    `include_errors=true`), the worker's view in `celery_info`, and a completed job's summary."""
    job = await _visible_job(svc, principal, job_id)
    return {"success": True, "job": job_view(job, include_errors=include_errors, summary=True)}


@router.get(
    "/jobs/{job_id}/status", summary="Quick job status", responses=ex.example(200, STATUS_EXAMPLE) | NOT_FOUND_EXAMPLE
)
async def get_status(svc: Svc, principal: Reader, job_id: str) -> dict[str, Any]:
    return quick_status(await _visible_job(svc, principal, job_id))


@router.get(
    "/jobs/{job_id}/results",
    summary="Scored rows (JSON pages, CSV or XLSX)",
    response_model=None,
    responses=ex.example(200, RESULTS_EXAMPLE) | NOT_FOUND_EXAMPLE,
)
async def get_results(
    svc: Svc,
    principal: Reader,
    job_id: str,
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
    rows: Annotated[Literal["scored", "errors"], Query()] = "scored",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Any:
    """The rows scored so far (all of them once the job completed), or with `rows=errors` the
    rows that could not be scored; JSON a page at a time, or the whole set as CSV or XLSX."""
    job = await _visible_job(svc, principal, job_id)
    workspace = _workspace(svc, job)
    kind = "results" if rows == "scored" else "errors"
    name = f"{job.id}-{rows}"
    if format == "csv":
        return StreamingResponse(
            workspace.csv_stream(kind),
            media_type=MEDIA_TYPES["csv"],
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "xlsx":
        target = workspace.path / f"export-{secrets.token_hex(8)}.xlsx"
        try:
            await asyncio.to_thread(workspace.write_xlsx, kind, target)
        except ValueError as exc:
            raise ApiError(400, "TOO_MANY_ROWS", str(exc)) from None
        return FileResponse(
            target,
            media_type=MEDIA_TYPES["xlsx"],
            filename=f"{name}.xlsx",
            background=BackgroundTask(target.unlink, missing_ok=True),
        )
    total, page = await asyncio.to_thread(lambda: (workspace.count(kind), workspace.page(kind, offset, limit)))
    body: dict[str, Any] = {
        "success": True,
        "job_id": str(job.id),
        "status": family_status(job),
        "job_type": period_of(job),
        "rows": rows,
        "total": total,
        "limit": limit,
        "offset": offset,
        "has_more": offset + len(page) < total,
        "results": page,
    }
    return body


# --- delete and cancel ---------------------------------------------------------------------------


@router.delete(
    "/jobs/{job_id}",
    summary="Delete a job and its files",
    responses=ex.example(200, DELETED) | ex.example(400, NOT_DELETABLE) | NOT_FOUND_EXAMPLE,
)
async def delete_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """Any status but processing; the uploaded file and the results go too."""
    job = await _visible_job(svc, principal, job_id)
    try:
        deleted = await svc.engine.delete(job.id)
    except JobNotDeletable:
        raise ApiError(
            400,
            "JOB_NOT_DELETABLE",
            "Cannot delete job that is currently processing. Please cancel the job first or wait for it to complete.",
        ) from None
    except JobNotFound:
        raise _not_found() from None
    await asyncio.to_thread(_workspace(svc, deleted).remove)
    return {
        "success": True,
        "message": f"Job {deleted.id} deleted successfully",
        "deleted_job": {
            "id": str(deleted.id),
            "status": family_status(deleted),
            "job_type": period_of(deleted),
            "original_filename": (deleted.file_info or {}).get("original_filename"),
        },
    }


def _not_cancellable(job: Job) -> ApiError:
    return ApiError(
        400,
        "JOB_NOT_CANCELLABLE",
        f"Cannot cancel job with status '{family_status(job)}'. Only pending or processing jobs can be cancelled.",
    )


@router.post(
    "/jobs/{job_id}/cancel",
    summary="Cancel a pending or processing job",
    responses=ex.example(200, CANCELLED) | ex.example(400, NOT_CANCELLABLE) | NOT_FOUND_EXAMPLE,
)
async def cancel_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """A pending job is cancelled at once; a processing one stops at its next chunk (the
    answer waits for that). Either ends `failed` with a cancellation message."""
    job = await _visible_job(svc, principal, job_id)
    if job.status.is_finished:
        raise _not_cancellable(job)
    try:
        job = await svc.engine.cancel(job.id)
    except JobNotCancellable:
        raise _not_cancellable(await svc.engine.get(job.id)) from None
    except JobNotFound:
        raise _not_found() from None
    if not job.status.is_finished:  # running: asked to stop at its next checkpoint
        wait = svc.settings.cancel_grace_seconds + CANCEL_WAIT_MARGIN_SECONDS
        with contextlib.suppress(JobNotFound):
            job = await svc.engine.wait(job.id, timeout=wait)
        if job.status is Status.COMPLETED:
            raise _not_cancellable(job)  # it finished before it saw the request
    stopped = job.status is Status.CANCELLED
    return {
        "success": True,
        "message": f"Job {job.id} cancelled successfully"
        if stopped
        else f"Cancellation of job {job.id} requested; it stops at its next chunk",
        "cancelled_job": {
            "id": str(job.id),
            "status": family_status(job),
            "job_type": period_of(job),
            "original_filename": (job.file_info or {}).get("original_filename"),
            "celery_cancelled": stopped,
        },
    }
