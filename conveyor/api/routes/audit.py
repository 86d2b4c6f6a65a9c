"""The audit trail over HTTP: read it (filtered, paginated), export it, verify its chain.

Needs `audit:read` (admin, super admin). An admin sees its organisation's records; a super
admin every record, including those of no organisation (the system's, failed sign-ins).
Verify walks the whole chain (one chain for the installation) and answers only whether it is
intact and where it first breaks, never another organisation's records.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.lean import LeanRoute
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.audit import AuditRecord, timestamp_text
from conveyor.store.audit import AuditFilter

router = APIRouter(prefix="/api/v1/audit", tags=["audit trail"], route_class=LeanRoute)
Auditor = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
Svc = Annotated[Services, Depends(services)]

MAX_PAGE_SIZE = 500
EXPORT_COLUMNS = (
    "seq", "recordedAt", "actorId", "actorName", "action", "objectType", "objectId", "before", "after",
    "requestId", "clientAddress", "orgId", "prevHash", "hash",
)  # fmt: skip


def record_json(r: AuditRecord) -> dict[str, Any]:
    return {
        "seq": r.seq,
        "recordedAt": timestamp_text(r.recorded_at),  # to the microsecond: as hashed
        "actorId": r.actor_id,
        "actorName": r.actor_name,
        "action": r.action,
        "objectType": r.object_type,
        "objectId": r.object_id,
        "before": r.before,
        "after": r.after,
        "requestId": r.request_id,
        "clientAddress": r.client_address,
        "orgId": r.org_id,
        "prevHash": r.prev_hash,
        "hash": r.hash,
    }


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def audit_filter(
    principal: Auditor,
    actor: Annotated[str | None, Query(max_length=200, description="the actor's user id")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. job.created")] = None,
    object_type: Annotated[str | None, Query(max_length=32, description="job, schedule, queue, api_key…")] = None,
    object_id: Annotated[str | None, Query(max_length=200)] = None,
    job_id: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the records about one job: its own and those naming it among others "
            "(`after.jobIds`: a bulk enqueue, a worker's outcomes, a batch, a read of a page)",
        ),
    ] = None,
    since: Annotated[datetime | None, Query(description="recorded at or after (ISO 8601; UTC if no zone)")] = None,
    until: Annotated[datetime | None, Query(description="recorded before (ISO 8601; UTC if no zone)")] = None,
) -> AuditFilter:
    return AuditFilter(
        org_id=principal.org_id,
        every_org=principal.is_super_admin,
        actor_id=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        job_id=job_id,
        since=_utc(since),
        until=_utc(until),
    )


Filter = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("", summary="Read the audit trail (oldest first)", responses=ex.example(200, ex.AUDIT_PAGE))
async def list_audit(
    svc: Svc,
    where: Filter,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
) -> dict[str, Any]:
    records, total = await svc.conveyor.audit.list(where, limit=page_size, offset=(page - 1) * page_size)
    data = {
        "records": [record_json(r) for r in records],
        "total": total,
        "page": page,
        "pageSize": page_size,
        "hasNext": page * page_size < total,
    }
    return {"success": True, "data": data, "timestamp": iso_now()}


@router.get(
    "/verify",
    summary="Verify the audit chain: intact, or where it first breaks",
    responses=ex.example(200, ex.AUDIT_VERIFIED),
)
async def verify_audit(svc: Svc, _principal: Auditor) -> dict[str, Any]:
    verdict = await svc.conveyor.audit.verify()
    return {"success": True, "data": verdict.as_json(), "timestamp": iso_now()}


@router.get(
    "/export",
    summary="Export the audit trail as CSV or JSON",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/csv": {"example": ",".join(EXPORT_COLUMNS) + "\n1042,2026-01-15T10:30:00.123456Z,user-17,…"},
                "application/json": {"example": [ex.AUDIT_RECORD]},
            }
        }
    },
)
async def export_audit(
    svc: Svc,
    where: Filter,
    format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "json",
) -> StreamingResponse:
    """Every matching record, streamed in pages (a large trail is never held in memory).
    The export is itself recorded (audit.exported), with the filter it used."""
    await svc.conveyor.audit.record(
        "audit.exported", "audit", None, after={"format": format, **_filter_json(where)}, org_id=where.org_id
    )
    records = svc.conveyor.audit.stream(where)
    if format == "csv":
        return StreamingResponse(_csv(records), media_type="text/csv", headers=_attachment("csv"))
    return StreamingResponse(_json(records), media_type="application/json", headers=_attachment("json"))


def _filter_json(where: AuditFilter) -> dict[str, Any]:
    return {
        "actor": where.actor_id,
        "action": where.action,
        "objectType": where.object_type,
        "objectId": where.object_id,
        "since": iso(where.since),
        "until": iso(where.until),
        "everyOrg": where.every_org,
    }


def _attachment(extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="conveyor-audit.{extension}"'}


async def _csv(records: AsyncIterator[AuditRecord]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    async for record in records:
        row = record_json(record)
        for name in ("before", "after"):
            row[name] = "" if row[name] is None else json.dumps(row[name], sort_keys=True)
        writer.writerow(["" if row[c] is None else row[c] for c in EXPORT_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def _json(records: AsyncIterator[AuditRecord]) -> AsyncIterator[str]:
    yield "["
    first = True
    async for record in records:
        yield ("" if first else ",") + json.dumps(record_json(record))
        first = False
    yield "]"
