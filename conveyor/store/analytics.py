"""Roll-ups over one organisation's finished jobs in a time range: job counters summed, and
per job type the outcomes, retries and run times (a mixin of SqlStore).

Every figure is computed by the database. A job belongs to the range when it finished in it
(start <= completed_at < end); its counters carry the same time. Run times are those of the
attempt that finished the job (started -> completed) over the jobs that ran to an end
(completed, failed, timed out), as the alerts measure them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.model import Status
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import job_counters, jobs

RAN = (Status.COMPLETED.value, Status.FAILED.value, Status.TIMEOUT.value)
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True, slots=True)
class CounterSum:
    name: str
    kind: str
    total: float
    jobs: int  # jobs that reported the counter


@dataclass(frozen=True, slots=True)
class KindRollUp:
    """One job type's jobs that finished in the range."""

    kind: str
    completed: int
    failed: int
    timeout: int
    cancelled: int
    retries: int  # attempts beyond the first, summed
    retried_jobs: int  # jobs that needed more than one attempt
    mean_ms: float | None  # run time over the jobs that ran to an end
    p50_ms: float | None
    p95_ms: float | None

    @property
    def ran(self) -> int:
        return self.completed + self.failed + self.timeout


class JobAnalytics(StoreHooks):
    """Roll-ups for an organisation and a range (mixed into SqlStore)."""

    def _seconds_between(self, start: Any, end: Any) -> sa.ColumnElement[float]:
        raise NotImplementedError

    async def counter_sums(
        self, org_id: str | None, start: datetime, end: datetime, names: Sequence[str]
    ) -> list[CounterSum]:
        """The counters named, summed per name and job type over the range."""
        c = job_counters.c
        stmt = (
            sa.select(c.name, c.kind, sa.func.sum(c.value), sa.func.count(sa.distinct(c.job_id)))
            .where(_org(c.org_id, org_id), c.name.in_(list(names)), c.recorded_at >= start, c.recorded_at < end)
            .group_by(c.name, c.kind)
            .order_by(c.name, c.kind)
        )
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [CounterSum(name, kind, float(total), int(n)) for name, kind, total, n in rows]

    async def kind_roll_ups(self, org_id: str | None, start: datetime, end: datetime) -> list[KindRollUp]:
        """Per job type, its jobs that finished in the range: outcomes, retries, run times."""
        c = jobs.c
        in_range = (_org(c.owner_org_id, org_id), c.completed_at >= start, c.completed_at < end)
        counts = (
            sa.select(
                c.kind,
                *(sa.func.count().filter(c.status == s.value) for s in _COUNTED),
                sa.func.coalesce(sa.func.sum(c.attempt - 1).filter(c.attempt > 1), 0),
                sa.func.count().filter(c.attempt > 1),
            )
            .where(*in_range)
            .group_by(c.kind)
        )
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(counts)).all()
            times = await self._run_times(conn, in_range)
        return [
            KindRollUp(kind, int(done), int(failed), int(timeout), int(cancelled), int(retries), int(retried),
                       *times.get(kind, (None, None, None)))
            for kind, done, failed, timeout, cancelled, retries, retried in sorted(rows)
        ]  # fmt: skip

    async def _run_times(
        self, conn: Any, in_range: tuple[sa.ColumnElement[bool], ...]
    ) -> dict[str, tuple[float | None, ...]]:
        """kind -> (mean, p50, p95) in ms, interpolated between closest ranks (PostgreSQL's
        percentile_cont; SQLite, which has none, ranks the rows with window functions)."""
        c = jobs.c
        ms = self._seconds_between(c.started_at, c.completed_at) * 1000.0
        ran = (*in_range, c.status.in_(RAN), c.started_at.isnot(None))
        if self.dialect == "postgresql":
            stmt = (
                sa.select(c.kind, sa.func.avg(ms), *(sa.func.percentile_cont(q).within_group(ms) for q in QUANTILES))
                .where(*ran)
                .group_by(c.kind)
            )
        else:
            ranked = (
                sa.select(
                    c.kind.label("kind"),
                    ms.label("ms"),
                    (sa.func.row_number().over(partition_by=c.kind, order_by=ms) - 1).label("rank"),
                    sa.func.count().over(partition_by=c.kind).label("n"),
                )
                .where(*ran)
                .subquery()
            )
            stmt = sa.select(
                ranked.c.kind, sa.func.avg(ranked.c.ms), *(_sqlite_percentile(ranked, q) for q in QUANTILES)
            ).group_by(ranked.c.kind)
        rows = (await conn.execute(stmt)).all()
        return {kind: tuple(None if v is None else float(v) for v in values) for kind, *values in rows}


_COUNTED = (Status.COMPLETED, Status.FAILED, Status.TIMEOUT, Status.CANCELLED)


def _org(column: Any, org_id: str | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if org_id is None else column == org_id  # type: ignore[no-any-return]


def _sqlite_percentile(ranked: Any, q: float) -> sa.ColumnElement[float]:
    """Linear interpolation between the values at ranks floor(q·(n-1)) and the one after (CAST
    truncates on SQLite, and q·(n-1) is never negative)."""
    position = q * (ranked.c.n - 1)
    low_rank = sa.cast(position, sa.Integer)
    low = sa.func.max(sa.case((ranked.c.rank == low_rank, ranked.c.ms)))
    high = sa.func.coalesce(sa.func.max(sa.case((ranked.c.rank == low_rank + 1, ranked.c.ms))), low)
    fraction = q * (sa.func.max(ranked.c.n) - 1) - sa.cast(q * (sa.func.max(ranked.c.n) - 1), sa.Integer)
    return low + (high - low) * fraction
