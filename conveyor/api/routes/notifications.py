"""Notifications over HTTP (seed 001's platform, seed 000's conventions): what jobs left for
people, such as medication reminders and refill alerts.

`GET /api/v1/notifications` pages them newest first (page, page_size: default 20, at most
100), filtered by recipient (`user_id`), `kind` and `unread`; `GET …/{id}` reads one and
`POST …/{id}/read` marks it read. Who sees which is decided as for jobs: a user the ones
addressed to them, an organisation's members their organisation's, a super admin all;
another organisation's answers 404. Every read of bodies is audited (notification.read);
errors are in seed 000's envelope. All three need `jobs:read`.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.lean import LeanRoute
from conveyor.api.routes.monitoring import pagination
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.errors import NotificationNotFound
from conveyor.store.notifications import Notification

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications (seed 001)"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Svc = Annotated[Services, Depends(services)]
NOT_FOUND = ex.example(
    404,
    {"error": {**ex.MONITORING_ERROR["error"], "message": "Notification not found",
               "details": {"reason": "NOTIFICATION_NOT_FOUND", "notificationId": "01968c3e-0000-7000-8000-0000"}}},
)  # fmt: skip
NOTIFICATION = {
    "id": "01968c3e-7d1a-7f3c-9a4e-2b8f5c6d7e8f",
    "kind": "medication_reminder",
    "user_id": "patient-4411",
    "org_id": "clinic-1",
    "body": {"medication_id": "med-0042", "local_date": "2025-06-15", "local_time": "08:00",
             "timezone": "Europe/Berlin", "due_at": "2025-06-15T06:00:00+00:00", "reminder_id": "5f0c…"},
    "job_id": "01968c3e-7d00-7000-8000-000000000001",
    "created_at": ex.TS,
    "read_at": None,
    "read": False,
}  # fmt: skip
ONE = ex.example(200, {"notification": NOTIFICATION, "timestamp": ex.TS})
PAGE = ex.example(
    200,
    {"notifications": [NOTIFICATION],
     "pagination": {"page": 1, "page_size": 20, "total": 1, "total_pages": 1, "has_next": False}, "timestamp": ex.TS},
)  # fmt: skip


def notification_json(n: Notification) -> dict[str, Any]:
    return {
        "id": str(n.id),
        "kind": n.kind,
        "user_id": n.user_id,
        "org_id": n.org_id,
        "body": n.body,
        "job_id": None if n.job_id is None else str(n.job_id),
        "created_at": iso(n.created_at),
        "read_at": iso(n.read_at),
        "read": n.read_at is not None,
    }


def _id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotificationNotFound(raw) from None


@router.get("", summary="List notifications", responses=PAGE)
async def list_notifications(
    svc: Svc,
    principal: Reader,
    user_id: Annotated[str | None, Query(min_length=1, max_length=200, description="the recipient")] = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=100, description="e.g. medication_reminder")] = None,
    unread: Annotated[bool | None, Query(description="true: unread only; false: read only")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    found, total = await svc.conveyor.notifications.list(
        visible_to=principal.visibility,
        user_id=user_id,
        kind=kind,
        unread=unread,
        limit=page_size,
        offset=(page - 1) * page_size,
    )
    return {
        "notifications": [notification_json(n) for n in found],
        "pagination": pagination(page, page_size, total),
        "timestamp": iso_now(),
    }


@router.get("/{notification_id}", summary="Get a notification", responses={**ONE, **NOT_FOUND})
async def get_notification(svc: Svc, principal: Reader, notification_id: str) -> dict[str, Any]:
    found = await svc.conveyor.notifications.get(_id(notification_id), visible_to=principal.visibility)
    return {"notification": notification_json(found), "timestamp": iso_now()}


@router.post("/{notification_id}/read", summary="Mark a notification read", responses={**ONE, **NOT_FOUND})
async def mark_read(svc: Svc, principal: Reader, notification_id: str) -> dict[str, Any]:
    found = await svc.conveyor.notifications.mark_read(_id(notification_id), visible_to=principal.visibility)
    return {"notification": notification_json(found), "timestamp": iso_now()}
