"""The result cache's entries (a mixin of SqlStore, portable SQL).

An entry names, for one scope and one job type's cache key, the job whose result identical
requests reuse: in flight (they attach to it) or completed (they get its result). Its primary
key is the guard: a request takes the entry's row lock (or creates it) before deciding, so
of any number of identical requests at once exactly one inserts a job and the others find it.
Hits and misses are counted on the entry, in the same transaction.

The results themselves stay on their jobs: an entry is fresh while its job is completed and
completed at or after `fresh_after` (now minus the TTL); clearing deletes entries, not jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.audit import AuditEntry
from conveyor.model import Job, NewJob, Status, Visibility, utc_now
from conveyor.store.audit import journal_in
from conveyor.store.filters import scope_clauses
from conveyor.store.hooks import StoreHooks
from conveyor.store.rows import created_record, job_from_row, job_of_new, row_of
from conveyor.store.schema import UTCDateTime, audit_journal, cache_entries, jobs

CacheOutcome = Literal["hit", "attached", "miss"]
UNFINISHED = (Status.SCHEDULED.value, Status.PENDING.value, Status.RUNNING.value)


@dataclass(frozen=True, slots=True)
class CacheScope:
    """Who shares cached results: an organisation, narrowed to a study or one user as the
    requester's own visibility is (a user-level caller reuses only what it may see)."""

    org_id: str | None
    study_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, visibility: Visibility) -> CacheScope:
        return cls(visibility.org_id, visibility.study_id, visibility.user_id)

    @property
    def key(self) -> str:
        # "-" for none: no organisation id is "-" with a separator after it.
        return "\x1f".join("-" if part is None else f"={part}" for part in (self.org_id, self.study_id, self.user_id))


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int  # fresh cached results
    size_bytes: int  # their results' JSON
    oldest: datetime | None
    newest: datetime | None
    hits: int  # requests with use_cache answered by an entry (completed, or attached in flight)
    misses: int  # requests with use_cache that ran a job

    @property
    def hit_rate(self) -> float:
        """Percent of requests made with use_cache that ran nothing."""
        asked = self.hits + self.misses
        return round(100.0 * self.hits / asked, 1) if asked else 0.0


class CacheTables(StoreHooks):
    """The result cache's entries (mixed into SqlStore)."""

    # --- requests -------------------------------------------------------------------------------

    async def insert_cached_job(
        self, new: NewJob, scope: CacheScope, *, fresh_after: datetime
    ) -> tuple[Job, CacheOutcome]:
        """One request made with use_cache (`new` has a cache key): the completed job of its
        entry when fresh ("hit"), the job in flight ("attached"), or `new`, inserted ("miss").
        One transaction, under the entry's lock."""
        # type narrowing: only cacheable requests reach the cache (bandit B101)
        assert new.cache_key is not None  # nosec B101
        now = utc_now()
        where = sa.and_(
            cache_entries.c.scope == scope.key,
            cache_entries.c.kind == new.kind,
            cache_entries.c.cache_key == new.cache_key,
        )
        locked = sa.select(cache_entries.c.job_id).where(where).with_for_update()
        ready: list[str] = []
        async with self._write() as conn:
            job_id = (await conn.execute(locked)).scalar_one_or_none()
            if job_id is None:
                created = self._upsert(cache_entries).values(
                    scope=scope.key, kind=new.kind, cache_key=new.cache_key, org_id=scope.org_id,
                    study_id=scope.study_id, user_id=scope.user_id, job_id=new.id, hits=0, misses=1,
                    created_at=now, updated_at=now,
                )  # fmt: skip
                # On PostgreSQL a concurrent request's uncommitted entry makes this wait for it,
                # then do nothing: the entry is read (and locked) again below.
                if (await conn.execute(created.on_conflict_do_nothing().returning(cache_entries.c.job_id))).first():
                    ready = await self._insert_one(conn, new, now)
                    outcome: CacheOutcome = "miss"
                    job = job_of_new(new, now)
                else:
                    job_id = (await conn.execute(locked)).scalar_one()
            if job_id is not None:
                source = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
                reused = _reusable(source, fresh_after)
                counted = {"hits": cache_entries.c.hits + 1} if reused else {"misses": cache_entries.c.misses + 1}
                moved = {} if reused else {"job_id": new.id}
                await conn.execute(cache_entries.update().where(where).values(**counted, **moved, updated_at=now))
                if reused is not None:
                    outcome, job = reused, job_from_row(source)
                else:
                    ready = await self._insert_one(conn, new, now)
                    outcome, job = "miss", job_of_new(new, now)
        await self._after_commit("insert", ready)
        return job, outcome

    async def _insert_one(self, conn: AsyncConnection, new: NewJob, now: datetime) -> list[str]:
        await conn.execute(jobs.insert().values(**row_of(new, now)))
        await self._count_inserted(conn, [new])
        await conn.execute(audit_journal.insert().values(**created_record(job_of_new(new, now), new, now)))
        ready = [new.queue] if new.status is Status.PENDING else []
        await self._notify(conn, "insert", ready)
        return ready

    # --- statistics and clearing ----------------------------------------------------------------

    def _result_bytes(self) -> sa.ColumnElement[Any]:
        if self.dialect == "postgresql":
            return sa.func.octet_length(sa.cast(jobs.c.result, sa.Text))
        return sa.func.length(sa.cast(jobs.c.result, sa.LargeBinary))

    async def cache_stats(self, *, visible_to: Visibility | None, fresh_after: datetime) -> CacheStats:
        """The fresh entries `visible_to` may see (None: all): how many, their results' size,
        the oldest and newest; and hits and misses counted on every entry it may see."""
        e = cache_entries.c
        scope = scope_clauses(visible_to, e.org_id, e.study_id, e.user_id) if visible_to else []
        fresh = (
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(self._result_bytes()), 0),
                sa.func.min(jobs.c.completed_at),
                sa.func.max(jobs.c.completed_at),
            )
            .select_from(cache_entries.join(jobs, jobs.c.id == e.job_id))
            .where(*scope, jobs.c.status == Status.COMPLETED.value, jobs.c.completed_at >= fresh_after)
        )
        counted = sa.select(sa.func.coalesce(sa.func.sum(e.hits), 0), sa.func.coalesce(sa.func.sum(e.misses), 0))
        async with self._read_engine.connect() as conn:
            entries, size, oldest, newest = (await conn.execute(fresh)).one()
            hits, misses = (await conn.execute(counted.where(*scope))).one()
        return CacheStats(int(entries), int(size), _aware(oldest), _aware(newest), int(hits), int(misses))

    async def clear_cache(
        self,
        *,
        visible_to: Visibility | None,
        labels: Mapping[str, str] | None = None,
        records: Callable[[int], Sequence[AuditEntry]] | None = None,
    ) -> int:
        """Delete the entries `visible_to` may see whose job completed (with these labels, when
        given): identical requests run again. Entries of jobs in flight stay, so that requests
        made meanwhile still attach to them. How many were deleted."""
        e = cache_entries.c
        scope = scope_clauses(visible_to, e.org_id, e.study_id, e.user_id) if visible_to else []
        completed = sa.select(jobs.c.id).where(
            jobs.c.status == Status.COMPLETED.value,
            *[jobs.c.labels[key].as_string() == value for key, value in (labels or {}).items()],
        )
        async with self._write() as conn:
            deleted = await conn.execute(cache_entries.delete().where(*scope, e.job_id.in_(completed)))
            if records is not None:  # `records`: the audit records of how many were cleared, in this transaction
                await journal_in(conn, records(int(deleted.rowcount)))
        return int(deleted.rowcount)


def _reusable(source: Any, fresh_after: datetime) -> CacheOutcome | None:
    if source is None:  # pruned
        return None
    if source.status in UNFINISHED:
        return "attached"
    completed_at = _aware(source.completed_at)
    if source.status == Status.COMPLETED.value and completed_at is not None and completed_at >= fresh_after:
        return "hit"
    return None  # failed, cancelled, timed out, or too old: run again


def _aware(value: Any) -> datetime | None:
    """Aggregates over UTCDateTime come back raw on SQLite (text); columns come back aware."""
    if value is None or isinstance(value, datetime):
        return value
    return UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
