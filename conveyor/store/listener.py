"""PostgresListener: one dedicated LISTEN connection per process that reconnects.

Wake-ups must not depend on a poll interval, so the listener holds its own autocommit
connection (a pooled one would be handed back between statements and miss notifications).
When the connection drops it reconnects with backoff and then reports a synthetic wake-up
("*") on every channel, since notifications sent while it was away are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

import psycopg
import sqlalchemy as sa
from psycopg import sql

from conveyor.store.outage import RetryPauses

log = logging.getLogger("conveyor.listener")


def libpq_dsn(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresListener:
    def __init__(self, url: str, channels: Collection[str], deliver: Callable[[str, str], None]) -> None:
        """`deliver(channel, payload)` is called on the event loop for each notification."""
        self._dsn = libpq_dsn(url)
        self._channels = sorted(channels)
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="conveyor-listener")
        # Callers rely on hearing everything committed after start() returns.
        await asyncio.wait_for(self._ready.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        pauses = RetryPauses(0.1)
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._dsn, autocommit=True) as conn:
                    for channel in self._channels:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._ready.set()
                    if not first:
                        for channel in self._channels:  # anything may have happened while we were away
                            self._deliver(channel, "*")
                    first = False
                    pauses.reset()
                    async for note in conn.notifies():
                        self._deliver(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any connection failure: reconnect
                pause = pauses.next()
                log.warning("listener connection lost (%s); reconnecting in %.2fs", exc, pause)
                await asyncio.sleep(pause)
