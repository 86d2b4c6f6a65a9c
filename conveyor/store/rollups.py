"""Statistics from PostgreSQL's roll-up tables: deltas appended by the statements that store
jobs (migration 0017) and by triggers on every status change and delete (migration 0003).

Counts by status, kind, queue and priority — for any visibility — are sums over
conveyor_job_counts instead of scans of a million jobs; recent performance is read from the
per-minute rows of conveyor_job_minutes (so windows are whole minutes). A filter the roll-ups
cannot answer (dates, labels, a batch) falls back to counting the jobs table.

Maintenance folds the appended deltas (`compact_rollups`), one process at a time;
`recount_rollups` counts the jobs afresh where the counts drifted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.model import JobFilter, Status
from conveyor.store.filters import COUNT_COLUMNS, MINUTE_COLUMNS, clauses_for
from conveyor.store.schema import job_counts, job_minutes
from conveyor.store.statistics import FinishedGroup, MinuteCounts, minute_value

# Keys of the advisory lock that lets one process fold at a time (arbitrary constants).
COMPACT_LOCK = 7_412_202_612
# Deltas for a minute keep arriving while jobs of that minute are still being recorded.
RECENT_MINUTES = "10 minutes"
KEEP_MINUTES = "30 days"

FINISHED_STATUSES = (Status.COMPLETED.value, Status.FAILED.value, Status.CANCELLED.value, Status.TIMEOUT.value)

COMPACT = [
    """
    WITH gone AS (DELETE FROM conveyor_job_counts RETURNING *)
    INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)
    SELECT org_id, user_id, study_id, kind, queue, priority, status, sum(n) FROM gone
    GROUP BY org_id, user_id, study_id, kind, queue, priority, status HAVING sum(n) <> 0
    """,
    # A sample of what runs now, for each owner: the minute's peak is the largest sample.
    """
    INSERT INTO conveyor_job_minutes (minute, org_id, user_id, study_id, kind, queue, status, n, seconds, running_peak)
    SELECT date_trunc('minute', now()), org_id, user_id, study_id, kind, queue, 'running', 0, 0, sum(n)
    FROM conveyor_job_counts WHERE status = 'running'
    GROUP BY org_id, user_id, study_id, kind, queue HAVING sum(n) > 0
    """,
    # constants only (bandit B608)
    f"""
    WITH gone AS (
        DELETE FROM conveyor_job_minutes
        WHERE minute >= date_trunc('minute', now()) - interval '{RECENT_MINUTES}' RETURNING *
    )
    INSERT INTO conveyor_job_minutes (minute, org_id, user_id, study_id, kind, queue, status, n, seconds, running_peak)
    SELECT minute, org_id, user_id, study_id, kind, queue, status, sum(n), sum(seconds), max(running_peak)
    FROM gone GROUP BY minute, org_id, user_id, study_id, kind, queue, status
    """,  # nosec B608
    # a constant interval (bandit B608)
    f"DELETE FROM conveyor_job_minutes WHERE minute < now() - interval '{KEEP_MINUTES}'",  # nosec B608
]


# A count's row, and the jobs' columns it counts by (the store's inserts use them too).
COUNT_INTO = "INSERT INTO conveyor_job_counts (org_id, user_id, study_id, kind, queue, priority, status, n)"
COUNT_KEYS = "owner_org_id, owner_user_id, owner_study_id, kind, queue, priority, status"

# The job counts afresh from the jobs table. Run in a REPEATABLE READ transaction after
# deleting the deltas its snapshot sees: every delta committed by then is replaced by the
# count of the jobs as they were then, and deltas committed later (by transactions the
# snapshot does not see) stay and add to it, so nothing that happens meanwhile is lost.
# constants only (bandit B608)
RECOUNT = f"{COUNT_INTO} SELECT {COUNT_KEYS}, count(*) FROM conveyor_jobs GROUP BY {COUNT_KEYS}"  # nosec B608


class PostgresRollups:
    """Mixed into PostgresStore, ahead of SqlStore: answers from the roll-ups where it can."""

    async def count_grouped(self, where: JobFilter, by: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
        clauses = clauses_for(where, COUNT_COLUMNS)
        if clauses is None:
            return await super().count_grouped(where, by)  # type: ignore[misc, no-any-return]
        columns = [job_counts.c[name] for name in by]
        total = sa.func.sum(job_counts.c.n)
        stmt = sa.select(*columns, total).where(*clauses).group_by(*columns).having(total != 0)
        async with self._read_engine.connect() as conn:  # type: ignore[attr-defined]
            return {tuple(row[:-1]): int(row[-1]) for row in await conn.execute(stmt)}

    async def _count_matching(self, conn: AsyncConnection, where: JobFilter) -> int:
        clauses = clauses_for(where, COUNT_COLUMNS)
        if clauses is None:
            return await super()._count_matching(conn, where)  # type: ignore[misc, no-any-return]
        stmt = sa.select(sa.func.coalesce(sa.func.sum(job_counts.c.n), 0)).where(*clauses)
        return int((await conn.execute(stmt)).scalar_one())

    async def finished_since(self, where: JobFilter, since: datetime, *, by: str) -> list[FinishedGroup]:
        clauses = clauses_for(where, MINUTE_COLUMNS)
        if clauses is None or by not in ("status", "kind", "queue"):
            return await super().finished_since(where, since, by=by)  # type: ignore[misc, no-any-return]
        m = job_minutes.c
        key = m[by]
        completed = m.status == Status.COMPLETED.value
        stmt = (
            sa.select(
                key,
                sa.func.coalesce(sa.func.sum(m.n).filter(completed), 0),
                sa.func.coalesce(sa.func.sum(m.n).filter(m.status.in_([Status.FAILED.value, Status.TIMEOUT.value])), 0),
                sa.func.coalesce(sa.func.sum(m.n).filter(m.status == Status.CANCELLED.value), 0),
                sa.func.sum(m.seconds).filter(completed),
            )
            .where(m.minute >= sa.func.date_trunc("minute", since), m.status.in_(FINISHED_STATUSES), *clauses)
            .group_by(key)
        )
        async with self._read_engine.connect() as conn:  # type: ignore[attr-defined]
            rows = (await conn.execute(stmt)).all()
        out = []
        for k, done, failed, cancelled, seconds in rows:
            done = int(done)
            average = float(seconds) / done if done and seconds is not None else None
            out.append(FinishedGroup(str(k), int(done), int(failed), int(cancelled), average))
        return out

    async def finished_by_minute(self, where: JobFilter, since: datetime) -> list[MinuteCounts]:
        clauses = clauses_for(where, MINUTE_COLUMNS)
        if clauses is None:
            return await super().finished_by_minute(where, since)  # type: ignore[misc, no-any-return]
        m = job_minutes.c

        def total(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
            return sa.func.coalesce(sa.func.sum(m.n).filter(condition), 0)

        stmt = (
            sa.select(
                m.minute,
                total(m.status == Status.COMPLETED.value),
                total(m.status.in_([Status.FAILED.value, Status.TIMEOUT.value])),
                total(m.status == Status.CANCELLED.value),
            )
            .where(m.minute >= sa.func.date_trunc("minute", since), m.status.in_(FINISHED_STATUSES), *clauses)
            .group_by(m.minute)
            .order_by(m.minute)
        )
        async with self._read_engine.connect() as conn:  # type: ignore[attr-defined]
            rows = (await conn.execute(stmt)).all()
        return [MinuteCounts(minute_value(t), int(a), int(b), int(c)) for t, a, b, c in rows]

    async def peak_concurrency(self, where: JobFilter, since: datetime) -> int:
        clauses = clauses_for(where, MINUTE_COLUMNS)
        if clauses is None:
            return await super().peak_concurrency(where, since)  # type: ignore[misc, no-any-return]
        m = job_minutes.c
        # Samples are taken every few seconds and miss short jobs; a minute in which a job
        # finished had at least one running, so the peak is at least 1 then (a lower bound).
        sampled = sa.func.coalesce(sa.func.sum(m.running_peak).filter(m.status == Status.RUNNING.value), 0)
        finished_any = sa.case(
            (sa.func.coalesce(sa.func.sum(m.n).filter(m.status != Status.RUNNING.value), 0) > 0, 1), else_=0
        )
        per_minute = (
            sa.select(sa.func.greatest(sampled, finished_any).label("peak"))
            .where(m.minute >= sa.func.date_trunc("minute", since), *clauses)
            .group_by(m.minute)
            .subquery()
        )
        async with self._read_engine.connect() as conn:  # type: ignore[attr-defined]
            return int((await conn.execute(sa.select(sa.func.max(per_minute.c.peak)))).scalar() or 0)

    async def recount_rollups(self) -> int:
        async with self._engine.connect() as conn:  # type: ignore[attr-defined]
            # The fold lock first, for the session: the transaction's snapshot must be taken
            # after any fold has committed (a fold moves the rows this one deletes).
            await conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": COMPACT_LOCK})
            await conn.commit()
            try:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    await conn.execute(sa.text("DELETE FROM conveyor_job_counts"))
                    groups = (await conn.execute(sa.text(RECOUNT))).rowcount
            finally:
                await conn.execution_options(isolation_level="READ COMMITTED")
                await conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": COMPACT_LOCK})
                await conn.commit()
        return int(groups)

    async def compact_rollups(self) -> None:
        async with self._engine.begin() as conn:  # type: ignore[attr-defined]
            locked = (await conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": COMPACT_LOCK})).scalar()
            if not locked:
                return  # another process is folding right now
            for statement in COMPACT:
                await conn.execute(sa.text(statement))
