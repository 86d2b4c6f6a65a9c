"""SqliteStore: one file, WAL, many processes on one machine.

SQLite has one writer at a time, so write transactions start with BEGIN IMMEDIATE: they take
the write lock up front (waiting up to busy_timeout) instead of failing half-way when two
processes upgrade a read lock at once. Reads use plain BEGIN and never block writers (WAL).
Notifications are delivered in process; other processes find new work by polling.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from conveyor.model import utc_now
from conveyor.store.portable import SqlStore
from conveyor.store.schema import UTCDateTime, jobs

BUSY_TIMEOUT_MS = 30_000


def _engine(url: str, *, begin: str, synchronous: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=5, max_overflow=10)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # pysqlite's own BEGIN handling is off: we send ours
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, url: str, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown SQLite synchronous mode {synchronous!r}")
        async_url = sa.make_url(url).set(drivername="sqlite+aiosqlite")
        if async_url.database and async_url.database != ":memory:":
            Path(async_url.database).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(
            _engine(str(async_url), begin="BEGIN IMMEDIATE", synchronous=synchronous),
            _engine(str(async_url), begin="BEGIN", synchronous=synchronous),
            url=url,
        )

    def _now(self) -> sa.ColumnElement[Any]:
        return sa.literal(utc_now(), UTCDateTime())

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[Any]:
        return sa.literal(utc_now() + delta, UTCDateTime())

    def _insert(self) -> Any:
        return sqlite_insert(jobs)
