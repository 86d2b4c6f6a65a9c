"""Schedules over HTTP, in the monitoring family (seed 000: `GET/POST /api/v1/jobs/schedules`).

Seed 000 names the paths, pagination (default 20, at most 100) and the error shape (JOB001
not found, JOB002 validation naming the field, JOB003 unauthorised, with a request id); the
rest (one schedule's GET, PATCH, DELETE, pause, resume) follows its style in snake_case.
Reading needs `jobs:read`, changing `schedules:manage`. A schedule belongs to the creating
principal's organisation and is seen by whoever would see its jobs: another organisation's
schedule answers 404 everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError, api_error_of
from conveyor.api.lean import LeanRoute
from conveyor.api.render import monitoring_job
from conveyor.api.routes.monitoring import pagination
from conveyor.api.services import Services, offered, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.cron import MissedPolicy
from conveyor.engine.schedules import ScheduleSpec, describe
from conveyor.errors import InvalidJobData, ScheduleNotFound, UnknownJobType
from conveyor.store.schedules import Schedule

router = APIRouter(prefix="/api/v1/jobs/schedules", tags=["schedules (seed 000)"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Manager = Annotated[Principal, Depends(require(Permission.SCHEDULES_MANAGE))]
Svc = Annotated[Services, Depends(services)]

NOT_FOUND = ex.example(404, ex.MONITORING_ERROR | {"error": {**ex.MONITORING_ERROR["error"], "code": "JOB001"}})

_DESCRIPTIONS = {
    "name": "what the schedule is for",
    "job_type": "the job type each tick enqueues",
    "data": "the job type's input, validated now as an enqueue would be",
    "cron": "five-field cron (minute hour day-of-month month day-of-week) or @hourly, @daily…; or interval_seconds",
    "interval_seconds": "a tick every this many seconds (at least 1); or cron",
    "timezone": "IANA time zone the cron expression is read in (default UTC)",
    "priority": "critical, high, medium, low or 1-10 (default: the job type's)",
    "enabled": "false: created paused",
    "queue": "default: the job type's",
    "missed_policy": "ticks missed while no scheduler ran: skip (default), run_once, run_all",
}


class CreateScheduleRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "nightly supply check",
                    "job_type": "medication.supply_monitor",
                    "data": {"facility_id": "ward-7"},
                    "cron": "0 2 * * *",
                    "timezone": "Europe/Berlin",
                    "priority": "high",
                    "missed_policy": "run_once",
                },
                {"name": "heartbeat", "job_type": "noop", "data": {}, "interval_seconds": 30},
            ]
        },
    )

    name: str = Field(max_length=200, description=_DESCRIPTIONS["name"])
    job_type: str = Field(max_length=200, description=_DESCRIPTIONS["job_type"])
    data: dict[str, Any] = Field(default_factory=dict, description=_DESCRIPTIONS["data"])
    cron: str | None = Field(None, max_length=200, description=_DESCRIPTIONS["cron"])
    interval_seconds: float | None = Field(None, description=_DESCRIPTIONS["interval_seconds"])
    timezone: str = Field("UTC", max_length=64, description=_DESCRIPTIONS["timezone"])
    priority: str | int | None = Field(None, description=_DESCRIPTIONS["priority"])
    enabled: bool = Field(True, description=_DESCRIPTIONS["enabled"])
    queue: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$", description=_DESCRIPTIONS["queue"])
    missed_policy: MissedPolicy = Field(MissedPolicy.SKIP, description=_DESCRIPTIONS["missed_policy"])


class UpdateScheduleRequest(BaseModel):
    """Only the settings given change; giving cron switches an interval schedule to cron, and
    interval_seconds the other way."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"cron": "30 6 * * 1-5", "timezone": "America/New_York"}, {"enabled": False}]},
    )

    name: str | None = Field(None, max_length=200, description=_DESCRIPTIONS["name"])
    job_type: str | None = Field(None, max_length=200, description=_DESCRIPTIONS["job_type"])
    data: dict[str, Any] | None = Field(None, description=_DESCRIPTIONS["data"])
    cron: str | None = Field(None, max_length=200, description=_DESCRIPTIONS["cron"])
    interval_seconds: float | None = Field(None, description=_DESCRIPTIONS["interval_seconds"])
    timezone: str | None = Field(None, max_length=64, description=_DESCRIPTIONS["timezone"])
    priority: str | int | None = Field(None, description=_DESCRIPTIONS["priority"])
    enabled: bool | None = Field(None, description=_DESCRIPTIONS["enabled"])
    queue: str | None = Field(None, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$", description=_DESCRIPTIONS["queue"])
    missed_policy: MissedPolicy | None = Field(None, description=_DESCRIPTIONS["missed_policy"])


def schedule_json(s: Schedule) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in describe(s).items()}


def _answer(schedule: Schedule, message: str | None = None) -> dict[str, Any]:
    return {"schedule": schedule_json(schedule), **({"message": message} if message else {}), "timestamp": iso_now()}


def parse_schedule_id(raw: str) -> str:
    """Schedule ids are UUIDs; anything else names no schedule (404)."""
    try:
        return str(UUID(raw))
    except ValueError:
        raise ScheduleNotFound(raw) from None


@contextlib.contextmanager
def _fields_of_the_body() -> Iterator[None]:
    """The job's errors, named as this body names its fields: `job_type`, `data.<field>`."""
    try:
        yield
    except UnknownJobType as exc:
        error = api_error_of(exc)
        error.field = "job_type"
        raise error from None
    except InvalidJobData as exc:
        errors = [
            {"field": f"data.{e['field']}" if e["field"] else "data", "message": e["message"]} for e in exc.errors
        ]
        raise ApiError(400, "INVALID_JOB_DATA", exc.message, field=errors[0]["field"], errors=errors) from None


@router.get("", summary="Get schedules", responses=ex.example(200, ex.SCHEDULES))
async def list_schedules(
    svc: Svc,
    principal: Reader,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """The schedules the caller may see, oldest first, each with its next fire time."""
    found, total = await svc.conveyor.schedules.list(
        visible_to=principal.visibility, limit=page_size, offset=(page - 1) * page_size
    )
    return {
        "schedules": [schedule_json(s) for s in found],
        "pagination": pagination(page, page_size, total),
        "timestamp": iso_now(),
    }


@router.post(
    "",
    status_code=201,
    summary="Create schedule",
    responses={**ex.example(201, ex.SCHEDULE_ANSWER), **ex.example(400, ex.SCHEDULE_ERROR)},
)
async def create_schedule(svc: Svc, principal: Manager, body: CreateScheduleRequest) -> dict[str, Any]:
    """Validated as a whole before anything is stored: the job type and its data (every bad
    field named), priority, cron and time zone or interval, and the missed-tick policy."""
    spec = ScheduleSpec(**{**body.model_dump(), "missed_policy": body.missed_policy.value})
    offered(svc, spec.job_type, "job_type")
    with _fields_of_the_body():
        schedule = await svc.conveyor.schedules.create(spec, owner=principal.owner)
    return _answer(schedule)


@router.get("/{schedule_id}", summary="Get a schedule", responses={**ex.example(200, ex.SCHEDULE_ANSWER), **NOT_FOUND})
async def get_schedule(svc: Svc, principal: Reader, schedule_id: str) -> dict[str, Any]:
    return _answer(await svc.conveyor.schedules.get(parse_schedule_id(schedule_id), visible_to=principal.visibility))


@router.patch(
    "/{schedule_id}", summary="Change a schedule", responses={**ex.example(200, ex.SCHEDULE_ANSWER), **NOT_FOUND}
)
async def update_schedule(
    svc: Svc, principal: Manager, schedule_id: str, body: UpdateScheduleRequest
) -> dict[str, Any]:
    """A new timing (or enabling) starts the schedule afresh from now: ticks it would have had
    before the change do not fire."""
    changes = body.model_dump(exclude_unset=True)
    if isinstance(changes.get("job_type"), str):
        offered(svc, changes["job_type"], "job_type")
    if isinstance(changes.get("missed_policy"), MissedPolicy):
        changes["missed_policy"] = changes["missed_policy"].value
    with _fields_of_the_body():
        schedule = await svc.conveyor.schedules.update(
            parse_schedule_id(schedule_id), changes, visible_to=principal.visibility
        )
    return _answer(schedule)


@router.delete(
    "/{schedule_id}", summary="Delete a schedule", responses={**ex.example(200, ex.SCHEDULE_ANSWER), **NOT_FOUND}
)
async def delete_schedule(svc: Svc, principal: Manager, schedule_id: str) -> dict[str, Any]:
    """The jobs it made stay."""
    schedule = await svc.conveyor.schedules.delete(parse_schedule_id(schedule_id), visible_to=principal.visibility)
    return _answer(schedule, "schedule deleted")


@router.post(
    "/{schedule_id}/pause",
    summary="Pause a schedule: no ticks until resumed",
    responses={**ex.example(200, ex.SCHEDULE_ANSWER | {"message": "schedule paused"}), **NOT_FOUND},
)
async def pause_schedule(svc: Svc, principal: Manager, schedule_id: str) -> dict[str, Any]:
    return await _set_enabled(svc, principal, schedule_id, False)


@router.post(
    "/{schedule_id}/resume",
    summary="Resume a schedule, from its first tick after now",
    responses={**ex.example(200, ex.SCHEDULE_ANSWER | {"message": "schedule resumed"}), **NOT_FOUND},
)
async def resume_schedule(svc: Svc, principal: Manager, schedule_id: str) -> dict[str, Any]:
    """Ticks that passed while paused never fire, whatever the missed-tick policy."""
    return await _set_enabled(svc, principal, schedule_id, True)


@router.post(
    "/{schedule_id}/run",
    status_code=201,
    summary="Run a schedule now: one job at once, its ticks unchanged",
    responses=NOT_FOUND,
)
async def run_schedule(svc: Svc, principal: Manager, schedule_id: str) -> dict[str, Any]:
    """Paused or not; the job names the schedule (`schedule_id`) as a tick's would."""
    with _fields_of_the_body():  # the schedule's job no longer validates: which of its fields
        job = await svc.conveyor.schedules.run_now(parse_schedule_id(schedule_id), visible_to=principal.visibility)
    return {"job": monitoring_job(job), "schedule_id": schedule_id, "message": "job enqueued", "timestamp": iso_now()}


async def _set_enabled(svc: Services, principal: Principal, schedule_id: str, enabled: bool) -> dict[str, Any]:
    act = svc.conveyor.schedules.resume if enabled else svc.conveyor.schedules.pause
    schedule = await act(parse_schedule_id(schedule_id), visible_to=principal.visibility)
    return _answer(schedule, f"schedule {'resumed' if enabled else 'paused'}")
