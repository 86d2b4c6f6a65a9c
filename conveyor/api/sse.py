"""Server-sent event streams: the response that carries one, and its OpenAPI description.

Shared by the job event stream (`GET /api/v1/jobs/{id}/events`) and the change feed
(`GET /api/v1/events`); each endpoint writes its own events.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi.responses import StreamingResponse

HEARTBEAT_S = 10.0  # a comment line this often keeps proxies from closing a quiet stream
HEARTBEAT = ": still here\n\n"


def event_stream(events: AsyncIterator[str]) -> StreamingResponse:
    # no-store: a stream is never a cached answer; X-Accel-Buffering: nginx passes each event on.
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def event_stream_response(
    names: Sequence[str], example: str, data_schema: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The 200 answer of a stream of events named `names`, each event's data JSON (described by
    `data_schema` when given), as OpenAPI 3.2 describes a stream's items."""
    data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json"}
    if data_schema is not None:
        data["contentSchema"] = data_schema
    item = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"enum": list(names)}, "data": data},
    }
    return {200: {"content": {"text/event-stream": {"schema": item, "example": example}}}}
