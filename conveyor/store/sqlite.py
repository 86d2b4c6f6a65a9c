"""SqliteStore: one file, WAL, many processes on one machine.

SQLite has one writer at a time, so write transactions start with BEGIN IMMEDIATE: they take
the write lock up front (waiting up to busy_timeout) instead of failing half-way when two
processes upgrade a read lock at once. Reads use plain BEGIN and never block writers (WAL).
Notifications are delivered in process; other processes' commits are noticed by a watcher
of `PRAGMA data_version` (watcher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from conveyor.model import FINISHED, Job, Outcome, OutcomeKind, Status, utc_now
from conveyor.store.base import TOPICS, Listener
from conveyor.store.portable import SqlStore
from conveyor.store.rows import OUTCOME_STATUS, claimed_job, dumps, outcome_records
from conveyor.store.schema import UTCDateTime, audit_journal, job_counters, jobs
from conveyor.store.watcher import SqliteWatcher

BUSY_TIMEOUT_MS = 30_000

# A batch of outcomes in one statement, the batch passed as one JSON array. The guard (same
# attempt, same worker, still running) makes a completion count once. Timestamps are written
# in the text form UTCDateTime stores on SQLite.
APPLY_OUTCOMES = (
    sa.text(
        """
        UPDATE conveyor_jobs SET
            status = v.status,
            result = CASE WHEN v.finished THEN v.result ELSE conveyor_jobs.result END,
            error = CASE WHEN v.status = 'pending' THEN conveyor_jobs.error ELSE v.error END,
            completed_at = CASE WHEN v.finished THEN :now ELSE NULL END,
            run_at = COALESCE(v.run_at, conveyor_jobs.run_at),
            attempt = CASE WHEN v.status = 'pending' THEN conveyor_jobs.attempt - 1
                           ELSE conveyor_jobs.attempt END,
            worker_id = NULL,
            lease_expires_at = NULL,
            updated_at = :now
        FROM (
            SELECT value ->> '$.id' AS id, value ->> '$.attempt' AS attempt,
                   value ->> '$.status' AS status, value ->> '$.finished' AS finished,
                   value -> '$.result' AS result, value -> '$.error' AS error,
                   value ->> '$.run_at' AS run_at
            FROM json_each(:payload)
        ) AS v
        WHERE conveyor_jobs.id = v.id AND conveyor_jobs.attempt = v.attempt
          AND conveyor_jobs.worker_id = :worker_id
          AND +conveyor_jobs.status = 'running'  -- unary +: look rows up by id, not by status
        RETURNING conveyor_jobs.id, conveyor_jobs.batch_id, conveyor_jobs.status, conveyor_jobs.owner_org_id,
            conveyor_jobs.kind
        """
    )
    .bindparams(sa.bindparam("now", type_=UTCDateTime()))
    .columns(id=sa.Uuid(), batch_id=sa.Uuid(), status=sa.String(), owner_org_id=sa.String(), kind=sa.String())
)


# The claim, in SQL as SQLite takes it: rows come back as stored (text, integers) and are
# turned into jobs here, which costs a fraction of SQLAlchemy's per-column result processing.
# started_at, updated_at and lease_expires_at are the values this claim writes.
CLAIM = """
    UPDATE conveyor_jobs SET status = 'running', attempt = attempt + 1, worker_id = ?,
        started_at = ?, updated_at = ?, lease_expires_at = ?
    WHERE id IN (
        SELECT id FROM conveyor_jobs
        WHERE status = 'pending' AND queue IN ({queues})
          AND queue NOT IN (SELECT name FROM conveyor_queues WHERE paused)
        ORDER BY priority DESC, id LIMIT ?
    )
    RETURNING id, kind, queue, priority, data, attempt, max_attempts, timeout_seconds, run_at, created_at,
        cancel_requested, batch_id, schedule_id, retry_of, cache_key, idempotency_key, labels, file_info,
        owner_user_id, owner_org_id, owner_study_id, created_by
"""


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _uuid(text: str | None) -> UUID | None:
    return None if text is None else UUID(text)


def _json(text: str | None) -> Any:
    if text is None or text == "null":  # SQLAlchemy's JSON type stores None as JSON null
        return None
    return {} if text == "{}" else json.loads(text)


def _claimed(row: Any, now: datetime, lease_expires_at: datetime, worker_id: str) -> Job:
    """A claimed row as stored (text, integers) turned into the values rows.claimed_job takes."""
    (id_, kind, queue, priority, data, attempt, max_attempts, timeout_seconds, run_at, created_at, cancel_requested,
     batch_id, schedule_id, retry_of, cache_key, idempotency_key, labels, file_info, *owner) = row  # fmt: skip
    return claimed_job(
        UUID(id_), kind, queue, priority, _json(data), attempt, max_attempts, timeout_seconds,
        _time(run_at), _time(created_at), now, now, lease_expires_at, bool(cancel_requested),
        _uuid(batch_id), schedule_id, _uuid(retry_of), cache_key, idempotency_key, _json(labels), _json(file_info),
        *owner, worker_id=worker_id,
    )  # fmt: skip


def _stored_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") if value else None


def _outcome_json(o: Outcome) -> dict[str, Any]:
    status = OUTCOME_STATUS[o.kind]
    return {
        "id": o.job_id.hex,
        "attempt": o.attempt,
        "status": status.value,
        "finished": status in FINISHED,
        "result": o.result if o.kind is OutcomeKind.COMPLETED else None,
        "error": o.error,
        "run_at": _stored_time(o.run_at),
    }


def _engine(url: str, *, begin: str, synchronous: str) -> AsyncEngine:
    # hide_parameters: what a statement stores (job data, names) stays out of error messages,
    # and so out of logs.
    engine = create_async_engine(url, pool_size=5, max_overflow=10, hide_parameters=True)

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
        self._write_lock = asyncio.Lock()
        self._path = async_url.database
        self._watcher: SqliteWatcher | None = None

    async def listen(self, listener: Listener, topics: Collection[str] = TOPICS) -> None:
        await super().listen(listener, topics)
        if self._watcher is None and self._path and self._path != ":memory:":
            self._watcher = SqliteWatcher(self._path, self._on_commit_elsewhere)
            self._watcher.start()

    def _on_commit_elsewhere(self) -> None:
        # Another connection committed: it may have added work or finished a job we wait for.
        self._publish("insert", ["*"])
        self._publish("finish", ["*"])

    @property
    def notifies_across_processes(self) -> bool:
        return self._watcher is not None

    async def close(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        await super().close()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        # One writer per process at a time: connections of one process that contend for the
        # write lock would otherwise meet in SQLite's busy handler, which sleeps for
        # milliseconds. Other processes still wait there (busy_timeout).
        async with self._write_lock, self._engine.begin() as conn:
            yield conn

    async def claim_jobs(self, queues: Sequence[str], limit: int, worker_id: str, lease: timedelta) -> list[Job]:
        if limit <= 0:
            return []
        now = utc_now()
        expires = now + lease
        statement = CLAIM.format(queues=", ".join("?" * len(queues)))
        params = (worker_id, _stored_time(now), _stored_time(now), _stored_time(expires), *queues, limit)
        async with self._write() as conn:
            rows = (await conn.exec_driver_sql(statement, params)).all()
        claimed = [_claimed(row, now, expires, worker_id) for row in rows]
        claimed.sort(key=lambda j: (-j.priority, j.id))  # RETURNING keeps no order
        return claimed

    async def _apply_outcomes(
        self, conn: AsyncConnection, outcomes: Sequence[Outcome]
    ) -> list[tuple[UUID, UUID | None]]:
        applied: list[tuple[UUID, UUID | None]] = []
        for worker_id in {o.worker_id for o in outcomes}:
            payload = [_outcome_json(o) for o in outcomes if o.worker_id == worker_id]
            now = utc_now()
            rows = (
                await conn.execute(APPLY_OUTCOMES, {"payload": dumps(payload), "worker_id": worker_id, "now": now})
            ).all()
            applied.extend((r.id, r.batch_id) for r in rows)
            await self._write_counters(
                conn, [o for o in outcomes if o.worker_id == worker_id and o.counters], rows, now
            )
            if records := outcome_records([(r.id, r.status, r.owner_org_id) for r in rows], worker_id, now):
                await conn.execute(audit_journal.insert(), records)
                await self.record_job_events(conn, [(r.id, r.status, r.owner_org_id, r.kind, r.batch_id) for r in rows])
        return applied

    @staticmethod
    async def _write_counters(
        conn: AsyncConnection, outcomes: Sequence[Outcome], rows: Sequence[Any], now: datetime
    ) -> None:
        """The counters of the outcomes applied that finished their job (PostgreSQL writes them
        in its outcome statement)."""
        if not outcomes:
            return
        written = {r.id: r for r in rows if Status(r.status) in FINISHED}
        values = [
            {"job_id": o.job_id, "org_id": row.owner_org_id, "kind": row.kind, "name": name, "value": value,
             "attempt": o.attempt, "recorded_at": now}
            for o in outcomes if (row := written.get(o.job_id)) is not None
            for name, value in o.counters
        ]  # fmt: skip
        if values:
            await conn.execute(job_counters.insert(), values)

    def _now(self) -> sa.ColumnElement[Any]:
        return sa.literal(utc_now(), UTCDateTime())

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[Any]:
        return sa.literal(utc_now() + delta, UTCDateTime())

    def _seconds_between(self, start: Any, end: Any) -> sa.ColumnElement[float]:
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0

    def _minute_of(self, column: Any) -> sa.ColumnElement[Any]:
        # Timestamps are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' text (schema.UTCDateTime).
        return sa.func.substr(column, 1, 16)

    def _insert(self) -> Any:
        return sqlite_insert(jobs)
