"""Batches over HTTP, in the canonical family: `/api/v1/batches` (create, list), `/{id}`
(status), `/{id}/cancel`.

Answers are `{success, data, timestamp}` in camelCase; errors the canonical error shape,
naming the field at fault (`jobs.2.data.count` for a job's data). Creating needs
`jobs:create`, reading `jobs:read`, cancelling `jobs:manage`; a batch is seen by whoever would
see its jobs (the creator's organisation, narrowed as for jobs): another organisation's
batch answers 404 everywhere. Seed 003's `/api/v1/calibrate/batch` maps onto the same engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import api_error_of
from conveyor.api.lean import LeanRoute
from conveyor.api.params import LABEL_KEY
from conveyor.api.routes.canonical import REQUEST_FIELD, ok
from conveyor.api.services import Services, admit_jobs, offered, queue_of, services
from conveyor.api.timefmt import iso
from conveyor.engine import MAX_DELAY, JobRequest
from conveyor.engine.batches import BatchView
from conveyor.errors import BatchNotFound, InvalidJobOptions, UnknownJobType
from conveyor.model import priority_level

router = APIRouter(prefix="/api/v1/batches", tags=["batches"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Creator = Annotated[Principal, Depends(require(Permission.JOBS_CREATE))]
Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
Svc = Annotated[Services, Depends(services)]


BATCH_ID = "01936f2e-5b1a-7c3d-9e4f-a1b2c3d4e5f6"
_JOB_IDS = ["01936f2e-5b1a-7c3d-9e4f-000000000001", "01936f2e-5b1a-7c3d-9e4f-000000000002"]
BATCH = {
    "id": BATCH_ID,
    "name": "Multi-country comparison",
    "status": "running",
    "parallelLimit": 1,
    "failFast": False,
    "total": 2,
    "counts": {"scheduled": 1, "pending": 0, "running": 1, "completed": 0, "failed": 0, "cancelled": 0,
               "timeout": 0, "waitingForSlot": 1},
    "createdAt": ex.TS,
    "cancelledAt": None,
    "cancelReason": None,
    "owner": {"userId": "user-1", "orgId": "org-a", "studyId": None, "createdBy": "Ada"},
    "links": {"self": f"/api/v1/batches/{BATCH_ID}", "cancel": f"/api/v1/batches/{BATCH_ID}/cancel",
              "jobs": f"/api/v1/jobs?batch_id={BATCH_ID}"},
    "jobs": [
        {"id": _JOB_IDS[0], "type": "sleep", "status": "running", "waitingForSlot": False, "progress": 40.0,
         "createdAt": ex.TS, "startedAt": ex.TS, "completedAt": None},
        {"id": _JOB_IDS[1], "type": "sleep", "status": "scheduled", "waitingForSlot": True, "progress": 0.0,
         "createdAt": ex.TS, "startedAt": None, "completedAt": None},
    ],
}  # fmt: skip
BATCH_ANSWER = {"success": True, "data": BATCH, "timestamp": ex.TS}
NOT_FOUND = ex.example(
    404, {**ex.CANONICAL_ERROR, "error": "Batch not found", "details": {"code": "BATCH_NOT_FOUND", "batchId": "x"}}
)


class BatchJob(BaseModel):
    """One job of a batch: as `POST /api/v1/jobs` takes it, without the options a batch decides
    (when it runs, idempotency)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="the job type", max_length=200)
    data: dict[str, Any] = Field(default_factory=dict, description="the job type's input")
    priority: str | int | None = Field(None, description="critical, high, medium or low; or 1-10")
    queue: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    timeoutMinutes: float | None = Field(None, gt=0, le=MAX_DELAY.total_seconds() / 60)
    maxRetries: int | None = Field(None, ge=0, le=100)
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY.pattern)], Annotated[str, Field(max_length=200)]] | None = (
        Field(None, max_length=50)
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("use critical, high, medium, low or an integer 1-10")
        priority_level(value)
        return value


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Multi-country comparison",
                    "jobs": [
                        {"type": "sleep", "data": {"seconds": 2}, "priority": 8, "labels": {"country": "Kenya"}},
                        {"type": "sleep", "data": {"seconds": 3}, "priority": 7, "labels": {"country": "Mozambique"}},
                    ],
                    "parallelLimit": 3,
                    "failFast": False,
                }
            ]
        },
    )

    name: str = Field("batch", max_length=200, description="what the batch is for")
    jobs: list[BatchJob] = Field(description="the jobs: at least one, at most BATCH_MAX_SIZE (default 50)")
    parallelLimit: int | None = Field(
        None, ge=1, le=10_000, description="most of its jobs running at once, across all workers (default: no limit)"
    )
    failFast: bool = Field(False, description="the first job that fails (or times out) cancels the rest")


def batch_json(view: BatchView, *, with_jobs: bool = True) -> dict[str, Any]:
    b = view.batch
    counts = view.counts
    counts["waitingForSlot"] = counts.pop("waiting_for_slot")
    out: dict[str, Any] = {
        "id": str(b.id),
        "name": b.name,
        "status": view.status,
        "parallelLimit": b.parallel_limit,
        "failFast": b.fail_fast,
        "total": view.total,
        "counts": counts,
        "createdAt": iso(b.created_at),
        "cancelledAt": iso(b.cancelled_at),
        "cancelReason": b.cancel_reason,
        "owner": {"userId": b.owner.user_id, "orgId": b.owner.org_id, "studyId": b.owner.study_id,
                  "createdBy": b.owner.created_by},
        "links": {"self": f"/api/v1/batches/{b.id}", "cancel": f"/api/v1/batches/{b.id}/cancel",
                  "jobs": f"/api/v1/jobs?batch_id={b.id}"},
    }  # fmt: skip
    if with_jobs:
        out["jobs"] = [
            {
                "id": str(m.id),
                "type": m.kind,
                "status": m.status.value,
                "waitingForSlot": m.held,
                "progress": m.progress,
                "createdAt": iso(m.created_at),
                "startedAt": iso(m.started_at),
                "completedAt": iso(m.completed_at),
            }
            for m in view.jobs
        ]
    return out


def parse_batch_id(raw: str) -> UUID:
    """Batch ids are UUIDs; anything else names no batch (404)."""
    try:
        return UUID(raw)
    except ValueError:
        raise BatchNotFound(raw) from None


@contextlib.contextmanager
def _fields_of_the_body() -> Iterator[None]:
    """The engine's errors, named as this body names its fields (`jobs.0.type`, `jobs.1.timeoutMinutes`)."""
    try:
        yield
    except UnknownJobType as exc:
        error = api_error_of(exc)
        error.field = exc.details.get("field", "jobs")
        raise error from None
    except InvalidJobOptions as exc:
        field = str(exc.details.get("field", ""))
        head, _, option = field.rpartition(".")
        exc.details["field"] = f"{head}.{REQUEST_FIELD.get(option, option)}" if head else field
        raise


@router.post(
    "",
    status_code=201,
    summary="Submit a batch of jobs",
    responses=ex.example(201, {**BATCH_ANSWER, "data": {"batchId": BATCH_ID, "jobIds": _JOB_IDS, **BATCH}}),
)
async def create_batch(svc: Svc, principal: Creator, body: CreateBatchRequest) -> dict[str, Any]:
    """Validated as a whole, then stored in one transaction: every job or none. Jobs beyond
    `parallelLimit` wait (`scheduled`, `waitingForSlot`) until one of the batch finishes."""
    requests = [
        JobRequest(
            job.type,
            job.data,
            priority=job.priority,
            queue=job.queue,
            timeout=timedelta(minutes=job.timeoutMinutes) if job.timeoutMinutes is not None else None,
            max_retries=job.maxRetries,
            labels=job.labels,
        )
        for job in body.jobs
    ]
    for n, job in enumerate(body.jobs):
        offered(svc, job.type, f"jobs.{n}.type")
    queues = [q for job in body.jobs for q in queue_of(svc, job.type, job.queue)]
    await admit_jobs(svc, principal, len(requests), queues)
    with _fields_of_the_body():
        view = await svc.conveyor.batches.submit(
            body.name, requests, parallel_limit=body.parallelLimit, fail_fast=body.failFast, owner=principal.owner
        )
    return ok({"batchId": str(view.batch.id), "jobIds": [str(m.id) for m in view.jobs], **batch_json(view)})


@router.get(
    "",
    summary="List batches",
    responses=ex.example(
        200,
        {**BATCH_ANSWER, "data": {"batches": [{k: v for k, v in BATCH.items() if k != "jobs"}], "total": 1,
                                  "page": 1, "limit": 20, "hasNext": False}},
    ),
)  # fmt: skip
async def list_batches(
    svc: Svc,
    principal: Reader,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="page size, default 20")] = 20,
) -> dict[str, Any]:
    """The batches the caller may see, newest first, each with its counts and status."""
    views, total = await svc.conveyor.batches.list(
        visible_to=principal.visibility, limit=limit, offset=(page - 1) * limit
    )
    batches = [batch_json(v, with_jobs=False) for v in views]
    return ok({"batches": batches, "total": total, "page": page, "limit": limit, "hasNext": page * limit < total})


@router.get(
    "/{batch_id}",
    summary="A batch's status: counts by status, each job's status, overall status",
    responses={**ex.example(200, BATCH_ANSWER), **NOT_FOUND},
)
async def get_batch(svc: Svc, principal: Reader, batch_id: str) -> dict[str, Any]:
    view = await svc.conveyor.batches.get(parse_batch_id(batch_id), visible_to=principal.visibility)
    return ok(batch_json(view))


@router.post(
    "/{batch_id}/cancel",
    summary="Cancel a batch's unfinished jobs",
    responses={
        **ex.example(200, BATCH_ANSWER),
        **NOT_FOUND,
        **ex.example(
            409,
            {**ex.CANONICAL_ERROR, "error": f"batch {BATCH_ID} is completed: all its jobs have finished",
             "details": {"code": "BATCH_NOT_CANCELLABLE", "batchId": BATCH_ID, "currentStatus": "completed"}},
        ),
    },
)  # fmt: skip
async def cancel_batch(svc: Svc, principal: Manager, batch_id: str) -> dict[str, Any]:
    """Waiting jobs are cancelled at once, running ones at their next checkpoint; a batch whose
    jobs have all finished is refused with BATCH_NOT_CANCELLABLE (409) and its status."""
    view = await svc.conveyor.batches.cancel(parse_batch_id(batch_id), visible_to=principal.visibility)
    return ok(batch_json(view))
