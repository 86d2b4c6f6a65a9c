"""What an operator's tool (the dashboard, a script) asks besides jobs: who the caller is and
what it may do, and which workers are alive.

`GET /api/v1/me` answers with the caller's role and its permissions from the one table
(conveyor.access.ROLE_PERMISSIONS), so that the dashboard offers exactly the actions the API
would allow. `GET /api/v1/workers` lists the live workers (host, pid, queues, concurrency,
jobs running, last heartbeat). `GET /api/v1/events` is a live feed of changes among the
caller's jobs (server-sent events; conveyor.engine.changes), which the dashboard's pages
refresh on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.lean import LeanRoute
from conveyor.api.services import Services, services
from conveyor.api.sse import HEARTBEAT, event_stream, event_stream_response, with_heartbeats
from conveyor.api.timefmt import iso, iso_now
from conveyor.model import utc_now

router = APIRouter(prefix="/api/v1", tags=["the caller and the workers"], route_class=LeanRoute)
# Every role reads jobs: `me` answers any authenticated caller.
Caller = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
QueueReader = Annotated[Principal, Depends(require(Permission.QUEUES_READ))]
Svc = Annotated[Services, Depends(services)]


def ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "timestamp": iso_now()}


@router.get("/me", summary="The caller: identity, role, organisation and permissions", responses=ex.example(200, ex.ME))
async def me(principal: Caller) -> dict[str, Any]:
    """`permissions` are the role's, from the table the API authorises every request with;
    `superAdmin` sees every organisation's jobs."""
    return ok(
        {
            "userId": principal.user_id,
            "name": principal.name,
            "role": principal.role.value if principal.role else None,
            "roles": [r.value for r in principal.roles],
            "orgId": principal.org_id,
            "studyId": principal.study_id,
            "via": principal.via,
            "superAdmin": principal.is_super_admin,
            "permissions": sorted(p.value for p in principal.permissions),
        }
    )


@router.get(
    "/workers",
    summary="Live workers: host, pid, queues, concurrency, jobs running, last heartbeat",
    responses=ex.example(200, ex.WORKERS),
)
async def workers(svc: Svc, _principal: QueueReader) -> dict[str, Any]:
    """Workers that reported within the last 30 seconds, oldest first. A worker serves every
    organisation, so this names no job and no owner."""
    now = utc_now()
    live = sorted(await svc.insights.live_workers(), key=lambda w: (w.started_at, w.id))
    out = [
        {
            "id": w.id,
            "hostname": w.hostname,
            "pid": w.pid,
            "queues": list(w.queues),
            "concurrency": w.concurrency,
            "running": w.running,
            "startedAt": iso(w.started_at),
            "lastSeenAt": iso(w.last_seen_at),
            "lastSeenSecondsAgo": round(max((now - w.last_seen_at).total_seconds(), 0.0), 1),
        }
        for w in live
    ]
    return ok({"workers": out, "total": len(out)})


@router.get(
    "/events",
    summary="A live feed of changes among the caller's jobs (server-sent events)",
    response_class=StreamingResponse,
    responses=event_stream_response(
        ["ready", "change", "end"],
        'event: ready\ndata: {}\n\nevent: change\ndata: {"topics": ["finish", "insert"]}\n\n',
        {
            "type": "object",
            "properties": {"topics": {"type": "array", "items": {"enum": ["insert", "finish", "cancel"]}}},
        },
    ),
)
async def changes(
    svc: Svc,
    principal: Caller,
    close_after: Annotated[
        int, Query(ge=0, le=86_400, description="seconds until the server ends the stream (the client reconnects)")
    ] = 3600,
) -> StreamingResponse:
    """`event: ready` at once, then `event: change` with `topics` each time jobs the caller may
    see were added to a queue (`insert`), finished (`finish`) or asked to stop (`cancel`): at
    most one event a second, naming no job (read them through the other endpoints, which apply
    the caller's scope). After `close_after` seconds `event: end`, and the stream closes: a
    bounded stream lets proxies and load balancers recycle it; the dashboard reconnects."""
    feed = svc.engine.changes.follow(principal.visibility)
    return event_stream(_change_events(feed, close_after))


async def _change_events(feed: AsyncGenerator[frozenset[str], None], close_after: float) -> AsyncIterator[str]:
    try:
        yield "event: ready\ndata: {}\n\n"
        async with contextlib.aclosing(with_heartbeats(feed, close_after=close_after)) as changes:
            async for topics in changes:
                yield (
                    HEARTBEAT
                    if topics is None
                    else f"event: change\ndata: {json.dumps({'topics': sorted(topics)})}\n\n"
                )
        yield "event: end\ndata: {}\n\n"
    finally:
        await feed.aclose()  # with_heartbeats closes it too, when it ran
