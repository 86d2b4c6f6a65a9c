"""The monitoring family (seed 000): jobs, queues (with pause and resume), statistics.

Seed 000 fixes paths, pagination (default 20, max 100) and the error shape (codes
JOB001-JOB005 with a request id); it documents no bodies, so these answer with the
platform's snake_case view of jobs (conveyor.api.render.monitoring_job).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.lean import LeanRoute
from conveyor.api.params import aware, priorities, statuses
from conveyor.api.render import monitoring_job
from conveyor.api.routes.canonical import parse_job_id
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.insights import QueueInfo
from conveyor.model import JobFilter, Status, utc_now

router = APIRouter(prefix="/api/v1/jobs", tags=["monitoring (seed 000)"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
QueueReader = Annotated[Principal, Depends(require(Permission.QUEUES_READ))]
QueueManager = Annotated[Principal, Depends(require(Permission.QUEUES_MANAGE))]
Svc = Annotated[Services, Depends(services)]
QueueName = Annotated[str, Path(max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.get(
    "/jobs",
    summary="List jobs",
    responses=ex.example(400, ex.MONITORING_ERROR | {"error": {**ex.MONITORING_ERROR["error"], "code": "JOB002"}}),
)
async def list_jobs(
    svc: Svc,
    principal: Reader,
    status: Annotated[str | None, Query(description="comma-separated statuses")] = None,
    job_type: Annotated[str | None, Query(description="comma-separated job types")] = None,
    queue: Annotated[str | None, Query()] = None,
    priority: Annotated[str | None, Query(description="class names or 1-10")] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    where = JobFilter(
        statuses=statuses(status),
        kinds=tuple(k.strip() for k in (job_type or "").split(",") if k.strip()),
        queues=(queue,) if queue else (),
        priorities=priorities(priority),
        created_after=aware(created_after),
        created_before=aware(created_before),
        visible_to=principal.visibility,
    )
    jobs, total = await svc.engine.list(where, limit=page_size, offset=(page - 1) * page_size)
    return {
        "jobs": [monitoring_job(j) for j in jobs],
        "pagination": pagination(page, page_size, total),
        "timestamp": iso_now(),
    }


def pagination(page: int, page_size: int, total: int) -> dict[str, Any]:
    """Seed 000's page of a list (default 20, at most 100)."""
    pages = (total + page_size - 1) // page_size
    return {"page": page, "page_size": page_size, "total": total, "total_pages": pages, "has_next": page < pages}


@router.get("/jobs/{job_id}", summary="Get job details", responses=ex.example(404, ex.MONITORING_ERROR))
async def get_job(svc: Svc, principal: Reader, job_id: str) -> dict[str, Any]:
    job = await svc.engine.get(
        parse_job_id(job_id), visible_to=principal.visibility, reveal=principal.can(Permission.JOBS_READ_SENSITIVE)
    )
    return {"job": monitoring_job(job), "timestamp": iso_now()}


@router.post("/jobs/{job_id}/cancel", summary="Cancel job", responses=ex.example(404, ex.MONITORING_ERROR))
async def cancel_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """At once when pending or scheduled; at the next checkpoint when running (the job shows
    `cancel_requested`); a finished job is a conflict (JOB004)."""
    job = await svc.engine.cancel(parse_job_id(job_id), visible_to=principal.visibility)
    cancelled = job.status is Status.CANCELLED
    return {
        "job": monitoring_job(job),
        "message": "job cancelled" if cancelled else "cancellation requested; the job stops at its next checkpoint",
        "timestamp": iso_now(),
    }


@router.post(
    "/jobs/{job_id}/retry", status_code=201, summary="Retry job", responses=ex.example(404, ex.MONITORING_ERROR)
)
async def retry_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """A failed, cancelled or timed-out job runs again as a new job naming it in `retry_of`."""
    job = await svc.engine.retry(parse_job_id(job_id), visible_to=principal.visibility)
    return {"job": monitoring_job(job), "retry_of": job_id, "timestamp": iso_now()}


def _queue(info: QueueInfo, now: datetime) -> dict[str, Any]:
    age = info.age_seconds(now)
    return {
        "name": info.name,
        "pending": info.counts.get(Status.PENDING, 0),
        "scheduled": info.counts.get(Status.SCHEDULED, 0),
        "running": info.counts.get(Status.RUNNING, 0),
        "completed": info.counts.get(Status.COMPLETED, 0),
        "failed": info.counts.get(Status.FAILED, 0) + info.counts.get(Status.TIMEOUT, 0),
        "oldest_pending_at": iso(info.oldest_pending_at),
        "oldest_pending_age_seconds": round(age, 3) if age is not None else None,
        "throughput_per_minute": round(info.completed_last_hour / 60, 2),
        "completed_last_hour": info.completed_last_hour,
        "failed_last_hour": info.failed_last_hour,
        "concurrency": info.concurrency,
        "workers": info.workers,
        "paused": info.paused,
    }


@router.get("/queues", summary="Get queue status", responses=ex.example(200, ex.QUEUES))
async def queues(svc: Svc, principal: QueueReader) -> dict[str, Any]:
    """Per queue: jobs by state, age of the oldest pending job, throughput over the last hour,
    the concurrency of the live workers serving it, and whether it is paused."""
    now = utc_now()
    infos = await svc.insights.queues(JobFilter(visible_to=principal.visibility))
    return {"queues": [_queue(i, now) for i in infos], "timestamp": iso(now)}


async def _set_paused(svc: Services, principal: Principal, name: str, paused: bool) -> dict[str, Any]:
    before = (await svc.engine.store.queue_states()).get(name)
    state = await svc.engine.store.set_queue_paused(name, paused, by=principal.name or principal.user_id)
    await svc.engine.audit.record(
        "queue.paused" if paused else "queue.resumed",
        "queue",
        name,
        before={"paused": before.paused if before else False},
        after={"paused": paused},
    )
    return {
        "queue": {"name": state.name, "paused": state.paused, "changed_at": iso(state.changed_at)},
        "message": f"queue {name} {'paused' if paused else 'resumed'}",
        "timestamp": iso_now(),
    }


@router.post(
    "/queues/{name}/pause", summary="Pause a queue: workers stop claiming from it", responses=ex.example(200, ex.PAUSED)
)
async def pause_queue(svc: Svc, principal: QueueManager, name: QueueName) -> dict[str, Any]:
    """Running jobs finish; pending ones wait until the queue is resumed. Holds across every
    worker process at once (the claim itself checks it)."""
    return await _set_paused(svc, principal, name, True)


@router.post(
    "/queues/{name}/resume",
    summary="Resume a paused queue",
    responses=ex.example(200, ex.PAUSED | {"queue": {**ex.PAUSED["queue"], "paused": False}}),
)
async def resume_queue(svc: Svc, principal: QueueManager, name: QueueName) -> dict[str, Any]:
    result = await _set_paused(svc, principal, name, False)
    svc.engine.notifier.publish("insert", name)  # wake this process's idle workers at once
    return result


@router.get("/statistics", summary="Get job statistics", responses=ex.example(200, ex.STATISTICS))
async def statistics(svc: Svc, principal: Reader) -> dict[str, Any]:
    summary = await svc.insights.summary(JobFilter(visible_to=principal.visibility))
    hour, day = summary.last_hour, summary.last_day
    return {
        "total": summary.total,
        "by_status": {s.value: n for s, n in summary.by_status.items()},
        "by_type": {k: {s.value: n for s, n in c.items() if n} for k, c in sorted(summary.by_kind.items())},
        "by_priority": {p.value: n for p, n in summary.by_priority.items()},
        "last_hour": _performance(hour),
        "last_24h": _performance(day),
        "peak_concurrency_last_hour": summary.peak_concurrency_last_hour,
        "timestamp": iso_now(),
    }


def _performance(p: Any) -> dict[str, Any]:
    return {
        "completed": p.completed,
        "failed": p.failed,
        "cancelled": p.cancelled,
        "success_rate": p.success_rate,
        "average_duration_seconds": round(p.average_seconds, 3) if p.average_seconds is not None else None,
        "throughput_per_minute": round(p.per_minute, 2),
    }
