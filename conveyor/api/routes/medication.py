"""Seed 001's typed job endpoints: `POST /api/v1/jobs/{medication-reminder, refill-check,
interaction-check, supply-monitor, analytics-roll-up, backup}`, driven by one table.

Each row names the path, the job type it starts, its default priority and the roles that may
start it. A route exists for each row whose job type the medication pack registers; a process
that does not load the pack (CONVEYOR_PACKS) answers 404. The body is the job type's own
input model (every field error named), plus an optional `priority`: CRITICAL, HIGH, MEDIUM
or LOW, seed 001's priority table (its retry policy: 5 retries from 60 s, 3 from 300 s, 3
from 600 s, 2 from 1800 s). A `user` may start jobs for themselves only (`user_id` must be
their own). The answer is 202 with the job: id, type, status, priority and links to follow it
in both job families; nothing of the body is echoed (minimum necessary).

Errors are seed 000's envelope (JOB002 400, JOB003 401/403, JOB001 404, JOB005 500), each
naming the field. Every refusal on these paths (400, 401, 403, 404, 429, 500…) is recorded
in the audit trail as `job.refused`: the route, status, code and field names, never a value
of the body.
"""

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse, Response

from conveyor.access import Permission, Principal, Role
from conveyor.api import examples as ex
from conveyor.api.auth import authenticate
from conveyor.api.errors import ApiError, api_error_of, unavailable_error
from conveyor.api.services import Services, admit_jobs, queue_of, services
from conveyor.api.timefmt import iso
from conveyor.audit import Actor, current_actor
from conveyor.errors import ConveyorError, InvalidJobData
from conveyor.model import Job, Priority
from conveyor.packs.medication import jobtypes as medication_jobtypes
from conveyor.store.outage import database_unavailable, log_failure

log = logging.getLogger("conveyor.api.medication")

PREFIX = "/api/v1/jobs"
_CLINICAL = frozenset({Role.USER, Role.OPERATOR, Role.ADMIN, Role.SUPER_ADMIN})
_OPERATIONS = frozenset({Role.OPERATOR, Role.ADMIN, Role.SUPER_ADMIN})
_ADMINISTRATION = frozenset({Role.ADMIN, Role.SUPER_ADMIN})
PRIORITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")


@dataclass(frozen=True, slots=True)
class TypedJob:
    path: str  # under /api/v1/jobs/
    kind: str
    priority: Priority  # when the body names none
    roles: frozenset[Role]  # who may start it (each holds jobs:create)

    @property
    def route(self) -> str:
        return f"{PREFIX}/{self.path}"


# The one table (the README's "Medication platform (seed 001)" shows it too).
TYPED_JOBS = (
    TypedJob("medication-reminder", "medication_reminder", Priority.HIGH, _CLINICAL),
    TypedJob("refill-check", "refill_check", Priority.HIGH, _CLINICAL),
    TypedJob("interaction-check", "interaction_check", Priority.CRITICAL, _CLINICAL),
    TypedJob("supply-monitor", "supply_monitor", Priority.MEDIUM, _CLINICAL),
    TypedJob("analytics-roll-up", "analytics_roll_up", Priority.LOW, _OPERATIONS),
    TypedJob("backup", "backup", Priority.HIGH, _ADMINISTRATION),
)
ROLES_BY_ROUTE = {t.route: t.roles for t in TYPED_JOBS}


class EvidenceRoute(APIRoute):
    """A route whose every refusal is recorded in the audit trail before it is answered."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        template = self.path

        async def recorded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                await _record_refusal(request, template, exc)
                raise

        return recorded


def _refusal_of(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ConveyorError):
        return api_error_of(exc)
    if isinstance(exc, RequestValidationError):
        return ApiError(400, "INVALID_REQUEST", "invalid request")
    if database_unavailable(exc):  # answered so by the API's outer layer
        return unavailable_error()
    return ApiError(500, "INTERNAL_ERROR", "internal server error")


async def record_early_refusal(request: Request, error: ApiError) -> None:
    """A refusal answered before routing (a body over the limit) on one of these endpoints:
    recorded as the routes record theirs. The API's outermost layer calls it."""
    if request.url.path in ROLES_BY_ROUTE:
        await _record_refusal(request, request.url.path, error)


async def _record_refusal(request: Request, route: str, exc: Exception) -> None:
    error = _refusal_of(exc)
    principal: Principal | None = getattr(request.state, "principal", None)
    actor = current_actor()
    if principal is None:
        actor = Actor(
            user_id="anonymous",
            request_id=getattr(request.state, "request_id", None),
            client_address=request.client.host if request.client else None,
        )
    errors = error.details.get("errors") or []
    after = {
        "route": route,
        "method": request.method,
        "status": error.status,
        "code": error.code,
        "field": error.field,
        "fields": [e.get("field") for e in errors if isinstance(e, dict)],
    }
    try:
        audit = request.app.state.services.conveyor.audit
        await audit.record(
            "job.refused", "endpoint", route, after=after, org_id=principal.org_id if principal else None, actor=actor
        )
    except Exception as failure:  # noqa: BLE001 - the refusal is answered whatever happens to its record
        log_failure(log, failure, "recording a refusal on %s failed", route)


def _caller(entry: TypedJob) -> Callable[[Request], Awaitable[Principal]]:
    """The authenticated caller, whose role must be one the table allows for `entry` (403)."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not principal.can(Permission.JOBS_CREATE) or not (set(principal.roles) & entry.roles):
            role = principal.role.value if principal.role else "no role"
            allowed = ", ".join(sorted(r.value for r in entry.roles))
            raise ApiError(403, "FORBIDDEN", f"{role} may not start {entry.kind} jobs (allowed: {allowed})")
        return principal

    dependency.permission = Permission.JOBS_CREATE  # type: ignore[attr-defined]  # read by the route table
    return dependency


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "INVALID_JSON", "request body is not valid JSON", field="body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON object", field="body")
    return body


def _priority(body: dict[str, Any], entry: TypedJob) -> Priority:
    if "priority" not in body:
        return entry.priority
    value = body.pop("priority")
    if not isinstance(value, str) or value.upper() not in PRIORITIES:
        raise ApiError(400, "INVALID_JOB_OPTIONS", f"priority must be one of {', '.join(PRIORITIES)}", field="priority")
    return Priority(value.lower())


def job_answer(job: Job) -> dict[str, Any]:
    """The created job, minimum necessary: no data, no result."""
    return {
        "id": str(job.id),
        "type": job.kind,
        "status": job.status.value,
        "priority": job.priority_class.value.upper(),
        "created_at": iso(job.created_at),
        "links": {"self": f"{PREFIX}/{job.id}", "monitoring": f"{PREFIX}/jobs/{job.id}"},
    }


def _endpoint(entry: TypedJob) -> Callable[..., Awaitable[Response]]:
    # This module's annotations are evaluated (no `from __future__ import annotations`): each
    # endpoint's Depends names its own row's role check.
    async def start(
        request: Request,
        svc: Annotated[Services, Depends(services)],
        principal: Annotated[Principal, Depends(_caller(entry))],
    ) -> Response:
        if entry.kind not in svc.engine.registry:
            raise ApiError(404, "JOB_TYPE_NOT_INSTALLED", f"job type {entry.kind} is not installed here")
        body = await _body(request)
        priority = _priority(body, entry)
        try:
            data = svc.engine.registry.get(entry.kind).parse(body)
        except InvalidJobData as exc:
            first = exc.errors[0]["field"] or "body"
            messages = [
                {"field": e["field"], "message": e["message"].removeprefix("Value error, ")} for e in exc.errors
            ]
            raise ApiError(400, "INVALID_JOB_DATA", f"invalid {first}: {messages[0]['message']}",
                           field=first, errors=messages) from None  # fmt: skip
        patient = getattr(data, "user_id", None)
        if principal.role is Role.USER and patient is not None and patient != principal.user_id:
            raise ApiError(403, "FORBIDDEN", "a user may start these jobs for themselves only", field="user_id")
        await admit_jobs(svc, principal, 1, queue_of(svc, entry.kind, None))
        job = await svc.engine.enqueue(entry.kind, data, priority=priority, owner=principal.owner)
        return JSONResponse(job_answer(job), status_code=202)

    start.__name__ = f"start_{entry.kind}"
    start.__doc__ = (
        f"Start a {entry.kind} job (seed 001). Roles: {', '.join(sorted(r.value for r in entry.roles))}; "
        f"default priority {entry.priority.value.upper()}."
    )
    return start


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A pydantic JSON schema with its local `$defs` references written in place (the OpenAPI
    document has no `$defs` of its own for them to point into)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _error(status: int, code: str, reason: str, message: str, field: str | None = None) -> dict[str, Any]:
    return ex.example(
        status,
        {"error": {"code": code, "message": message, "field": field, "details": {"reason": reason},
                   "timestamp": ex.TS, "request_id": "req_123456"}},
    )  # fmt: skip


def _openapi_extra(entry: TypedJob) -> dict[str, Any]:
    model = medication_jobtypes.get(entry.kind).input_model
    schema: dict[str, Any] = {"type": "object"}
    if model is not None:
        raw = model.model_json_schema()
        schema = _inline(raw, raw.get("$defs", {}))
        schema.setdefault("properties", {})["priority"] = {"type": "string", "enum": list(PRIORITIES)}
        example = (model.model_config.get("json_schema_extra") or {}).get("examples", [None])[0]  # type: ignore[union-attr]
        if example is not None:
            schema["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_ANSWER = {
    "id": "01968c3e-7d1a-7f3c-9a4e-2b8f5c6d7e8f",
    "type": "medication_reminder",
    "status": "pending",
    "priority": "HIGH",
    "created_at": ex.TS,
    "links": {
        "self": "/api/v1/jobs/01968c3e-7d1a-7f3c-9a4e-2b8f5c6d7e8f",
        "monitoring": "/api/v1/jobs/jobs/01968c3e-7d1a-7f3c-9a4e-2b8f5c6d7e8f",
    },
}
_RESPONSES = {
    **ex.example(202, _ANSWER, "the job, created"),
    **_error(400, "JOB002", "INVALID_JOB_DATA", "invalid schedule.times: twice daily takes 2 times, not 1",
             "schedule.times"),
    **_error(401, "JOB003", "UNAUTHORIZED", "credentials required"),
    **_error(403, "JOB003", "FORBIDDEN", "viewer may not start medication_reminder jobs"),
    **_error(404, "JOB001", "JOB_TYPE_NOT_INSTALLED", "job type medication_reminder is not installed here"),
    **_error(500, "JOB005", "INTERNAL_ERROR", "internal server error"),
}  # fmt: skip

router = APIRouter(tags=["medication (seed 001)"], route_class=EvidenceRoute)
for _entry in TYPED_JOBS:
    if _entry.kind in medication_jobtypes:
        router.add_api_route(
            _entry.route,
            _endpoint(_entry),
            methods=["POST"],
            status_code=202,
            summary=f"Start {_entry.kind.replace('_', ' ')}",
            responses=_RESPONSES,  # type: ignore[arg-type]
            openapi_extra=_openapi_extra(_entry),
        )
