"""The canonical job family (seed 002): create, get, list, cancel, retry, logs, stats, wait.

Every answer is `{success, data, timestamp}` in camelCase; errors are rendered by
conveyor.api.errors. `GET /api/v1/jobs` also answers seed 003's list contract (see `list_jobs`).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.params import LABEL_KEY, aware, labels_filter, priorities, statuses
from conveyor.api.render import canonical_job, render_summary, seed003_keys
from conveyor.api.services import Services, admit_jobs, offered, queue_of, services
from conveyor.api.sse import HEARTBEAT, event_stream, event_stream_response, with_heartbeats
from conveyor.api.timefmt import iso, iso_now
from conveyor.engine import MAX_DELAY
from conveyor.engine.sealing import Sealing
from conveyor.errors import InvalidJobOptions, JobNotFound
from conveyor.model import (
    FINISHED,
    SORT_KEYS,
    Job,
    JobFilter,
    JobOrder,
    LogLevel,
    Status,
    priority_level,
    stored_key,
    utc_now,
)

ModelT = TypeVar("ModelT", bound=BaseModel)

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs (canonical, seed 002)"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Creator = Annotated[Principal, Depends(require(Permission.JOBS_CREATE))]
Manager = Annotated[Principal, Depends(require(Permission.JOBS_MANAGE))]
Svc = Annotated[Services, Depends(services)]

WAIT_DEFAULT_MS = 30_000
WAIT_MAX_MS = 300_000


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"success": True, "data": data, **extra, "timestamp": iso_now()}


def parse_job_id(raw: str) -> UUID:
    """A job id from a path; an id that is no UUID names no job (404, as seed 002 shows)."""
    try:
        return UUID(raw)
    except ValueError:
        raise JobNotFound(raw) from None


# --- create ---------------------------------------------------------------------------------


class CreateJobRequest(BaseModel):
    """Seed 002's CreateJobRequest, plus the options every job type takes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "sentiment_analysis_batch",
                    "data": {
                        "texts": ["I love this product!", "This is terrible quality."],
                        "enablePIIMasking": True,
                    },
                    "priority": "high",
                },
                {"type": "sleep", "data": {"seconds": 2}, "priority": "medium", "labels": {"team": "ops"}},
            ]
        },
    )

    type: str = Field(description="the job type", max_length=200)
    data: dict[str, Any] = Field(description="the job type's input")
    priority: str | int | None = Field(None, description="critical, high, medium (default) or low; or 1-10")
    queue: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    runAt: datetime | None = Field(None, description="run no earlier than this (ISO 8601 with a time zone)")
    delaySeconds: float | None = Field(None, ge=0, le=366 * 86400)
    timeoutMinutes: float | None = Field(
        None, gt=0, le=MAX_DELAY.total_seconds() / 60, description="default DEFAULT_TIMEOUT_MINUTES"
    )
    maxRetries: int | None = Field(None, ge=0, le=100)
    idempotencyKey: str | None = Field(None, min_length=1, max_length=500)
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY.pattern)], Annotated[str, Field(max_length=200)]] | None = (
        Field(None, max_length=50)
    )
    useCache: bool = Field(
        False,
        description="reuse the result of an identical job (same type and cache key) completed within CACHE_TTL, "
        "or share one still running; the answer's cacheInfo says which",
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("use critical, high, medium, low or an integer 1-10")
        priority_level(value)  # raises ValueError naming the allowed values
        return value


@router.post(
    "",
    status_code=201,
    summary="Create a job",
    responses={
        **ex.example(201, ex.CREATED),
        **ex.example(
            400,
            ex.CANONICAL_ERROR
            | {"details": {"code": "INVALID_JOB_TYPE", "allowedTypes": ["sentiment_analysis_batch"]}},
        ),
    },
    # The body is read and validated by the handler (below); documented here as FastAPI would.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateJobRequest"}}},
        },
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 500},
                "description": "the same as idempotencyKey in the body",
            }
        ],
    },
)
async def create_job(request: Request, svc: Svc, principal: Creator) -> JSONResponse:
    """Validates the job type's input and stores the job. The same idempotency key (body or
    `Idempotency-Key` header) answers with the job it first created (200 instead of 201), as
    does `useCache` when an identical job's result is reused or shared (`cacheInfo`)."""
    # The API's busiest route: pydantic validates the raw JSON in one pass, and the answer is
    # rendered directly, without FastAPI's body and response layers (a tenth of its calls, measured).
    body = parse_body(CreateJobRequest, await request.body(), request.headers.get("content-type"))
    header_key = request.headers.get("idempotency-key")
    if header_key is not None and not 1 <= len(header_key) <= 500:
        raise ApiError(400, "INVALID_REQUEST", "Idempotency-Key must be 1-500 characters", field="Idempotency-Key")
    key = body.idempotencyKey or header_key
    cache_info = None
    offered(svc, body.type, "type")
    await admit_jobs(svc, principal, 1, queue_of(svc, body.type, body.queue))
    try:
        if body.useCache:
            job, created, cache_info = await _submit_cached(svc, principal, body, key)
        else:
            job, created = await _submit(svc, principal, body, key)
    except InvalidJobOptions as exc:  # name the request's field, not the engine's argument
        field = exc.details.get("field")
        exc.details["field"] = REQUEST_FIELD.get(field, field)
        raise
    if not principal.sees(job.owner):  # another scope's key: never reveal its job
        raise ApiError(409, "IDEMPOTENCY_KEY_IN_USE", "idempotency key already used", field="idempotencyKey")
    data = {"jobId": str(job.id), **canonical_job(job)}
    if body.useCache:
        data["cacheInfo"] = cache_info
    return JSONResponse(ok(data), status_code=201 if created else 200, headers={"Location": f"/api/v1/jobs/{job.id}"})


def parse_body(model: type[ModelT], raw: bytes, content_type: str | None) -> ModelT:
    """The body validated against `model`; errors exactly as FastAPI would raise them."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send the body as application/json", field="Content-Type")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


REQUEST_FIELD = {
    "run_at": "runAt",
    "delay": "delaySeconds",
    "timeout": "timeoutMinutes",
    "max_retries": "maxRetries",
    "idempotency_key": "idempotencyKey",
}


async def _submit(svc: Services, principal: Principal, body: CreateJobRequest, key: str | None) -> Any:
    return await svc.engine.submit(
        body.type,
        body.data,
        priority=body.priority,
        queue=body.queue,
        run_at=body.runAt,
        delay=timedelta(seconds=body.delaySeconds) if body.delaySeconds is not None else None,
        timeout=timedelta(minutes=body.timeoutMinutes) if body.timeoutMinutes is not None else None,
        max_retries=body.maxRetries,
        idempotency_key=_scoped_key(principal, key),
        labels=body.labels,
        owner=principal.owner,
    )


async def _submit_cached(
    svc: Services, principal: Principal, body: CreateJobRequest, key: str | None
) -> tuple[Any, bool, dict[str, Any] | None]:
    got = await svc.conveyor.cache.submit(
        body.type,
        body.data,
        visible_to=principal.visibility,
        priority=body.priority,
        queue=body.queue,
        run_at=body.runAt,
        delay=timedelta(seconds=body.delaySeconds) if body.delaySeconds is not None else None,
        timeout=timedelta(minutes=body.timeoutMinutes) if body.timeoutMinutes is not None else None,
        max_retries=body.maxRetries,
        idempotency_key=_scoped_key(principal, key),
        labels=body.labels,
        owner=principal.owner,
    )
    info = got.cache
    shown = None
    if info is not None:
        shown = {"source": info.outcome, "sourceJobId": str(info.source_job_id), "cachedAt": iso(info.cached_at)}
    return got.job, got.created, shown


def _scoped_key(principal: Principal, key: str | None) -> str | None:
    """Idempotency keys are per organisation: two tenants' keys never meet. A key the
    organisation's prefix makes longer than a stored key may be goes in as its SHA-256."""
    return None if key is None else stored_key(key, prefix=f"{principal.org_id or ''}/")


# --- list ---------------------------------------------------------------------------------------


@router.get("", summary="List jobs (seed 002 and seed 003 contracts at once)", responses=ex.example(200, ex.LIST))
async def list_jobs(
    svc: Svc,
    principal: Reader,
    status: Annotated[str | None, Query(description="comma-separated; seed 003's `success` means completed")] = None,
    type: Annotated[str | None, Query(description="job type (comma-separated)")] = None,
    job_type: Annotated[str | None, Query(description="seed 003's name for `type`")] = None,
    priority: Annotated[str | None, Query(description="class names or 1-10, comma-separated")] = None,
    queue: Annotated[str | None, Query()] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601")] = None,
    age_group: Annotated[str | None, Query(description="label filter (seed 003)")] = None,
    country: Annotated[str | None, Query(description="label filter (seed 003)")] = None,
    label: Annotated[list[str], Query(description="label filter key:value (repeatable)")] = [],  # noqa: B006
    batch_id: Annotated[UUID | None, Query(description="the jobs of one batch")] = None,
    org_id: Annotated[
        str | None, Query(max_length=200, description="one organisation's jobs (of those the caller may see)")
    ] = None,
    sort: Annotated[
        str,
        Query(
            max_length=20,
            description="the order: `newest` (default) or `oldest` by creation, or one of "
            + ", ".join(SORT_KEYS)
            + " ascending, or with a leading `-` descending (`-priority`: highest first); ties by creation, then id",
        ),
    ] = "newest",
    cursor: Annotated[
        str | None, Query(max_length=200, description="`nextCursor` of the previous page (then `page` is not used)")
    ] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int | None, Query(ge=1, le=100, description="page size, default 50")] = None,
    page_size: Annotated[int | None, Query(ge=1, le=100, description="seed 003's name for `limit`")] = None,
) -> dict[str, Any]:
    """One answer for two contracts: seed 002's envelope (`success`, `data.jobs`, `data.total`,
    `timestamp`) beside seed 003's top-level `jobs`, `total_count`, `page`, `page_size`,
    `has_next`. Items carry both conventions' keys; where both name a key (`status`,
    `priority`) it holds seed 002's value, and seed 003's is in `job_status`/`priority_level`.
    `data.nextCursor` pages by key (the dashboard's way): as fast deep in a million jobs as on
    the first page, where `page` makes the database walk every job before it."""
    kinds = [k.strip() for k in (type or job_type or "").split(",") if k.strip()]
    size = limit or page_size or 50
    order = parse_sort(sort)
    after = parse_cursor(cursor, order) if cursor else None
    where = JobFilter(
        statuses=statuses(status),
        kinds=tuple(kinds),
        queues=(queue,) if queue else (),
        priorities=priorities(priority),
        created_after=aware(created_after),
        created_before=aware(created_before),
        labels=labels_filter(label, age_group=age_group, country=country),
        batch_id=batch_id,
        owner_org_id=org_id,
        visible_to=principal.visibility,
    )
    offset = 0 if after else (page - 1) * size
    jobs, total = await svc.engine.list(where, limit=size, offset=offset, after=after, order=order)
    items = [{**canonical_job(j, full=False), "runAt": iso(j.run_at), **seed003_keys(j)} for j in jobs]
    # A full page may be the last: its cursor then answers an empty page (`total` tells).
    next_cursor = job_cursor(jobs[-1], order) if len(jobs) == size else None
    return {
        "success": True,
        "data": {"jobs": items, "total": total, "page": page, "limit": size, "nextCursor": next_cursor},
        "timestamp": iso_now(),
        "jobs": items,
        "total_count": total,
        "page": page,
        "page_size": size,
        "has_next": page * size < total,
    }


SORT_ALIASES = {"newest": JobOrder("created", descending=True), "oldest": JobOrder("created", descending=False)}


def parse_sort(text: str) -> JobOrder:
    if text in SORT_ALIASES:
        return SORT_ALIASES[text]
    key = text.removeprefix("-")
    if key not in SORT_KEYS:
        choices = ", ".join(SORT_KEYS)
        raise ApiError(
            400, "INVALID_QUERY", f"cannot sort by {text!r}: newest, oldest, or [-]key of {choices}", field="sort"
        )
    return JobOrder(key, descending=text.startswith("-"))


def job_cursor(job: Job, order: JobOrder) -> str:
    """Where a page ends: the last job's value of the sort key, creation time and id, opaque
    to the caller (by creation: its creation time and id, as before other orders existed)."""
    if order.key == "created":
        raw = f"{job.created_at.isoformat()}|{job.id}"
    else:
        value = order.value_of(job)
        shown = value.isoformat() if isinstance(value, datetime) else value
        raw = json.dumps([order.key, shown, job.created_at.isoformat(), str(job.id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def parse_cursor(text: str, order: JobOrder) -> tuple[Any, datetime, UUID]:
    """A cursor job_cursor made for this order: (sort value, created_at, id)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if raw.startswith("["):
            key, value, at, job_id = json.loads(raw)
        else:
            key, (at, _, job_id) = "created", raw.partition("|")
            value = at
        if key != order.key:
            raise ValueError(key)
        when = _aware(at)
        if order.key in ("created", "run_at", "finished"):
            value = None if order.key == "finished" and value is None else _aware(value)
        elif not isinstance(value, int if order.key == "priority" else str) or isinstance(value, bool):
            raise ValueError(value)
        return value, when, UUID(job_id)
    except (ValueError, TypeError):  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ApiError(400, "INVALID_QUERY", "cursor is not one this API gave for this sort", field="cursor") from None


def _aware(text: Any) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(text)
    return when


# --- stats ----------------------------------------------------------------------------------------


@router.get("/stats/summary", summary="Queue statistics (seed 002)", responses=ex.example(200, ex.SUMMARY))
async def stats_summary(svc: Svc, principal: Reader) -> dict[str, Any]:
    """Counts by status, type and priority over the jobs the caller may see; performance over
    the last hour (throughput, peak concurrency) and day (average time, success rate)."""
    summary = await svc.insights.summary(JobFilter(visible_to=principal.visibility))
    return ok(render_summary(summary))


SERIES_WINDOWS = {"1h": (timedelta(hours=1), 1), "24h": (timedelta(days=1), 15)}


@router.get(
    "/stats/throughput",
    summary="Finished jobs and error rate per time bucket (charts)",
    responses=ex.example(200, ex.THROUGHPUT),
)
async def stats_throughput(
    svc: Svc,
    principal: Reader,
    window: Annotated[Literal["1h", "24h"], Query(description="the last hour or day")] = "1h",
    bucket_minutes: Annotated[
        int | None, Query(ge=1, le=60, description="bucket width; default 1 (1h) or 15 (24h)")
    ] = None,
) -> dict[str, Any]:
    """Over the jobs the caller may see: per bucket, oldest first and every bucket present, how
    many completed, failed (or timed out) and were cancelled, and the error rate (failed out
    of completed and failed, in percent; null when none finished). Read from the database's
    per-minute counts, so a restart loses nothing; the last bucket is the current one."""
    span, default_bucket = SERIES_WINDOWS[window]
    step = bucket_minutes or default_bucket
    buckets = await svc.insights.throughput(JobFilter(visible_to=principal.visibility), span, timedelta(minutes=step))
    points = [
        {
            "start": iso(b.start),
            "completed": b.completed,
            "failed": b.failed,
            "cancelled": b.cancelled,
            "errorRate": b.error_rate,
        }
        for b in buckets
    ]
    return ok({"window": window, "bucketMinutes": step, "buckets": points})


# --- one job ------------------------------------------------------------------------------------------


@router.get(
    "/{job_id}",
    summary="Get a job's status and progress",
    responses={**ex.example(200, ex.RUNNING_JOB), **ex.example(404, ex.CANONICAL_ERROR)},
)
async def get_job(
    svc: Svc,
    principal: Reader,
    job_id: str,
    include: Annotated[
        Literal["data"] | None, Query(description="`data`: the job's input data too (the dashboard's job page)")
    ] = None,
) -> dict[str, Any]:
    """The job, with the e-signatures applied to it (`signatures`: signer, printed name,
    meaning, time, action; see GET /api/v1/jobs/{job_id}/signatures); with `include=data`, its
    input `data` too. A sensitive job's data and result come masked to a caller without
    `jobs:read-sensitive`, and `masked` names them; opening them is recorded in the audit
    trail (job.read)."""
    reveal = principal.can(Permission.JOBS_READ_SENSITIVE)
    job = await svc.engine.get(parse_job_id(job_id), visible_to=principal.visibility, reveal=reveal)
    signatures = await svc.conveyor.audit.signatures_of("job", job.id)
    masked = None if reveal else Sealing.masked_fields(job)
    shown = canonical_job(job, masked=masked, with_data=include == "data")
    return ok({**shown, "signatures": [s.as_json() for s in signatures]})


async def _cancel(svc: Services, principal: Principal, job_id: str, action: str = "job.cancelled") -> dict[str, Any]:
    job = await svc.engine.cancel(parse_job_id(job_id), visible_to=principal.visibility, action=action)
    if job.status is Status.CANCELLED:
        message = "Job cancelled successfully"
    else:
        message = "Cancellation requested; the job stops at its next checkpoint"
    return {"success": True, "message": message, "data": canonical_job(job), "timestamp": iso_now()}


@router.delete(
    "/{job_id}",
    summary="Cancel a job (seed 002)",
    responses={**ex.example(200, ex.CANCELLED), **ex.example(409, ex.NOT_CANCELLABLE)},
)
async def delete_job(
    svc: Svc,
    principal: Manager,
    job_id: str,
    purge: Annotated[
        bool,
        Query(
            description="true: remove the job and its log lines for good (any status but running) instead of cancelling"
        ),
    ] = False,
) -> dict[str, Any]:
    """Pending and scheduled jobs are cancelled at once; a running job at its next checkpoint;
    finished jobs are refused with JOB_NOT_CANCELLABLE and their current status. Recorded in
    the audit trail as job.deleted.

    With `purge=true` the job is removed (data, result, logs: an erasure request), whatever its
    status but running (JOB_NOT_DELETABLE: cancel it first); the audit trail keeps job.deleted
    with the job's state, and the e-signature the job.delete operation demands."""
    if not purge:
        return await _cancel(svc, principal, job_id, "job.deleted")
    job = await svc.engine.delete(parse_job_id(job_id), visible_to=principal.visibility)
    return {"success": True, "message": "Job deleted", "data": canonical_job(job, full=False), "timestamp": iso_now()}


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job",
    responses={**ex.example(200, ex.CANCELLED), **ex.example(409, ex.NOT_CANCELLABLE)},
)
async def cancel_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    return await _cancel(svc, principal, job_id)


@router.post(
    "/{job_id}/retry",
    status_code=201,
    summary="Run a failed, cancelled or timed-out job again",
    responses=ex.example(201, ex.CREATED),
)
async def retry_job(svc: Svc, principal: Manager, job_id: str) -> dict[str, Any]:
    """A new job with the same type, data and options; `retryOf` names the original."""
    job = await svc.engine.retry(parse_job_id(job_id), visible_to=principal.visibility)
    return ok({"jobId": str(job.id), **canonical_job(job)})


@router.get(
    "/{job_id}/events",
    summary="Follow a job: server-sent events as it changes, until it finishes",
    response_class=StreamingResponse,
    responses={
        **event_stream_response(
            ["job", "end"],
            'event: job\ndata: {"id": "0196…", "type": "sleep", "status": "running", "progress": 40}'
            '\n\nevent: end\ndata: {"id": "0196…", "status": "completed"}\n\n',
        ),
        **ex.example(404, ex.CANONICAL_ERROR),
    },
)
async def job_events(svc: Svc, principal: Reader, job_id: str) -> StreamingResponse:
    """`event: job` with the job (as GET shows it, without its result) now and each time it
    changes (looked at every second, at once when it finishes); `event: end` once it has
    finished, and the stream closes: GET the job for its result. 404 for a job the caller
    cannot see. The dashboard's job page follows jobs this way."""
    updates = svc.engine.watch(parse_job_id(job_id), visible_to=principal.visibility)
    first = await anext(updates)  # JobNotFound here: a 404 before the stream starts
    return event_stream(_job_events(first, updates))


def _job_event(job: Job) -> str:
    shown = {k: v for k, v in canonical_job(job).items() if k != "result"}
    return f"event: job\ndata: {json.dumps(shown, separators=(',', ':'))}\n\n"


async def _job_events(first: Job, updates: AsyncGenerator[Job, None]) -> AsyncIterator[str]:
    last = first
    try:
        yield _job_event(first)
        if not first.status.is_finished:
            async with contextlib.aclosing(with_heartbeats(updates)) as items:
                async for job in items:
                    if job is None:
                        yield HEARTBEAT
                    else:
                        last = job
                        yield _job_event(job)
        yield f"event: end\ndata: {json.dumps({'id': str(last.id), 'status': last.status.value})}\n\n"
    finally:
        await updates.aclose()  # with_heartbeats closes it too, when it ran


@router.get("/{job_id}/logs", summary="A job's log lines", responses=ex.example(200, ex.LOGS))
async def job_logs(
    svc: Svc,
    principal: Reader,
    job_id: str,
    level: Annotated[str | None, Query(description="lowest level: debug, info, warning, error, critical")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> dict[str, Any]:
    try:
        min_level = LogLevel.parse(level) if level else None
    except ValueError:
        raise ApiError(
            400, "INVALID_QUERY", f"unknown level {level!r}: debug, info, warning, error, critical", field="level"
        ) from None
    entries, total = await svc.engine.logs(
        parse_job_id(job_id),
        min_level=min_level,
        limit=limit,
        offset=offset,
        visible_to=principal.visibility,
        reveal=principal.can(Permission.JOBS_READ_SENSITIVE),
    )
    logs = [
        {
            "timestamp": iso(e.timestamp),
            "level": e.level.name.lower(),
            "message": e.message,
            "component": e.component,
            "attempt": e.attempt,
        }
        for e in entries
    ]
    return ok({"jobId": job_id, "logs": logs, "total": total, "limit": limit, "offset": offset})


class WaitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"timeout": 30000}]})

    timeout: int = Field(WAIT_DEFAULT_MS, ge=0, le=WAIT_MAX_MS, description="milliseconds (max 300000)")


@router.post(
    "/{job_id}/wait",
    summary="Wait for a job to finish",
    responses={**ex.example(200, ex.WAITED), **ex.example(408, ex.WAIT_TIMEOUT)},
)
async def wait_for_job(
    svc: Svc, principal: Reader, job_id: str, body: Annotated[WaitRequest | None, Body()] = None
) -> dict[str, Any]:
    """Answers the moment the job finishes (woken by the store's notification, not a sleep
    loop), or with JOB_TIMEOUT (HTTP 408) and the job's current status and progress."""
    timeout_ms = (body or WaitRequest()).timeout
    reveal = principal.can(Permission.JOBS_READ_SENSITIVE)
    job = await svc.engine.wait(parse_job_id(job_id), timeout_ms / 1000, visible_to=principal.visibility, reveal=reveal)
    if job.status not in FINISHED:
        raise ApiError(
            408,
            "JOB_TIMEOUT",
            "Job timeout",
            currentStatus=job.status.value,
            currentProgress=job.progress.percentage,
            jobId=str(job.id),
        )
    data = canonical_job(job, masked=None if reveal else Sealing.masked_fields(job))
    data.setdefault("completedAt", iso(job.completed_at or utc_now()))
    return ok(data)
