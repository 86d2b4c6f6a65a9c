"""Errors over HTTP: one internal error, rendered in the shape of the family a path belongs to.

Each seed's clients parse their own error shape, so the family is decided by the path (the
same rule whatever raised the error: a route, authentication, FastAPI's validation, or a
path no route matches):

- monitoring (seed 000), `/api/v1/jobs/jobs…`, `/queues`, `/schedules`, `/statistics`, and
  seed 001's typed job endpoints (`/api/v1/jobs/medication-reminder`…) and notifications:
  `{"error": {"code": "JOB001"…, "message", "field", "details", "timestamp", "request_id"}}`;
- VA calibration (seed 003), `/api/v1/jobs/health`, `/api/v1/jobs/metrics`,
  `/api/v1/calibrate…`, `/api/v1/cache…`: `{"detail", "status_code", "timestamp"}`;
- predictions (seed 004), `/api/v1/predictions…`: `{"detail"}`;
- everything else, the canonical family (seed 002):
  `{"success": false, "error", "details": {"code", …}, "timestamp"}`.

Whatever the family, the stable code also travels in the `X-Error-Code` header: the seed 003
and 004 shapes have no place for it, and a client (conveyor.client) tells a refused
e-signature from a forbidden role by it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from conveyor.api.timefmt import iso_now
from conveyor.errors import ConveyorError, InvalidJobData, UnknownJobType


class Family(enum.StrEnum):
    CANONICAL = "canonical"
    MONITORING = "monitoring"
    CALIBRATION = "calibration"
    PREDICTIONS = "predictions"


_MONITORING_PREFIXES = (
    "/api/v1/jobs/jobs",
    "/api/v1/jobs/queues",
    "/api/v1/jobs/schedules",
    "/api/v1/jobs/statistics",
    # seed 001's platform is seed 000's: its typed job endpoints and notifications answer alike
    "/api/v1/jobs/medication-reminder",
    "/api/v1/jobs/refill-check",
    "/api/v1/jobs/interaction-check",
    "/api/v1/jobs/supply-monitor",
    "/api/v1/jobs/analytics-roll-up",
    "/api/v1/jobs/backup",
    "/api/v1/notifications",
)
_CALIBRATION_PREFIXES = ("/api/v1/jobs/health", "/api/v1/jobs/metrics", "/api/v1/calibrate", "/api/v1/cache")


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def family_of(path: str) -> Family:
    if _under(path, _MONITORING_PREFIXES):
        return Family.MONITORING
    if _under(path, _CALIBRATION_PREFIXES):
        return Family.CALIBRATION
    if _under(path, ("/api/v1/predictions",)):
        return Family.PREDICTIONS
    return Family.CANONICAL


# Seed 000's codes, by HTTP status class.
_MONITORING_CODES = {400: "JOB002", 401: "JOB003", 403: "JOB003", 404: "JOB001", 409: "JOB004", 413: "JOB002"}


class ApiError(Exception):
    """An error answer: HTTP status, a stable code (seed 002's vocabulary), a message, the
    offending field where there is one, and details the canonical family spreads into
    `details`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.details = details

    def render(self, family: Family, request_id: str) -> JSONResponse:
        timestamp = iso_now()
        body: dict[str, Any]
        if family is Family.MONITORING:
            code = _MONITORING_CODES.get(self.status, "JOB005" if self.status >= 500 else "JOB002")
            body = {
                "error": {
                    "code": code,
                    "message": self.message,
                    "field": self.field,
                    "details": {"reason": self.code, **self.details},
                    "timestamp": timestamp,
                    "request_id": request_id,
                }
            }
        elif family is Family.CALIBRATION:
            body = {"detail": self.message, "status_code": self.status, "timestamp": timestamp}
        elif family is Family.PREDICTIONS:
            body = {"detail": self.message}
        else:
            details: dict[str, Any] = {"code": self.code, **self.details}
            if self.field is not None and "field" not in details:
                details["field"] = self.field
            body = {"success": False, "error": self.message, "details": details, "timestamp": timestamp}
        return JSONResponse(body, status_code=self.status, headers={**self.headers, "X-Error-Code": self.code})


def field_errors(errors: Sequence[dict[str, Any]], *, skip: int = 1) -> list[dict[str, str]]:
    """Pydantic/FastAPI errors as [{field, message}], the location joined with dots
    (its first `skip` parts — body, query, path — dropped)."""
    out = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())[skip:]]
        if "[key]" in loc:  # a bad key of a mapping: name the mapping, do not echo the key
            loc = loc[: loc.index("[key]") - 1]
        out.append({"field": ".".join(loc) or "body", "message": str(error.get("msg", "invalid"))})
    return out


_STATUS_OF_CODE = {
    "INVALID_JOB_TYPE": 400,
    "INVALID_JOB_DATA": 400,
    "INVALID_JOB_OPTIONS": 400,
    "INVALID_API_KEY_REQUEST": 400,
    "JOB_NOT_FOUND": 404,
    "JOB_NOT_CANCELLABLE": 409,
    "JOB_NOT_RETRYABLE": 409,
    "JOB_NOT_DELETABLE": 409,
    "INVALID_SCHEDULE": 400,
    "SCHEDULE_NOT_FOUND": 404,
    "INVALID_BATCH": 400,
    "BATCH_NOT_FOUND": 404,
    "BATCH_NOT_CANCELLABLE": 409,
    "INVALID_USER_REQUEST": 400,
    "USER_EXISTS": 409,
    "USER_NOT_FOUND": 404,
    "SIGNATURE_REQUIRED": 428,
    "SIGNATURE_INVALID": 403,
    "WEBHOOK_NOT_FOUND": 404,
    "NOTIFICATION_NOT_FOUND": 404,
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Seconds a client is asked to wait after a 503 for a database that could not serve it.
DATABASE_RETRY_AFTER = 2


def unavailable_error() -> ApiError:
    """The answer for a call the database could not serve now (conveyor.store.outage)."""
    return ApiError(
        503,
        "DATABASE_UNAVAILABLE",
        "the database cannot serve this request right now; retry shortly",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
    )


def api_error_of(exc: ConveyorError) -> ApiError:
    """A core error as an HTTP error: its code kept, its details in camelCase."""
    details = {_camel(k): v for k, v in exc.details.items() if k != "field"}
    field = exc.details.get("field")
    if isinstance(exc, InvalidJobData) and exc.errors:
        field = exc.errors[0]["field"] or "data"
    if isinstance(exc, UnknownJobType):
        field = "type"
    message = {
        "INVALID_JOB_TYPE": "Invalid job type",
        "INVALID_JOB_DATA": "Invalid job data",
        "JOB_NOT_FOUND": "Job not found",
        "JOB_NOT_CANCELLABLE": "Job not found or cannot be cancelled",
        "SCHEDULE_NOT_FOUND": "Schedule not found",
        "BATCH_NOT_FOUND": "Batch not found",
        "WEBHOOK_NOT_FOUND": "Webhook not found",
        "NOTIFICATION_NOT_FOUND": "Notification not found",
    }.get(exc.code, exc.message)
    return ApiError(_STATUS_OF_CODE.get(exc.code, 400), exc.code, message, field=field, **details)
