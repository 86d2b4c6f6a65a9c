"""Schedules and leader leases: the scheduler's tables (a mixin of SqlStore, portable SQL).

Two guarantees live here, both decided by the database rather than by timing:
- one leader: `elect_leader` takes or renews a lease row in one atomic upsert, on the
  database's clock, so any number of processes agree on who holds it and a dead holder is
  replaced once its lease runs out;
- one job per tick: `fire_schedule` moves a schedule's next_run_at with a compare-and-set
  and inserts the ticks' jobs in the same transaction, each under its tick's idempotency key.
  Two schedulers that fire the same tick (a leader paused past its lease, a race at a
  hand-over) cannot both succeed: the second finds next_run_at moved and writes nothing, and
  even a tick fired again would meet its own key in the jobs' unique index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.audit import AuditEntry
from conveyor.cron import MissedPolicy, Timing
from conveyor.model import Job, NewJob, Owner, Status, Visibility, utc_now
from conveyor.store.audit import journal_in
from conveyor.store.filters import scope_clauses
from conveyor.store.hooks import StoreHooks
from conveyor.store.rows import created_record, job_of_new, row_of
from conveyor.store.schema import UTCDateTime, audit_journal, jobs, leaders, schedules


@dataclass(frozen=True, slots=True)
class Schedule:
    """A job made again and again: `kind` with `data`, at the ticks of `timing`."""

    id: str
    name: str
    kind: str
    data: dict[str, Any]
    priority: int | None  # None: the job type's
    queue: str | None  # None: the job type's
    timing: Timing
    enabled: bool
    missed_policy: MissedPolicy
    owner: Owner
    created_at: datetime
    updated_at: datetime
    last_run_at: datetime | None = None  # the latest tick that fired
    next_run_at: datetime | None = None  # the first tick not fired yet; None while paused


def schedule_row(s: Schedule) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "kind": s.kind,
        "data": s.data,
        "priority": s.priority,
        "queue": s.queue,
        **timing_columns(s.timing),
        "enabled": s.enabled,
        "missed_policy": s.missed_policy.value,
        "owner_user_id": s.owner.user_id,
        "owner_org_id": s.owner.org_id,
        "owner_study_id": s.owner.study_id,
        "created_by": s.owner.created_by,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "last_run_at": s.last_run_at,
        "next_run_at": s.next_run_at,
    }


def timing_columns(timing: Timing) -> dict[str, Any]:
    return {"cron": timing.cron, "timezone": timing.timezone, "interval_seconds": timing.interval_seconds}


def schedule_from_row(row: Any) -> Schedule:
    m = row._mapping
    interval = m["interval_seconds"]
    return Schedule(
        id=m["id"],
        name=m["name"],
        kind=m["kind"],
        data=m["data"],
        priority=m["priority"],
        queue=m["queue"],
        timing=Timing(m["cron"], m["timezone"], timedelta(seconds=interval) if interval is not None else None),
        enabled=bool(m["enabled"]),
        missed_policy=MissedPolicy(m["missed_policy"]),
        owner=Owner(m["owner_user_id"], m["owner_org_id"], m["owner_study_id"], m["created_by"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        last_run_at=m["last_run_at"],
        next_run_at=m["next_run_at"],
    )


class ScheduleTables(StoreHooks):
    """Schedules and leader leases (mixed into SqlStore)."""

    # --- schedules ----------------------------------------------------------------------------

    async def insert_schedule(self, schedule: Schedule) -> None:
        async with self._write() as conn:
            await conn.execute(schedules.insert().values(**schedule_row(schedule)))

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id))).first()
        return schedule_from_row(row) if row else None

    async def list_schedules(
        self, *, visible_to: Visibility | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[Schedule], int]:
        """A page of the schedules `visible_to` may see (None: all), oldest first, and how many in all."""
        c = schedules.c
        clauses = []
        if visible_to is not None:
            clauses = scope_clauses(visible_to, c.owner_org_id, c.owner_study_id, c.owner_user_id)
        page = sa.select(schedules).where(*clauses).order_by(c.created_at, c.id).limit(limit).offset(offset)
        total = sa.select(sa.func.count()).select_from(schedules).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        return [schedule_from_row(r) for r in rows], int(count)

    async def update_schedule(
        self,
        schedule_id: str,
        values: dict[str, Any],
        records: Callable[[Schedule], Sequence[AuditEntry]] | None = None,
    ) -> Schedule | None:
        """Set these columns (updated_at too); the schedule afterwards, or None if unknown.
        `records`: its audit records, journaled in the same transaction."""
        stmt = (
            schedules.update()
            .where(schedules.c.id == schedule_id)
            .values(**values, updated_at=utc_now())
            .returning(*schedules.c)
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is not None and records is not None:
                await journal_in(conn, records(schedule_from_row(row)))
        return schedule_from_row(row) if row else None

    async def delete_schedule(self, schedule_id: str, records: Sequence[AuditEntry] = ()) -> bool:
        """Delete it, with its audit `records` in the same transaction (none if it is unknown)."""
        async with self._write() as conn:
            deleted = await conn.execute(schedules.delete().where(schedules.c.id == schedule_id))
            if deleted.rowcount:
                await journal_in(conn, records)
        return bool(deleted.rowcount)

    async def due_schedules(
        self, now: datetime, limit: int = 100, *, kinds: Sequence[str] | None = None
    ) -> list[Schedule]:
        """Enabled schedules whose next tick is at or before `now`, the most overdue first
        (only those of these job types, when given)."""
        c = schedules.c
        stmt = sa.select(schedules).where(c.enabled, c.next_run_at <= now).order_by(c.next_run_at, c.id).limit(limit)
        if kinds is not None:
            stmt = stmt.where(c.kind.in_(kinds))
        async with self._read_engine.connect() as conn:
            return [schedule_from_row(r) for r in await conn.execute(stmt)]

    async def fire_schedule(
        self, schedule: Schedule, *, next_run_at: datetime, last_run_at: datetime | None, new_jobs: Sequence[NewJob]
    ) -> list[Job] | None:
        """Move `schedule` on to `next_run_at` and insert the jobs of the ticks it passed, in one
        transaction, only if the schedule is still as read (same next_run_at, not changed since,
        still enabled). None when it was not: someone else fired these ticks, or the schedule
        changed. Otherwise the jobs inserted (a job whose idempotency key exists is not)."""
        c = schedules.c
        advance = (
            schedules.update()
            .where(
                c.id == schedule.id,
                c.next_run_at == schedule.next_run_at,
                c.updated_at == schedule.updated_at,
                c.enabled,
            )
            .values(next_run_at=next_run_at, last_run_at=last_run_at or c.last_run_at)
            .returning(c.id)
        )
        now = utc_now()
        async with self._write() as conn:
            # First the compare-and-set: on PostgreSQL a second firer waits here on the row's
            # lock, then finds next_run_at moved and matches nothing.
            if (await conn.execute(advance)).first() is None:
                return None
            made = await self._insert_keyed_jobs(conn, new_jobs, now) if new_jobs else []
            ready = sorted({n.queue for n in made if n.status is Status.PENDING})
            await self._notify(conn, "insert", ready)
        await self._after_commit("insert", ready)
        return [job_of_new(n, now) for n in made]

    async def _insert_keyed_jobs(
        self, conn: AsyncConnection, new_jobs: Sequence[NewJob], now: datetime
    ) -> list[NewJob]:
        """Those of `new_jobs` whose key was new, stored: counted, each with its job.created
        record (as every other way of making a job records it)."""
        stmt = (
            self._upsert(jobs)
            .on_conflict_do_nothing(
                index_elements=[jobs.c.idempotency_key], index_where=jobs.c.idempotency_key.isnot(None)
            )
            .returning(jobs.c.id)
        )
        inserted = {r.id for r in await conn.execute(stmt, [row_of(n, now) for n in new_jobs])}
        made = [n for n in new_jobs if n.id in inserted]
        if made:
            await self._count_inserted(conn, made)
            await conn.execute(audit_journal.insert(), [created_record(job_of_new(n, now), n, now) for n in made])
        return made

    # --- leaders ------------------------------------------------------------------------------

    def _clock(self, now: datetime | None, plus: timedelta = timedelta(0)) -> sa.ColumnElement[datetime]:
        """The database's clock (+ plus), or a fixed `now` (tests step time with it)."""
        if now is None:
            return self._now_plus(plus) if plus else self._now()
        return sa.literal(now + plus, UTCDateTime())

    async def elect_leader(self, name: str, holder: str, ttl: timedelta, *, now: datetime | None = None) -> bool:
        """Take the lease `name` for `holder` (or renew it) until now + ttl, if it is free, expired
        or already `holder`'s. True when `holder` leads afterwards. Atomic: of any number of
        processes asking at once, one holds it."""
        c = leaders.c
        held = sa.select(c.holder).where(c.name == name, c.holder != holder, c.expires_at >= self._clock(now))
        async with self._read_engine.connect() as conn:  # the common case: a plain read, no write lock
            if (await conn.execute(held)).first() is not None:  # by another, still valid
                return False
        insert = self._upsert(leaders).values(
            name=name, holder=holder, elected_at=self._clock(now), expires_at=self._clock(now, ttl)
        )
        excluded = insert.excluded
        upsert = insert.on_conflict_do_update(
            index_elements=[c.name],
            set_={
                "holder": excluded.holder,
                "expires_at": excluded.expires_at,
                "elected_at": sa.case((c.holder == excluded.holder, c.elected_at), else_=excluded.elected_at),
            },
            where=(c.holder == excluded.holder) | (c.expires_at < excluded.elected_at),
        ).returning(c.holder)
        async with self._write() as conn:
            return (await conn.execute(upsert)).first() is not None

    async def resign_leader(self, name: str, holder: str) -> None:
        """Give the lease up at once (a clean shutdown): another process need not wait it out."""
        async with self._write() as conn:
            await conn.execute(leaders.delete().where(leaders.c.name == name, leaders.c.holder == holder))

    async def leader_of(self, name: str) -> tuple[str, datetime] | None:
        """Who holds the lease `name`, and until when (it may have expired)."""
        async with self._read_engine.connect() as conn:
            stmt = sa.select(leaders.c.holder, leaders.c.expires_at).where(leaders.c.name == name)
            row = (await conn.execute(stmt)).first()
        return (row.holder, row.expires_at) if row else None

    async def database_now(self) -> datetime:
        """The time on the clock leases are measured on."""
        async with self._read_engine.connect() as conn:
            value = (await conn.execute(sa.select(sa.type_coerce(self._now(), UTCDateTime())))).scalar_one()
        return value.astimezone(UTC)
