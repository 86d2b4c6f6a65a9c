"""Health (open, seed 003's shape), Prometheus metrics, and seed 003's job metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso_now
from conveyor.model import JobFilter, Status

router = APIRouter(tags=["health and metrics"], route_class=LeanRoute)
Svc = Annotated[Services, Depends(services)]

HEALTH_TIMEOUT_SECONDS = 5.0


@router.get(
    "/api/v1/jobs/health",
    summary="Service health (no credentials needed)",
    responses={**ex.example(200, ex.HEALTH), 503: {"description": "the database cannot be reached"}},
)
async def health(svc: Svc) -> JSONResponse:
    """`healthy`: the database answers and a worker is alive; `degraded`: no live worker
    (jobs wait); `unhealthy` (HTTP 503): the database does not answer. Seed 003's clients
    read `redis` and `celery`: here they report the store and the workers."""
    try:
        counts = await asyncio.wait_for(
            svc.insights.store.count_grouped(JobFilter(), ("status",)), HEALTH_TIMEOUT_SECONDS
        )
        workers = await svc.insights.live_workers()
        database = "healthy"
    except Exception as exc:  # noqa: BLE001 - any failure to reach the store is the answer
        counts, workers, database = {}, [], f"unhealthy: {type(exc).__name__}"
    by_status = {Status(k[0]): n for k, n in counts.items()}
    worker_state = "healthy" if workers else "no live workers"
    status = "unhealthy" if database != "healthy" else ("healthy" if workers else "degraded")
    body = {
        "status": status,
        "database": database,
        "workers": worker_state,
        "redis": database,
        "celery": worker_state,
        "live_workers": len(workers),
        "queue_stats": {
            "pending_jobs": by_status.get(Status.PENDING, 0),
            "scheduled_jobs": by_status.get(Status.SCHEDULED, 0),
            "running_jobs": by_status.get(Status.RUNNING, 0),
        },
        "timestamp": iso_now(),
    }
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": ex.PROMETHEUS}}}},
)
async def prometheus_metrics(
    svc: Svc, _principal: Annotated[Principal, Depends(require(Permission.METRICS_READ))]
) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(
        await svc.metrics.render(svc.insights, svc.conveyor.alerts.rules.window), media_type=CONTENT_TYPE_LATEST
    )


TIME_RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@router.get(
    "/api/v1/jobs/metrics",
    summary="Job metrics over a time range (seed 003)",
    responses=ex.example(200, ex.JOB_METRICS),
)
async def job_metrics(
    svc: Svc,
    principal: Annotated[Principal, Depends(require(Permission.JOBS_READ))],
    time_range: Annotated[str, Query(description="1h, 24h, 7d or 30d")] = "24h",
) -> dict[str, Any]:
    window = TIME_RANGES.get(time_range)
    if window is None:
        raise ApiError(400, "INVALID_QUERY", f"time_range must be one of {', '.join(TIME_RANGES)}", field="time_range")
    perf = await svc.insights.performance(JobFilter(visible_to=principal.visibility), window)
    cache = await svc.conveyor.cache.stats(visible_to=principal.visibility)
    judged = perf.completed + perf.failed
    return {
        "time_range": time_range,
        "total_jobs": perf.finished,
        "success_rate": perf.success_rate if perf.success_rate is not None else 0.0,
        "average_duration_seconds": round(perf.average_seconds, 3) if perf.average_seconds is not None else None,
        "cache_hit_rate": cache.hit_rate,  # as /api/v1/cache/stats counts it (per entry, until cleared)
        "error_rate": round(100.0 * perf.failed / judged, 1) if judged else 0.0,
    }
