"""The job type the chaos run drains: `chaos.work` sleeps a while, then notes that it ran.

Imported by the worker processes (CONVEYOR_JOBTYPES=bench.chaos_jobs:jobtypes) and by the
chaos script itself (to enqueue). Each body that runs to its end inserts a row into
`chaos_executions` over its own connection, committed at once, before the worker records the
completion: a job whose row appears twice was executed twice (allowed, at-least-once), which
the chaos script reports next to the completions conveyor recorded (at most one allowed).
"""

from __future__ import annotations

import asyncio
import logging
import os

import psycopg
import sqlalchemy as sa
from pydantic import BaseModel, Field

from conveyor import Context, Registry

QUEUE = "chaos"
EXECUTIONS_TABLE = "chaos_executions"
# The worker log line of an execution whose row could not be inserted (bench.chaos counts them).
UNRECORDED = "could not record its execution"

jobtypes = Registry()
log = logging.getLogger("bench.chaos_jobs")


class WorkInput(BaseModel):
    ms: int = Field(ge=0, le=60_000, description="how long the job works, in milliseconds")


class _ExecutionLog:
    """One autocommit connection per worker process, opened on first use and shared by its jobs
    (psycopg serialises their statements), opened again after a failure."""

    def __init__(self) -> None:
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def record(self, ctx: Context) -> None:
        conn: psycopg.AsyncConnection | None = None
        try:
            conn = await self._connection()
            await conn.execute(
                f"INSERT INTO {EXECUTIONS_TABLE} (job_id, attempt, pid) VALUES (%s, %s, %s)",
                (ctx.job_id, ctx.attempt, os.getpid()),
            )
        except psycopg.Error:
            # The count of executions is information only: failing the job over it would change
            # what is being measured (and its retry would wait minutes). The traceback goes to
            # the worker's log, where the chaos script counts it.
            log.exception("job %s: %s", ctx.job_id, UNRECORDED)
            if conn is not None:
                await self._discard(conn)

    async def _connection(self) -> psycopg.AsyncConnection:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                url = sa.make_url(os.environ["CONVEYOR_DATABASE_URL"]).set(drivername="postgresql")
                self._conn = await psycopg.AsyncConnection.connect(
                    url.render_as_string(hide_password=False), autocommit=True
                )
            return self._conn

    async def _discard(self, failed: psycopg.AsyncConnection) -> None:
        # Only the connection that failed: another job may have opened its replacement
        # already and be waiting on it (closing a socket under a waiter leaves it waiting).
        async with self._lock:
            if self._conn is failed:
                self._conn = None
        await failed.close()


_executions = _ExecutionLog()


@jobtypes.job_type("chaos.work", queue=QUEUE)
async def work(ctx: Context, data: WorkInput) -> dict[str, int]:
    await asyncio.sleep(data.ms / 1000)
    await _executions.record(ctx)
    return {"ms": data.ms, "pid": os.getpid()}
