"""Aggregates over jobs for stats, queues and health: counts, ages, recent throughput.

A mixin of SqlStore. Every query takes a JobFilter, so that a caller's visibility narrows
what is counted exactly as it narrows what is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.model import FINISHED, JobFilter, Status
from conveyor.store.schema import jobs

FINISHED_VALUES = tuple(s.value for s in FINISHED)

GROUPABLE = {
    "status": jobs.c.status,
    "kind": jobs.c.kind,
    "priority": jobs.c.priority,
    "queue": jobs.c.queue,
}


@dataclass(frozen=True, slots=True)
class FinishedGroup:
    """Jobs of one group (a queue, a kind, …) that finished in a window."""

    key: str
    completed: int
    failed: int  # failed and timed out
    cancelled: int
    average_seconds: float | None  # started -> completed, over completed jobs


@dataclass(frozen=True, slots=True)
class MinuteCounts:
    """Jobs that finished within one minute (UTC, from its first second)."""

    minute: datetime
    completed: int
    failed: int  # failed and timed out
    cancelled: int


class JobStatistics:
    _read_engine: AsyncEngine

    def _filter(self, where: JobFilter) -> list[sa.ColumnElement[bool]]:  # provided by SqlStore
        raise NotImplementedError

    def _seconds_between(self, start: Any, end: Any) -> sa.ColumnElement[float]:
        raise NotImplementedError

    def _minute_of(self, column: Any) -> sa.ColumnElement[Any]:
        """The minute a timestamp column falls in (a dialect's own expression)."""
        raise NotImplementedError

    async def count_grouped(self, where: JobFilter, by: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
        """Job counts grouped by several columns (e.g. queue and status)."""
        columns = [GROUPABLE[name] for name in by]
        stmt = sa.select(*columns, sa.func.count()).where(*self._filter(where)).group_by(*columns)
        async with self._read_engine.connect() as conn:
            return {tuple(row[:-1]): row[-1] for row in await conn.execute(stmt)}

    async def oldest_pending(self, where: JobFilter) -> dict[str, datetime]:
        """Per queue, when its oldest pending job became due (run_at: a retried or delayed job
        waits from then, not from its creation)."""
        c = jobs.c
        stmt = (
            sa.select(c.queue, sa.func.min(c.run_at))
            .where(c.status == Status.PENDING.value, *self._filter(where))
            .group_by(c.queue)
        )
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {queue: jobs.c.run_at.type.process_result_value(at, conn.dialect) for queue, at in rows}

    async def finished_since(self, where: JobFilter, since: datetime, *, by: str) -> list[FinishedGroup]:
        c = jobs.c
        key = GROUPABLE[by]
        duration = self._seconds_between(c.started_at, c.completed_at)
        completed = c.status == Status.COMPLETED.value
        stmt = (
            sa.select(
                key,
                sa.func.count().filter(completed),
                sa.func.count().filter(c.status.in_([Status.FAILED.value, Status.TIMEOUT.value])),
                sa.func.count().filter(c.status == Status.CANCELLED.value),
                sa.func.avg(duration).filter(completed, c.started_at.isnot(None)),
            )
            .where(c.completed_at >= since, *self._filter(where))
            .group_by(key)
        )
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [
            FinishedGroup(str(k), done, failed, cancelled, float(avg) if avg is not None else None)
            for k, done, failed, cancelled, avg in rows
        ]

    async def finished_by_minute(self, where: JobFilter, since: datetime) -> list[MinuteCounts]:
        """Per minute since `since` (oldest first; minutes without a finished job are left out):
        how many jobs completed, failed and were cancelled in it."""
        c = jobs.c
        minute = self._minute_of(c.completed_at).label("minute")
        stmt = (
            sa.select(
                minute,
                sa.func.count().filter(c.status == Status.COMPLETED.value),
                sa.func.count().filter(c.status.in_([Status.FAILED.value, Status.TIMEOUT.value])),
                sa.func.count().filter(c.status == Status.CANCELLED.value),
            )
            .where(c.completed_at >= since, c.status.in_(FINISHED_VALUES), *self._filter(where))
            .group_by(minute)
            .order_by(minute)
        )
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [MinuteCounts(minute_value(m), done, failed, cancelled) for m, done, failed, cancelled in rows]

    async def running_now(self, where: JobFilter) -> int:
        stmt = sa.select(sa.func.count()).where(jobs.c.status == Status.RUNNING.value, *self._filter(where))
        async with self._read_engine.connect() as conn:
            return (await conn.execute(stmt)).scalar_one()

    async def peak_concurrency(self, where: JobFilter, since: datetime) -> int:
        """The most jobs that ran at once since `since` (a sweep over start and end times)."""
        c = jobs.c
        scope = self._filter(where)
        recent = sa.or_(c.completed_at >= since, c.status == Status.RUNNING.value)
        # Starts before `since` only add up to the count at `since`; no end precedes it.
        starts = sa.select(c.started_at.label("t"), sa.literal(1).label("d")).where(
            c.started_at.isnot(None), recent, *scope
        )
        ends = sa.select(c.completed_at.label("t"), sa.literal(-1).label("d")).where(
            c.started_at.isnot(None), c.completed_at >= since, *scope
        )
        events = sa.union_all(starts, ends).subquery()
        running = sa.func.sum(events.c.d).over(order_by=(events.c.t, events.c.d)).label("n")
        stmt = sa.select(sa.func.max(sa.select(running).subquery().c.n))
        async with self._read_engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar() or 0)


def minute_value(value: Any) -> datetime:
    """A minute as a dialect hands it back (SQLite: text), as aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
