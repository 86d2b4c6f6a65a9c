"""Server-sent event streams: the response that carries one, and its OpenAPI description.

Shared by the job event stream (`GET /api/v1/jobs/{id}/events`) and the change feed
(`GET /api/v1/events`); each endpoint writes its own events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

T = TypeVar("T")

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


async def with_heartbeats(
    source: AsyncGenerator[T, None], *, close_after: float | None = None
) -> AsyncIterator[T | None]:
    """The items of `source` as they come, and None after each HEARTBEAT_S without one (the
    stream then writes HEARTBEAT); ends with `source`, or after `close_after` seconds. Closes
    `source` however it ends, once a step of it under way has ended (closing a generator
    while its step runs would fail)."""
    loop = asyncio.get_running_loop()
    deadline = None if close_after is None else loop.time() + close_after
    pending: asyncio.Future[T] | None = None
    try:
        while deadline is None or (left := deadline - loop.time()) > 0:
            pending = pending or asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_S if deadline is None else min(HEARTBEAT_S, left))
            if not done:
                yield None
                continue
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        await source.aclose()
