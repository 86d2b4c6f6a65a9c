"""Pruning finished jobs, their dependants and old log lines (a mixin of SqlStore).

Each call deletes at most `limit` rows in one short transaction. Only finished rows are
touched (a status in the statement itself), and PostgreSQL skips rows another statement
holds: pending and running jobs, and with them every claim, never wait on a prune.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.model import FINISHED, PrunedJob, Status
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import batches, cache_entries, job_counters, job_logs, jobs

_FINISHED_VALUES = tuple(s.value for s in FINISHED)


@dataclass(frozen=True, slots=True)
class BatchMemberAge:
    status: str
    queue: str
    completed_at: datetime | None


_RETURNED = (jobs.c.id, jobs.c.kind, jobs.c.queue, jobs.c.status, jobs.c.data, jobs.c.file_info)


class RetentionTables(StoreHooks):
    """Deletes past retention (mixed into SqlStore)."""

    async def prune_jobs(
        self,
        status: Status,
        before: datetime,
        *,
        queues: Sequence[str] | None = None,
        not_queues: Sequence[str] = (),
        limit: int = 500,
    ) -> list[PrunedJob]:
        """Delete up to `limit` jobs of `status` (a finished one) completed before `before`, in
        `queues` (None: any) but not in `not_queues`, that belong to no batch (batches go whole:
        prune_batch); with their log lines and the cache entries that point at them."""
        if status not in FINISHED:
            raise ValueError(f"only finished jobs are pruned, not {status.value}")
        c = jobs.c
        chosen = (
            sa.select(c.id)
            .where(c.status == status.value, c.completed_at < before, c.batch_id.is_(None))
            .order_by(c.completed_at)
            .limit(limit)
        )
        if queues is not None:
            chosen = chosen.where(c.queue.in_(queues))
        if not_queues:
            chosen = chosen.where(c.queue.notin_(not_queues))
        async with self._write() as conn:
            ids = [r.id for r in await conn.execute(self._lock_skipping(chosen))]
            return await self._delete_jobs(conn, ids)

    async def _delete_jobs(self, conn: AsyncConnection, ids: Sequence[UUID]) -> list[PrunedJob]:
        if not ids:
            return []
        await conn.execute(cache_entries.delete().where(cache_entries.c.job_id.in_(ids)))
        await conn.execute(job_logs.delete().where(job_logs.c.job_id.in_(ids)))
        stmt = jobs.delete().where(jobs.c.id.in_(ids), jobs.c.status.in_(_FINISHED_VALUES)).returning(*_RETURNED)
        return [PrunedJob(*r) for r in await conn.execute(stmt)]

    async def finished_batches_before(self, before: datetime, limit: int = 100) -> dict[UUID, list[BatchMemberAge]]:
        """Batches whose members have all finished, the last before `before`: their members'
        status, queue and completion (the caller decides which are past retention)."""
        j, b = jobs.c, batches.c
        unfinished = sa.exists().where(j.batch_id == b.id, j.status.notin_(_FINISHED_VALUES))
        recent = sa.exists().where(j.batch_id == b.id, j.completed_at >= before)
        chosen = sa.select(b.id).where(~unfinished, ~recent).order_by(b.created_at).limit(limit)
        async with self._read_engine.connect() as conn:
            ids = [r.id for r in await conn.execute(chosen)]
            out: dict[UUID, list[BatchMemberAge]] = {i: [] for i in ids}
            if ids:
                members = sa.select(j.batch_id, j.status, j.queue, j.completed_at).where(j.batch_id.in_(ids))
                for r in await conn.execute(members):
                    out[r.batch_id].append(BatchMemberAge(r.status, r.queue, r.completed_at))
        return out

    async def prune_batch(
        self, batch_id: UUID, still_expired: Callable[[Any], sa.ColumnElement[bool]]
    ) -> list[PrunedJob]:
        """Delete a batch and its members, if every member is still finished and
        `still_expired(jobs.c)` holds for each (checked again inside the transaction)."""
        j = jobs.c
        blocking = sa.select(j.id).where(j.batch_id == batch_id, sa.not_(still_expired(j))).limit(1)
        async with self._write() as conn:
            if (await self._lock_batch_row(conn, batch_id)) is None:
                return []
            if (await conn.execute(blocking)).first() is not None:
                return []
            ids = [r.id for r in await conn.execute(sa.select(j.id).where(j.batch_id == batch_id))]
            pruned = await self._delete_jobs(conn, ids)
            await conn.execute(batches.delete().where(batches.c.id == batch_id))
        return pruned

    async def _lock_batch_row(self, conn: AsyncConnection, batch_id: UUID) -> Any:
        return (await conn.execute(sa.select(batches.c.id).where(batches.c.id == batch_id).with_for_update())).first()

    async def prune_counters(self, before: datetime, limit: int = 500) -> int:
        """Delete job counters recorded before `before`, among the `limit` oldest (by id), as
        prune_logs does log lines."""
        c = job_counters.c
        oldest = sa.select(c.id, c.recorded_at).order_by(c.id).limit(limit).subquery()
        chosen = sa.select(oldest.c.id).where(oldest.c.recorded_at < before)
        async with self._write() as conn:
            result = await conn.execute(job_counters.delete().where(c.id.in_(chosen.scalar_subquery())))
        return int(result.rowcount or 0)

    async def prune_logs(self, before: datetime, limit: int = 500) -> int:
        """Delete log lines written before `before`, among the `limit` oldest (by id, which
        grows with time): one short statement that reads no more than `limit` rows however
        big the table is. How many went; fewer than `limit` means none older remain in reach."""
        c = job_logs.c
        oldest = sa.select(c.id, c.ts).order_by(c.id).limit(limit).subquery()
        chosen = sa.select(oldest.c.id).where(oldest.c.ts < before)
        async with self._write() as conn:
            result = await conn.execute(job_logs.delete().where(c.id.in_(chosen.scalar_subquery())))
        return int(result.rowcount or 0)
