"""PostgresStore: any number of processes on any number of machines.

Claims lock the rows they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over
each other's rows instead of waiting. Leases are measured on the database's clock, the one
clock all machines share. Inserts, cancels and finishes NOTIFY within their transaction; one
LISTEN connection per process hands them on (see listener.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conveyor.model import FINISHED, Outcome, OutcomeKind
from conveyor.store.base import Listener
from conveyor.store.listener import PostgresListener
from conveyor.store.portable import _OUTCOME_STATUS, SqlStore, dumps
from conveyor.store.schema import jobs

CHANNEL = "conveyor"

# One statement for a whole batch of outcomes. The guard (same attempt, same worker, still
# running) is what makes a completion count once: a worker whose lease was rescued away
# matches no row.
APPLY_OUTCOMES = sa.text(
    """
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
    WHERE j.id = v.id AND j.attempt = v.attempt AND j.worker_id = :worker_id
      AND j.status = 'running'
    RETURNING j.id
    """
)

NOTIFY = sa.text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def async_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class PostgresStore(SqlStore):
    dialect = "postgresql"

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

    def _now(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[Any]:
        return sa.func.now() + sa.literal(delta, sa.Interval())

    def _insert(self) -> Any:
        return pg_insert(jobs)

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
            statuses = [_OUTCOME_STATUS[o.kind] for o in group]
            rows = await conn.execute(
                APPLY_OUTCOMES,
                {
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
