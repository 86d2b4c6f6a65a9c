"""PostgresStore: any number of processes on any number of machines.

Claims lock the rows they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over
each other's rows instead of waiting. Leases are measured on the database's clock, the one
clock all machines share. Inserts, cancels and finishes NOTIFY within their transaction; one
LISTEN connection per process hands them on (see listener.py).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conveyor.model import FINISHED, Outcome, OutcomeKind
from conveyor.store.base import Listener
from conveyor.store.listener import PostgresListener
from conveyor.store.portable import OUTCOME_STATUS, SqlStore, dumps
from conveyor.store.schema import jobs

CHANNEL = "conveyor"

# One statement for a whole batch of outcomes. The guard (same attempt, same worker, still
# running) is what makes a completion count once: a worker whose lease was rescued away
# matches no row. Rows are locked in id order first (`locked`), the order the heartbeat locks
# in too, so that the two can never deadlock over one worker's rows. The finished ids are
# announced in the same statement, 100 to a NOTIFY (payloads hold at most 8000 bytes); the
# notify CTE is read by the outer select, or PostgreSQL would skip it.
APPLY_OUTCOMES = sa.text(
    """
    WITH locked AS MATERIALIZED (
        SELECT id FROM conveyor_jobs WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
    ),
    done AS (
        UPDATE conveyor_jobs AS j SET
            status = v.status,
            result = CASE WHEN v.finished THEN v.result ELSE j.result END,
            error = CASE WHEN v.status = 'pending' THEN j.error ELSE v.error END,
            completed_at = CASE WHEN v.finished THEN now() ELSE NULL END,
            run_at = COALESCE(v.run_at, j.run_at),
            attempt = CASE WHEN v.status = 'pending' THEN j.attempt - 1 ELSE j.attempt END,
            worker_id = NULL,
            lease_expires_at = NULL,
            updated_at = now()
        FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
                    CAST(:finished AS bool[]), CAST(:results AS jsonb[]), CAST(:errors AS jsonb[]),
                    CAST(:run_ats AS timestamptz[]))
             AS v(id, attempt, status, finished, result, error, run_at)
        WHERE j.id = v.id AND j.id IN (SELECT id FROM locked) AND j.attempt = v.attempt
          AND j.worker_id = :worker_id AND j.status = 'running'
        RETURNING j.id
    ),
    numbered AS (SELECT id, (row_number() OVER ()) / 100 AS chunk FROM done),
    chunks AS (SELECT string_agg(id::text, ',') AS ids FROM numbered GROUP BY chunk),
    notified AS (SELECT pg_notify(:channel, 'finish:' || ids) FROM chunks)
    SELECT done.id, (SELECT count(*) FROM notified) AS notified FROM done
    """
)

HEARTBEAT = sa.text(
    """
    WITH mine AS MATERIALIZED (
        SELECT id FROM conveyor_jobs WHERE worker_id = :worker_id AND status = 'running'
        ORDER BY id FOR UPDATE
    )
    UPDATE conveyor_jobs AS j SET lease_expires_at = now() + CAST(:lease AS interval)
    FROM mine WHERE j.id = mine.id
    RETURNING j.id, j.attempt, j.cancel_requested
    """
)

# Bulk insert as one statement: columns travel as arrays (one parameter each, whatever the
# row count), ON CONFLICT skips known idempotency keys, and the NOTIFY for the queues that got
# pending jobs rides in the same statement. The notify CTE is referenced from the select list
# because PostgreSQL skips a SELECT CTE that nothing reads.
INSERT_JOBS = sa.text(
    """
    WITH ins AS (
        INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts,
            timeout_seconds, run_at, created_at, updated_at, batch_id, schedule_id, retry_of,
            cache_key, idempotency_key, labels, file_info, owner_user_id, owner_org_id,
            owner_study_id, created_by)
        SELECT * FROM unnest(
            CAST(:id AS uuid[]), CAST(:kind AS text[]), CAST(:queue AS text[]),
            CAST(:status AS text[]), CAST(:priority AS smallint[]), CAST(:data AS jsonb[]),
            CAST(:max_attempts AS int[]), CAST(:timeout_seconds AS float8[]),
            CAST(:run_at AS timestamptz[]), CAST(:created_at AS timestamptz[]),
            CAST(:created_at AS timestamptz[]), CAST(:batch_id AS uuid[]),
            CAST(:schedule_id AS text[]), CAST(:retry_of AS uuid[]), CAST(:cache_key AS text[]),
            CAST(:idempotency_key AS text[]), CAST(:labels AS jsonb[]), CAST(:file_info AS jsonb[]),
            CAST(:owner_user_id AS text[]), CAST(:owner_org_id AS text[]),
            CAST(:owner_study_id AS text[]), CAST(:created_by AS text[]))
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, queue, status
    ), notified AS (
        SELECT count(pg_notify(:channel, 'insert:' || q)) AS n
        FROM (SELECT DISTINCT queue AS q FROM ins WHERE status = 'pending') AS ready
    )
    SELECT ins.id, (SELECT n FROM notified) AS notified FROM ins
    """
)

INSERT_JOBS_RAW = re.sub(r":(\w+)", r"%(\1)b", INSERT_JOBS.text)  # %b: binary parameters

_ARRAY_COLUMNS = (
    "id", "kind", "queue", "status", "priority", "max_attempts", "timeout_seconds", "run_at",
    "created_at", "batch_id", "schedule_id", "retry_of", "cache_key", "idempotency_key",
    "owner_user_id", "owner_org_id", "owner_study_id", "created_by",
)  # fmt: skip
_JSON_COLUMNS = ("data", "labels", "file_info")

COPY_THRESHOLD = 100  # rows; below it one INSERT statement is as quick
_COPY_COLUMNS = (
    ("id", "uuid"), ("kind", "text"), ("queue", "text"), ("status", "text"), ("priority", "int2"),
    ("data", "jsonb"), ("max_attempts", "int4"), ("timeout_seconds", "float8"), ("run_at", "timestamptz"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"), ("batch_id", "uuid"),
    ("schedule_id", "text"), ("retry_of", "uuid"), ("cache_key", "text"), ("labels", "jsonb"),
    ("file_info", "jsonb"), ("owner_user_id", "text"), ("owner_org_id", "text"),
    ("owner_study_id", "text"), ("created_by", "text"),
)  # fmt: skip
COPY_JOBS = f"COPY conveyor_jobs ({', '.join(n for n, _ in _COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"

NOTIFY = sa.text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def async_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class PostgresStore(SqlStore):
    dialect = "postgresql"
    _outcomes_notify = True

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size)
        super().__init__(engine, url=url)
        self._listener: PostgresListener | None = None

    async def listen(self, listener: Listener) -> None:
        await super().listen(listener)
        if self._listener is None:
            self._listener = PostgresListener(self._url, CHANNEL, self._publish_raw)
            await self._listener.start()

    def _publish_raw(self, payload: str) -> None:
        topic, _, rest = payload.partition(":")
        self._publish(topic, rest.split(","))

    @property
    def notifies_across_processes(self) -> bool:
        return True

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        await super().close()

    @contextlib.asynccontextmanager
    async def _single_write(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    def _now(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[Any]:
        return sa.func.now() + sa.literal(delta, sa.Interval())

    def _insert(self) -> Any:
        return pg_insert(jobs)

    async def _insert_rows(self, rows: list[dict[str, Any]]) -> set[UUID]:
        if len(rows) >= COPY_THRESHOLD and all(r["idempotency_key"] is None for r in rows):
            return await self._copy_rows(rows)
        params: dict[str, Any] = {name: [r[name] for r in rows] for name in _ARRAY_COLUMNS}
        for name in _JSON_COLUMNS:
            params[name] = [None if r[name] is None else Jsonb(r[name], dumps) for r in rows]
        params["channel"] = CHANNEL
        # One statement is atomic on its own: autocommit saves the BEGIN and COMMIT round trips.
        # Binary parameters (%b): psycopg dumps arrays in C that way, and in Python as text.
        async with self._engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.set_autocommit(True)
            try:
                cursor = await raw.execute(INSERT_JOBS_RAW, params)
                return {row[0] for row in await cursor.fetchall()}
            finally:
                await raw.set_autocommit(False)

    async def _copy_rows(self, rows: list[dict[str, Any]]) -> set[UUID]:
        """COPY in binary: several times faster than INSERT for big batches (no conflicts possible)."""
        ready = sorted({r["queue"] for r in rows if r["status"] == "pending"})
        async with self._engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            async with raw.transaction():
                async with raw.cursor().copy(COPY_JOBS) as copy:
                    copy.set_types([t for _name, t in _COPY_COLUMNS])
                    for r in rows:
                        await copy.write_row(
                            [
                                Jsonb(r[name], dumps) if t == "jsonb" and r[name] is not None else r[name]
                                for name, t in _COPY_COLUMNS
                            ]
                        )
                payloads = [f"insert:{q}" for q in ready]
                await raw.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, payloads))
        return {r["id"] for r in rows}

    async def heartbeat(self, worker_id: str, lease: timedelta) -> dict[UUID, tuple[int, bool]]:
        async with self._single_write() as conn:
            rows = (await conn.execute(HEARTBEAT, {"worker_id": worker_id, "lease": lease})).all()
        return {r.id: (r.attempt, bool(r.cancel_requested)) for r in rows}

    def _lock_skipping(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update(skip_locked=True)

    async def _notify(self, conn: AsyncConnection, topic: str, payloads: Sequence[str]) -> None:
        if not payloads:
            return
        # A NOTIFY payload holds at most 8000 bytes: ids go in chunks of 100 (3,700 bytes).
        chunks = [f"{topic}:" + ",".join(payloads[i : i + 100]) for i in range(0, len(payloads), 100)]
        await conn.execute(NOTIFY, {"channel": CHANNEL, "payloads": chunks})

    async def _apply_outcomes(self, conn: AsyncConnection, outcomes: Sequence[Outcome]) -> list[UUID]:
        by_worker: dict[str, list[Outcome]] = {}
        for o in outcomes:
            by_worker.setdefault(o.worker_id, []).append(o)
        applied: list[UUID] = []
        for worker_id, group in by_worker.items():
            statuses = [OUTCOME_STATUS[o.kind] for o in group]
            rows = await conn.execute(
                APPLY_OUTCOMES,
                {
                    "channel": CHANNEL,
                    "ids": [o.job_id for o in group],
                    "attempts": [o.attempt for o in group],
                    "statuses": [s.value for s in statuses],
                    "finished": [s in FINISHED for s in statuses],
                    "results": [dumps(o.result) if o.kind is OutcomeKind.COMPLETED else None for o in group],
                    "errors": [dumps(o.error) if o.error is not None else None for o in group],
                    "run_ats": [o.run_at for o in group],
                    "worker_id": worker_id,
                },
            )
            applied.extend(r.id for r in rows)
        return applied
