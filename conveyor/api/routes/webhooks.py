"""Webhook subscriptions over HTTP, in the canonical family: `/api/v1/webhooks` (create, list),
`/{id}` (get, change, delete), `/{id}/ping` (a test delivery), `/{id}/deliveries` (attempts).

Admins manage their organisation's subscriptions (`webhooks:manage`); a super admin any
organisation's (`orgId` on create). Subscriptions receive the whole organisation's events, so
an admin scoped to one study may not manage them (403). Another organisation's subscription answers 404. A
subscription receives its organisation's events only. The signing secret is shown once, in
the answer that creates it (or rotates it); never again. Every change is audited.
Also here: `GET /api/v1/alerts` (`alerts:read`), the alerts of the caller's organisation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.routes.canonical import ok
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso
from conveyor.engine.alerts import alert_json
from conveyor.engine.webhooks import new_secret as make_secret
from conveyor.errors import WebhookNotFound
from conveyor.storable import text_problem
from conveyor.store.webhooks import EVENT_TYPES, Delivery, Webhook
from conveyor.webhooks import TargetRefused

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], route_class=LeanRoute)
alerts_router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], route_class=LeanRoute)

Admin = Annotated[Principal, Depends(require(Permission.WEBHOOKS_MANAGE))]
AlertReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
Svc = Annotated[Services, Depends(services)]

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
WEBHOOK_ID = "01936f2e-5b1a-7c3d-9e4f-a1b2c3d4e5f7"
WEBHOOK = {
    "id": WEBHOOK_ID,
    "orgId": "org-a",
    "url": "https://hooks.example.com/conveyor",
    "events": ["job.failed", "alert.raised"],
    "description": "on-call pager",
    "enabled": True,
    "createdBy": "Ada",
    "createdAt": ex.TS,
    "updatedAt": ex.TS,
    "links": {"deliveries": f"/api/v1/webhooks/{WEBHOOK_ID}/deliveries", "ping": f"/api/v1/webhooks/{WEBHOOK_ID}/ping"},
}
NOT_FOUND = ex.example(
    404,
    {**ex.CANONICAL_ERROR, "error": "Webhook not found", "details": {"code": "WEBHOOK_NOT_FOUND", "webhookId": "x"}},
)


def _storable(value: str | None) -> str | None:
    if value is not None and (problem := text_problem(value)):
        raise ValueError(problem)
    return value


class CreateWebhookRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/conveyor", "events": ["job.failed", "alert.raised"],
                 "description": "on-call pager"}
            ]
        },
    )  # fmt: skip

    url: str = Field(max_length=2000, description="http(s) URL; private, loopback and link-local targets are refused")
    events: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES), description="event types to receive")
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="signing secret; default: one generated (shown once)"
    )
    description: str | None = Field(None, max_length=200)
    enabled: bool = True
    orgId: str | None = Field(None, max_length=200, description="super admins only: another organisation's")

    @field_validator("url", "secret", "description", "orgId")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _storable(value)


class UpdateWebhookRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"enabled": False}, {"rotateSecret": True}]}
    )

    url: str | None = Field(None, max_length=2000)
    events: list[EventType] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES))
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = None
    secret: str | None = Field(None, min_length=16, max_length=200, description="a new signing secret")
    rotateSecret: bool = Field(False, description="generate a new signing secret (shown once, in this answer)")

    @field_validator("url", "secret", "description")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        return _storable(value)


def webhook_json(w: Webhook) -> dict[str, Any]:
    return {
        "id": str(w.id),
        "orgId": w.org_id,
        "url": w.url,
        "events": list(w.events),
        "description": w.description,
        "enabled": w.enabled,
        "createdBy": w.created_by,
        "createdAt": iso(w.created_at),
        "updatedAt": iso(w.updated_at),
        "links": {"deliveries": f"/api/v1/webhooks/{w.id}/deliveries", "ping": f"/api/v1/webhooks/{w.id}/ping"},
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "eventId": d.event_id,
        "eventType": d.event_type,
        "jobId": str(d.job_id),
        "attempt": d.attempt,
        "statusCode": d.status_code,
        "success": d.success,
        "durationMs": d.duration_ms,
        "error": d.error,
        "deliveredAt": iso(d.delivered_at),
    }


def _refused(exc: TargetRefused) -> ApiError:
    return ApiError(400, "INVALID_WEBHOOK_URL", str(exc), field="url")


def _org_wide(principal: Principal) -> None:
    """Subscriptions receive their whole organisation's events: a principal scoped to one study
    (who sees only that study's jobs) may not manage them."""
    if principal.study_id is not None and not principal.is_super_admin:
        raise ApiError(403, "FORBIDDEN", "webhooks are organisation-wide: a study-scoped principal may not manage them")


async def _visible(svc: Services, principal: Principal, raw: str) -> Webhook:
    _org_wide(principal)
    try:
        webhook_id = UUID(raw)
    except ValueError:
        raise WebhookNotFound(raw) from None
    webhook = await svc.conveyor.webhooks.get(webhook_id)
    if webhook is None or not (principal.is_super_admin or webhook.org_id == principal.org_id):
        raise WebhookNotFound(raw)
    return webhook


@router.post(
    "",
    status_code=201,
    summary="Create a webhook subscription (its secret shown once)",
    # an OpenAPI example, not a secret (bandit B105)
    responses=ex.example(201, {"success": True, "data": {**WEBHOOK, "secret": "whsec_…"}, "timestamp": ex.TS}),  # nosec B105
)
async def create_webhook(svc: Svc, principal: Admin, body: CreateWebhookRequest) -> dict[str, Any]:
    _org_wide(principal)
    org_id = principal.org_id
    if body.orgId is not None and body.orgId != principal.org_id:
        if not principal.is_super_admin:
            raise ApiError(403, "FORBIDDEN", "subscriptions for another organisation need a super admin", field="orgId")
        org_id = body.orgId
    try:
        webhook, secret = await svc.conveyor.webhooks.create(
            org_id=org_id, url=body.url, events=body.events, secret=body.secret, description=body.description,
            enabled=body.enabled, created_by=principal.name or principal.user_id,
        )  # fmt: skip
    except TargetRefused as exc:
        raise _refused(exc) from None
    return ok({**webhook_json(webhook), "secret": secret})


@router.get(
    "",
    summary="List webhook subscriptions",
    responses=ex.example(200, {"success": True, "data": {"webhooks": [WEBHOOK], "total": 1, "page": 1, "limit": 20,
                                                         "hasNext": False}, "timestamp": ex.TS}),
)  # fmt: skip
async def list_webhooks(
    svc: Svc,
    principal: Admin,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="page size, default 20")] = 20,
) -> dict[str, Any]:
    _org_wide(principal)
    webhooks, total = await svc.conveyor.webhooks.list(
        org_id=principal.org_id, every_org=principal.is_super_admin, limit=limit, offset=(page - 1) * limit
    )
    listed = [webhook_json(w) for w in webhooks]
    return ok({"webhooks": listed, "total": total, "page": page, "limit": limit, "hasNext": page * limit < total})


@router.get(
    "/{webhook_id}",
    summary="Get a webhook subscription",
    responses={**ex.example(200, {"success": True, "data": WEBHOOK, "timestamp": ex.TS}), **NOT_FOUND},
)
async def get_webhook(svc: Svc, principal: Admin, webhook_id: str) -> dict[str, Any]:
    return ok(webhook_json(await _visible(svc, principal, webhook_id)))


@router.patch(
    "/{webhook_id}",
    summary="Change a webhook subscription (URL, events, description, enabled, secret)",
    responses={**ex.example(200, {"success": True, "data": WEBHOOK, "timestamp": ex.TS}), **NOT_FOUND},
)
async def update_webhook(svc: Svc, principal: Admin, webhook_id: str, body: UpdateWebhookRequest) -> dict[str, Any]:
    webhook = await _visible(svc, principal, webhook_id)
    if body.rotateSecret and body.secret is not None:
        raise ApiError(400, "INVALID_WEBHOOK", "give a secret or ask for a new one, not both", field="rotateSecret")
    changes: dict[str, Any] = {
        k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "rotateSecret" and v is not None
    }
    new_secret = None
    if body.rotateSecret:
        changes["secret"] = new_secret = make_secret()
    elif body.secret is not None:
        new_secret = body.secret
    try:
        updated = await svc.conveyor.webhooks.update(webhook, **changes) if changes else webhook
    except TargetRefused as exc:
        raise _refused(exc) from None
    return ok({**webhook_json(updated), **({"secret": new_secret} if new_secret else {})})


@router.delete(
    "/{webhook_id}",
    summary="Delete a webhook subscription",
    responses={**ex.example(200, {"success": True, "data": WEBHOOK, "timestamp": ex.TS}), **NOT_FOUND},
)
async def delete_webhook(svc: Svc, principal: Admin, webhook_id: str) -> dict[str, Any]:
    webhook = await _visible(svc, principal, webhook_id)
    deleted = await svc.conveyor.webhooks.delete(webhook)
    if deleted is None:
        raise WebhookNotFound(webhook_id)
    return ok({**webhook_json(deleted), "deleted": True})


@router.post(
    "/{webhook_id}/ping",
    status_code=202,
    summary="Send a test event (type ping) to the subscription, as a delivery job",
    responses={
        **ex.example(202, {"success": True, "data": {"jobId": ex.JOB_ID, "eventType": "ping"}, "timestamp": ex.TS}),
        **NOT_FOUND,
    },
)
async def ping_webhook(svc: Svc, principal: Admin, webhook_id: str) -> dict[str, Any]:
    webhook = await _visible(svc, principal, webhook_id)
    job = await svc.conveyor.webhooks.ping(webhook)
    return ok({"jobId": str(job.id), "eventType": "ping", "links": {"job": f"/api/v1/jobs/{job.id}"}})


DELIVERY = {
    "id": 42, "eventId": "evt_0193…", "eventType": "job.failed", "jobId": ex.JOB_ID, "attempt": 2,
    "statusCode": 200, "success": True, "durationMs": 38.2, "error": None, "deliveredAt": ex.TS,
}  # fmt: skip


@router.get(
    "/{webhook_id}/deliveries",
    summary="Delivery attempts of a subscription, newest first",
    responses={
        **ex.example(200, {"success": True, "data": {"deliveries": [DELIVERY], "total": 1, "page": 1, "limit": 20,
                                                     "hasNext": False}, "timestamp": ex.TS}),
        **NOT_FOUND,
    },
)  # fmt: skip
async def list_deliveries(
    svc: Svc,
    principal: Admin,
    webhook_id: str,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="page size, default 20")] = 20,
) -> dict[str, Any]:
    webhook = await _visible(svc, principal, webhook_id)
    deliveries, total = await svc.conveyor.webhooks.deliveries(webhook.id, limit=limit, offset=(page - 1) * limit)
    listed = [delivery_json(d) for d in deliveries]
    return ok({"deliveries": listed, "total": total, "page": page, "limit": limit, "hasNext": page * limit < total})


ALERT = {
    "id": WEBHOOK_ID, "orgId": "org-a", "jobType": "medication.refill_check", "metric": "error_rate",
    "threshold": 0.01, "value": 0.04, "samples": 250, "status": "active", "raisedAt": ex.TS, "clearedAt": None,
    "clearedValue": None,
}  # fmt: skip


@alerts_router.get(
    "",
    summary="Alerts of the caller's organisation (active, cleared or all), newest first",
    responses=ex.example(200, {"success": True, "data": {"alerts": [ALERT], "total": 1, "page": 1, "limit": 20,
                                                         "hasNext": False}, "timestamp": ex.TS}),
)  # fmt: skip
async def list_alerts(
    svc: Svc,
    principal: AlertReader,
    status: Annotated[Literal["active", "cleared", "all"], Query(description="default: active")] = "active",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    limit: Annotated[int, Query(ge=1, le=100, description="page size, default 20")] = 20,
) -> dict[str, Any]:
    active = None if status == "all" else status == "active"
    scope = None if principal.is_super_admin else principal.visibility
    alerts, total = await svc.conveyor.alerts.list(
        visible_to=scope, active=active, limit=limit, offset=(page - 1) * limit
    )
    listed = [alert_json(a) for a in alerts]
    return ok({"alerts": listed, "total": total, "page": page, "limit": limit, "hasNext": page * limit < total})
