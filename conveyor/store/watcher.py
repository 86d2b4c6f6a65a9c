"""SqliteWatcher: notices other connections' commits to a SQLite file, for wake-ups.

SQLite has no LISTEN/NOTIFY. `PRAGMA data_version` changes whenever another connection (in
this process or another) commits, and reading it takes no lock and a few microseconds, so a
task on the event loop reads it every few milliseconds (no thread: a thread waking that often
would contend for the GIL with the loop) and tells idle workers and waiters that something
may have changed, at a fraction of the cost of polling with claims, which take the write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger("conveyor.watcher")
POLL_SECONDS = 0.005


class SqliteWatcher:
    def __init__(self, path: str, on_change: Callable[[], None]) -> None:
        self._path = path
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="conveyor-sqlite-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        conn = sqlite3.connect(self._path)
        try:
            seen = conn.execute("PRAGMA data_version").fetchone()[0]
            while True:
                await asyncio.sleep(POLL_SECONDS)
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    seen = version
                    self._on_change()
        except sqlite3.Error as exc:
            log.warning("SQLite watcher stopped (%s); workers fall back to polling", exc)
        finally:
            conn.close()
