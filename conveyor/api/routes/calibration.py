"""The calibration family (seed 003): `/api/v1/calibrate/async`, `/{job_id}/status`,
`/{job_id}/result`, `DELETE /{job_id}`, `/batch` and `/batch/{batch_id}/status`.

Each route translates: the job type (`calibration`, conveyor.packs.calibration) does the work,
the engine's batches and result cache do the rest. Ids are shown in seed 003's form
(`job_<32 hex>`, `batch_<32 hex>`); plain UUIDs are accepted too. Statuses are seed 003's
(`success` for completed; scheduled reads `pending`). Errors are `{detail, status_code,
timestamp}` (conveyor.api.errors). Creating needs `jobs:create`, reading `jobs:read`,
cancelling `jobs:manage`; another organisation's job or batch answers 404.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso
from conveyor.engine import JobRequest
from conveyor.errors import BatchNotFound, JobNotCancellable, JobNotFound
from conveyor.model import Job, LogLevel, Status
from conveyor.packs import calibration as pack

router = APIRouter(prefix="/api/v1/calibrate", tags=["calibration (seed 003)"], route_class=LeanRoute)

Creator = Annotated[Principal, Depends(require(Permission.JOBS_CREATE))]
Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
Svc = Annotated[Services, Depends(services)]

SEED_DEFAULT_TIMEOUT_MINUTES = 30.0  # seed 003's DEFAULT_TIMEOUT_MINUTES
SEED_MAX_TIMEOUT_MINUTES = 120.0  # seed 003's MAX_TIMEOUT_MINUTES
CANCEL_WAIT_MARGIN_SECONDS = 5.0
STATUS_NAMES = {Status.COMPLETED: "success", Status.SCHEDULED: "pending"}
BATCH_STATUS_NAMES = {"completed": "success"}


# Seed 003's own examples.
_JOB = "job_0196f2e5b1a77c3d9e4fa1b2c3d4e5f6"
_BATCH = "batch_0196f2e5b1a77c3d9e4f000000000042"
_ERROR = {"detail": f"Job {_JOB} not found", "status_code": 404, "timestamp": "2024-01-15T14:30:00Z"}
NOT_FOUND = ex.example(404, _ERROR)
CREATED = ex.example(200, {"job_id": _JOB, "status": "created"})
STATUS = {
    "job_id": _JOB,
    "status": "running",
    "progress": {"current_step": 3, "total_steps": 4, "step_name": "Sampling the posterior (insilicova, prior matrix)",
                 "progress_percentage": 60.0, "estimated_completion": "2024-01-15T14:30:00Z"},
    "metadata": {"job_id": _JOB, "job_type": "calibration", "created_at": "2024-01-15T14:25:00Z",
                 "started_at": "2024-01-15T14:25:30Z", "completed_at": None, "priority": 5, "age_group": "neonate",
                 "country": "Mozambique", "timeout_minutes": 30.0, "batch_id": None, "attempt": 1},
    "logs": [{"timestamp": "2024-01-15T14:26:00Z", "level": "info", "component": "calibration",
              "message": "insilicova: 1190 deaths; not calibrated: congenital_malformation, other; lambda 0.29"}],
    "log_count": 1,
    "result_summary": None,
    "error_details": None,
}  # fmt: skip
RESULT = {
    "job_id": _JOB,
    "status": "success",
    "result": {
        "status": "success",
        "causes": ["congenital_malformation", "pneumonia", "sepsis_meningitis_inf", "ipre", "other", "prematurity"],
        "uncalibrated": {"insilicova": [0.00084, 0.12437, 0.30504, 0.27479, 0.05210, 0.24286]},
        "calibrated": {"insilicova": {"mean": [0.00084, 0.10595, 0.55890, 0.20165, 0.05210, 0.08056],
                                      "lower_ci": [0.00084, 0.00491, 0.39036, 0.03040, 0.05210, 0.00474],
                                      "upper_ci": [0.00084, 0.28918, 0.76676, 0.34023, 0.05210, 0.18315]}},
        "age_group": "neonate",
        "country": "Mozambique",
        "completed_at": "2024-01-15T14:28:45Z",
    },
    "metadata": STATUS["metadata"],
    "cache_info": {"cached_at": "2024-01-15T14:28:45Z", "source_job_id": _JOB, "outcome": "hit"},
}  # fmt: skip
BATCH_CREATED = {
    "batch_id": _BATCH,
    "job_ids": [_JOB],
    "batch_metadata": {"batch_id": _BATCH, "batch_name": "Multi-country comparison", "total_jobs": 1,
                       "created_at": "2024-01-15T14:30:00Z", "parallel_limit": 3, "fail_fast": False},
}  # fmt: skip
BATCH_STATUS = {
    "batch_id": _BATCH, "batch_name": "Multi-country comparison", "total_jobs": 1, "completed_jobs": 0,
    "failed_jobs": 0, "cancelled_jobs": 0, "running_jobs": 1, "pending_jobs": 0, "batch_status": "running",
    "job_statuses": [{"job_id": _JOB, "status": "running"}],
}  # fmt: skip


def family_status(status: Status) -> str:
    return STATUS_NAMES.get(status, status.value)


def job_ref(job_id: UUID) -> str:
    return f"job_{job_id.hex}"


def batch_ref(batch_id: UUID) -> str:
    return f"batch_{batch_id.hex}"


def _parse(raw: str, prefix: str, what: str) -> UUID:
    text = raw.removeprefix(prefix + "_")
    try:
        return UUID(text)
    except ValueError:
        raise ApiError(404, "NOT_FOUND", f"{what} {raw} not found") from None


class CalibrationJob(BaseModel):
    """One calibration: seed 003's request fields, and the sampler's own."""

    model_config = ConfigDict(extra="forbid")

    va_data: dict[str, Any] = Field(description='per algorithm (eava, insilicova, interva), e.g. "use_example"')
    age_group: Literal["neonate", "child"]
    country: str = Field(min_length=1, max_length=100)
    mmat_type: Literal["prior", "fixed"] = "prior"
    ensemble: bool | None = None
    priority: int = Field(5, ge=1, le=10, description="1-10, higher first")
    timeout_minutes: float | None = Field(None, gt=0, description="default DEFAULT_TIMEOUT_MINUTES (30)")
    seed: int = Field(1, ge=0, le=2**31 - 1)
    n_mcmc: int = Field(10_000, ge=100, le=100_000)
    n_burn: int = Field(2_000, ge=100, le=100_000)


class CreateCalibration(CalibrationJob):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "va_data": {"insilicova": "use_example"},
                    "age_group": "neonate",
                    "country": "Mozambique",
                    "mmat_type": "prior",
                    "ensemble": True,
                    "priority": 5,
                    "timeout_minutes": 30,
                    "use_cache": True,
                }
            ]
        },
    )

    use_cache: bool = Field(True, description="reuse an identical request's result (within CACHE_TTL)")


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[CalibrationJob] = Field(min_length=1, description="at most BATCH_MAX_SIZE (50)")
    batch_name: str = Field("calibration batch", max_length=200)
    parallel_limit: int | None = Field(None, ge=1, le=10_000)
    fail_fast: bool = False


def _ready(svc: Services) -> None:
    """Calibration jobs are refused at enqueue when they could not run."""
    if reason := pack.unavailable():
        raise ApiError(503, "UNAVAILABLE", reason)


def _request(svc: Services, body: CalibrationJob, where: str = "") -> JobRequest:
    fields = body.model_dump(include=set(pack.CalibrationInput.model_fields))
    try:
        data = pack.CalibrationInput.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ApiError(400, "INVALID_JOB_DATA", problems) from None
    limit = svc.settings.max_timeout_minutes or SEED_MAX_TIMEOUT_MINUTES
    minutes = body.timeout_minutes or svc.settings.default_timeout_minutes or SEED_DEFAULT_TIMEOUT_MINUTES
    if minutes > limit:
        raise ApiError(
            400, "INVALID_REQUEST", f"{where}timeout_minutes {minutes:g} exceeds MAX_TIMEOUT_MINUTES ({limit:g})"
        )
    return JobRequest(
        pack.KIND,
        data,
        priority=body.priority,
        timeout=timedelta(minutes=min(minutes, limit)),
        labels={"age_group": body.age_group, "country": body.country, "mmat_type": body.mmat_type},
    )


@router.post("/async", summary="Create an asynchronous calibration job", responses=CREATED)
async def create(svc: Svc, principal: Creator, body: CreateCalibration) -> dict[str, Any]:
    """Answers at once with the job's id; with `use_cache`, an identical request's job (done
    within CACHE_TTL, or still running) is answered instead, with `cache_info`."""
    _ready(svc)
    request = _request(svc, body)
    if not body.use_cache:
        job = await svc.engine.enqueue(request.job_type, request.data, **_options(request, principal))
        return {"job_id": job_ref(job.id), "status": "created"}
    got = await svc.conveyor.cache.submit(
        request.job_type, request.data, visible_to=principal.visibility, **_options(request, principal)
    )
    if got.cache is None:
        return {"job_id": job_ref(got.job.id), "status": "created"}
    return {
        "job_id": job_ref(got.job.id),
        "status": family_status(got.job.status),
        "cache_info": _cache_info(got.job, got.cache.outcome),
    }


def _options(request: JobRequest, principal: Principal) -> dict[str, Any]:
    return {
        "priority": request.priority,
        "timeout": request.timeout,
        "labels": request.labels,
        "owner": principal.owner,
    }


def _cache_info(job: Job, outcome: str = "hit") -> dict[str, Any]:
    return {"cached_at": iso(job.completed_at), "source_job_id": job_ref(job.id), "outcome": outcome}


async def _job(svc: Services, principal: Principal, raw: str) -> Job:
    try:
        job = await svc.engine.get(_parse(raw, "job", "Job"), visible_to=principal.visibility)
    except JobNotFound:
        job = None
    if job is None or job.kind != pack.KIND:
        raise ApiError(404, "JOB_NOT_FOUND", f"Job {raw} not found")
    return job


def _metadata(job: Job) -> dict[str, Any]:
    return {
        "job_id": job_ref(job.id),
        "job_type": job.kind,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "priority": job.priority,
        "age_group": job.labels.get("age_group"),
        "country": job.labels.get("country"),
        "timeout_minutes": job.timeout.total_seconds() / 60 if job.timeout else None,
        "batch_id": batch_ref(job.batch_id) if job.batch_id else None,
        "attempt": job.attempt,
    }


def _progress(job: Job) -> dict[str, Any]:
    p = job.progress
    done = job.status == Status.COMPLETED
    return {
        "current_step": p.total_steps if done and p.total_steps else p.step or 0,
        "total_steps": p.total_steps or 0,
        "step_name": p.step_name,
        "progress_percentage": 100.0 if done else p.percentage,
        "estimated_completion": iso(p.eta) if job.status == Status.RUNNING else None,
    }


def _summary(job: Job) -> dict[str, Any] | None:
    if job.status != Status.COMPLETED or not isinstance(job.result, dict):
        return None
    r = job.result
    return {
        "algorithms": [k for k in r.get("calibrated", {}) if k != "ensemble"],
        "ensemble": r.get("ensemble"),
        "causes": r.get("causes"),
        "calibrated_means": {k: v["mean"] for k, v in r.get("calibrated", {}).items()},
        "seconds": r.get("seconds"),
    }


@router.get(
    "/{job_id}/status",
    summary="A calibration job's progress, metadata and logs",
    responses=ex.example(200, STATUS) | NOT_FOUND,
)
async def status(
    svc: Svc,
    principal: Reader,
    job_id: str,
    log_level: Annotated[Literal["debug", "info", "warning", "error", "critical"] | None, Query()] = None,
    log_limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    log_offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """`log_level` keeps lines of that level and above; `log_limit`/`log_offset` page them."""
    job = await _job(svc, principal, job_id)
    level = LogLevel.parse(log_level) if log_level else None
    logs, total = await svc.engine.logs(job.id, min_level=level, limit=log_limit, offset=log_offset)
    return {
        "job_id": job_ref(job.id),
        "status": family_status(job.status),
        "progress": _progress(job),
        "metadata": _metadata(job),
        "logs": [
            {
                "timestamp": iso(e.timestamp),
                "level": LogLevel(e.level).name.lower(),
                "message": e.message,
                "component": e.component,
            }
            for e in logs
        ],
        "log_count": total,
        "result_summary": _summary(job),
        "error_details": job.error,
    }


@router.get("/{job_id}/result", summary="A calibration's result", responses=ex.example(200, RESULT) | NOT_FOUND)
async def result(svc: Svc, principal: Reader, job_id: str) -> dict[str, Any]:
    """The result once the job succeeded; before that (or after a failure) `result` is null,
    with the job's status and `error_details`."""
    job = await _job(svc, principal, job_id)
    if job.status != Status.COMPLETED:
        return {
            "job_id": job_ref(job.id),
            "status": family_status(job.status),
            "result": None,
            "metadata": _metadata(job),
            "error_details": job.error,
            "cache_info": None,
        }
    return {
        "job_id": job_ref(job.id),
        "status": "success",
        "result": {**job.result, "completed_at": iso(job.completed_at)},
        "metadata": _metadata(job),
        "cache_info": _cache_info(job),
    }


@router.delete(
    "/{job_id}",
    summary="Cancel a calibration job",
    responses=ex.example(200, {"job_id": _JOB, "status": "cancelled"}) | NOT_FOUND,
)
async def cancel(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """Pending jobs are cancelled at once; a running one stops at its next chunk of draws
    (waited for, up to the worker's grace)."""
    job = await _job(svc, principal, job_id)
    try:
        job = await svc.engine.cancel(job.id, visible_to=principal.visibility)
    except JobNotCancellable:
        raise ApiError(
            400, "JOB_NOT_CANCELLABLE", f"Job {job_id} cannot be cancelled: its status is {family_status(job.status)}"
        ) from None
    if not job.status.is_finished:
        wait = svc.settings.cancel_grace_seconds + CANCEL_WAIT_MARGIN_SECONDS
        job = await svc.engine.wait(job.id, wait, visible_to=principal.visibility)
    answer = family_status(job.status)
    return {"job_id": job_ref(job.id), "status": answer if job.status.is_finished else "cancelling"}


# --- batches ---------------------------------------------------------------------------------------


@router.post("/batch", summary="Create a batch of calibration jobs", responses=ex.example(200, BATCH_CREATED))
async def create_batch(svc: Svc, principal: Creator, body: CreateBatch) -> dict[str, Any]:
    """Every job is checked first (errors name `jobs.<index>`); at most `parallel_limit` run at
    once; with `fail_fast`, a failure cancels the jobs not yet finished."""
    _ready(svc)
    if len(body.jobs) > svc.conveyor.batches.max_size:
        raise ApiError(
            400, "BATCH_TOO_LARGE", f"a batch holds at most {svc.conveyor.batches.max_size} jobs (BATCH_MAX_SIZE)"
        )
    requests = [_request(svc, job, where=f"jobs.{i}.") for i, job in enumerate(body.jobs)]
    view = await svc.conveyor.batches.submit(
        body.batch_name, requests, parallel_limit=body.parallel_limit, fail_fast=body.fail_fast, owner=principal.owner
    )
    b = view.batch
    return {
        "batch_id": batch_ref(b.id),
        "job_ids": [job_ref(m.id) for m in view.jobs],
        "batch_metadata": {
            "batch_id": batch_ref(b.id),
            "batch_name": b.name,
            "total_jobs": view.total,
            "created_at": iso(b.created_at),
            "parallel_limit": b.parallel_limit,
            "fail_fast": b.fail_fast,
        },
    }


@router.get(
    "/batch/{batch_id}/status",
    summary="A batch's progress and its jobs' statuses",
    responses=ex.example(200, BATCH_STATUS) | NOT_FOUND,
)
async def batch_status(svc: Svc, principal: Reader, batch_id: str) -> dict[str, Any]:
    try:
        view = await svc.conveyor.batches.get(_parse(batch_id, "batch", "Batch"), visible_to=principal.visibility)
    except BatchNotFound:
        raise ApiError(404, "BATCH_NOT_FOUND", f"Batch {batch_id} not found") from None
    counts = view.counts
    return {
        "batch_id": batch_ref(view.batch.id),
        "batch_name": view.batch.name,
        "total_jobs": view.total,
        "completed_jobs": counts["completed"],
        "failed_jobs": counts["failed"] + counts["timeout"],
        "cancelled_jobs": counts["cancelled"],
        "running_jobs": counts["running"],
        "pending_jobs": counts["pending"] + counts["scheduled"],
        "batch_status": BATCH_STATUS_NAMES.get(view.status, view.status),
        "job_statuses": [{"job_id": job_ref(m.id), "status": family_status(m.status)} for m in view.jobs],
    }
