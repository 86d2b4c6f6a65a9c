"""Batches: jobs submitted together, run at most `parallel_limit` at a time, and cancelled as a
whole by hand or, with `fail_fast`, by the first failure (a mixin of SqlStore, portable SQL).

The claim is not involved. A batch's jobs beyond its limit wait as `scheduled` at
model.HELD_UNTIL, out of the claim's and the stager's sight; `settle_batches` releases them to
pending while the batch has room. Its members that hold a slot are the pending, running and
scheduled-for-a-retry ones; a slot frees only when a member finishes, and every statement
that finishes one (outcomes, rescue, cancel) settles its batch after it commits.

Settling takes the batch row's lock first (FOR UPDATE on PostgreSQL; SQLite has one writer),
so two settles of one batch run one after the other and the second counts what the first
released: the limit holds across any number of workers and processes. Nothing that holds a
job row waits on a batch row, so settling never deadlocks with outcome writes or claims.
If a process dies between finishing a job and settling its batch, maintenance settles
batches whose waiting jobs have room (`settle_waiting_batches`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.model import HELD_UNTIL, Job, NewJob, Owner, Status, Visibility, utc_now
from conveyor.store.filters import scope_clauses
from conveyor.store.hooks import StoreHooks
from conveyor.store.outage import log_failure
from conveyor.store.rows import created_record, job_of_new, row_of
from conveyor.store.schema import audit_journal, batches, jobs

log = logging.getLogger("conveyor.store")

FAILURES = (Status.FAILED.value, Status.TIMEOUT.value)
UNFINISHED = (Status.SCHEDULED.value, Status.PENDING.value, Status.RUNNING.value)


@dataclass(frozen=True, slots=True)
class Batch:
    id: UUID
    name: str
    parallel_limit: int | None  # None: no limit
    fail_fast: bool
    size: int  # jobs submitted with the batch (a retry by hand adds one more member)
    owner: Owner
    created_at: datetime
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None  # "cancelled" (by hand) or "fail_fast"


@dataclass(frozen=True, slots=True)
class BatchMember:
    """One job of a batch, as the batch's status shows it."""

    id: UUID
    kind: str
    status: Status
    held: bool  # waiting for a slot (status scheduled)
    progress: float
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class BatchCancel:
    """What cancelling a batch did: members cancelled at once, and running ones asked to stop."""

    batch: Batch
    cancelled: list[UUID]
    stop_requested: list[UUID]


def batch_row(b: Batch) -> dict[str, Any]:
    return {
        "id": b.id,
        "name": b.name,
        "parallel_limit": b.parallel_limit,
        "fail_fast": b.fail_fast,
        "size": b.size,
        "owner_user_id": b.owner.user_id,
        "owner_org_id": b.owner.org_id,
        "owner_study_id": b.owner.study_id,
        "created_by": b.owner.created_by,
        "created_at": b.created_at,
        "cancelled_at": b.cancelled_at,
        "cancel_reason": b.cancel_reason,
    }


def batch_from_row(row: Any) -> Batch:
    m = row._mapping
    return Batch(
        id=m["id"],
        name=m["name"],
        parallel_limit=m["parallel_limit"],
        fail_fast=bool(m["fail_fast"]),
        size=m["size"],
        owner=Owner(m["owner_user_id"], m["owner_org_id"], m["owner_study_id"], m["created_by"]),
        created_at=m["created_at"],
        cancelled_at=m["cancelled_at"],
        cancel_reason=m["cancel_reason"],
    )


def _held(c: Any) -> sa.ColumnElement[bool]:
    return sa.and_(c.status == Status.SCHEDULED.value, c.run_at >= HELD_UNTIL)


def _holding_a_slot(c: Any) -> sa.ColumnElement[bool]:
    return sa.or_(
        c.status.in_([Status.PENDING.value, Status.RUNNING.value]),
        sa.and_(c.status == Status.SCHEDULED.value, c.run_at < HELD_UNTIL),
    )


class BatchTables(StoreHooks):
    """Batches (mixed into SqlStore)."""

    # --- definitions and reads ----------------------------------------------------------------

    async def insert_batch(self, batch: Batch, new_jobs: Sequence[NewJob]) -> list[Job]:
        """Store the batch and its jobs in one transaction (the jobs as the engine made them:
        those beyond the limit already held), with each job's audit record. Jobs of a batch
        carry no idempotency key."""
        now = utc_now()
        made = [job_of_new(n, now) for n in new_jobs]
        async with self._write() as conn:
            await conn.execute(batches.insert().values(**batch_row(batch)))
            await conn.execute(jobs.insert(), [row_of(n, now) for n in new_jobs])
            await self._count_inserted(conn, new_jobs)
            records = [created_record(job, n, now) for job, n in zip(made, new_jobs, strict=True)]
            await conn.execute(audit_journal.insert(), records)
            ready = sorted({n.queue for n in new_jobs if n.status is Status.PENDING})
            await self._notify(conn, "insert", ready)
        await self._after_commit("insert", ready)
        return made

    async def get_batch(self, batch_id: UUID) -> Batch | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(batches).where(batches.c.id == batch_id))).first()
        return batch_from_row(row) if row else None

    async def list_batches(
        self, *, visible_to: Visibility | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[Batch], int]:
        """A page of the batches `visible_to` may see (None: all), newest first, and how many in all."""
        c = batches.c
        clauses = scope_clauses(visible_to, c.owner_org_id, c.owner_study_id, c.owner_user_id) if visible_to else []
        page = sa.select(batches).where(*clauses).order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        total = sa.select(sa.func.count()).select_from(batches).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        return [batch_from_row(r) for r in rows], int(count)

    async def batch_members(self, batch_ids: Sequence[UUID]) -> dict[UUID, list[BatchMember]]:
        """The jobs of each batch, in the order they were submitted."""
        c = jobs.c
        stmt = (
            sa.select(
                c.batch_id, c.id, c.kind, c.status, c.run_at, c.progress, c.created_at, c.started_at, c.completed_at
            )
            .where(c.batch_id.in_(batch_ids))
            .order_by(c.id)
        )
        out: dict[UUID, list[BatchMember]] = {b: [] for b in batch_ids}
        async with self._read_engine.connect() as conn:
            for r in await conn.execute(stmt):
                status = Status(r.status)
                percentage = (r.progress or {}).get("percentage") if status is not Status.COMPLETED else 100.0
                out[r.batch_id].append(
                    BatchMember(
                        id=r.id,
                        kind=r.kind,
                        status=status,
                        held=status is Status.SCHEDULED and r.run_at >= HELD_UNTIL,
                        progress=float(percentage or 0.0),
                        created_at=r.created_at,
                        started_at=r.started_at,
                        completed_at=r.completed_at,
                    )
                )
        return out

    # --- cancel ---------------------------------------------------------------------------------

    async def cancel_batch(self, batch_id: UUID) -> BatchCancel | None:
        """Mark the batch cancelled (by hand) and cancel its unfinished jobs: scheduled and
        pending ones at once, running ones asked to stop at their next checkpoint. None when
        the batch does not exist."""
        async with self._write() as conn:
            batch = await self._lock_batch(conn, batch_id)
            if batch is None:
                return None
            if batch.cancelled_at is None:
                batch = await self._mark_cancelled(conn, batch, "cancelled")
            cancelled, requested = await self._cancel_members(conn, batch_id)
        await self._after_commit("finish", [str(i) for i in cancelled])
        await self._after_commit("cancel", [str(i) for i in requested])
        return BatchCancel(batch, cancelled, requested)

    async def _lock_batch(self, conn: AsyncConnection, batch_id: UUID) -> Batch | None:
        row = (await conn.execute(sa.select(batches).where(batches.c.id == batch_id).with_for_update())).first()
        return batch_from_row(row) if row else None

    async def _mark_cancelled(self, conn: AsyncConnection, batch: Batch, reason: str) -> Batch:
        stmt = (
            batches.update()
            .where(batches.c.id == batch.id)
            .values(cancelled_at=self._now(), cancel_reason=reason)
            .returning(*batches.c)
        )
        return batch_from_row((await conn.execute(stmt)).one())

    async def _cancel_members(self, conn: AsyncConnection, batch_id: UUID) -> tuple[list[UUID], list[UUID]]:
        c = jobs.c
        # First the waiting ones; then the running ones, in a statement of its own, so that a job
        # a claim took meanwhile (the first statement waited for it, then passed it over) is
        # asked to stop by the second.
        at_once = (
            jobs.update()
            .where(c.batch_id == batch_id, c.status.in_([Status.SCHEDULED.value, Status.PENDING.value]))
            .values(status=Status.CANCELLED.value, completed_at=self._now(), updated_at=self._now())
            .returning(c.id, c.status, c.owner_org_id, c.kind, c.batch_id)
        )
        flag = (
            jobs.update()
            .where(c.batch_id == batch_id, c.status == Status.RUNNING.value, c.cancel_requested.is_(False))
            .values(cancel_requested=True, updated_at=self._now())
            .returning(c.id)
        )
        cancelled_rows = (await conn.execute(at_once)).all()
        cancelled = [r.id for r in cancelled_rows]
        await self.record_job_events(conn, [tuple(r) for r in cancelled_rows])  # type: ignore[misc]
        requested = [r.id for r in await conn.execute(flag)]
        await self._notify(conn, "finish", [str(i) for i in cancelled])
        await self._notify(conn, "cancel", [str(i) for i in requested])
        return cancelled, requested

    # --- settling: fail_fast and the parallel limit ---------------------------------------------

    async def settle_batches(self, batch_ids: Iterable[UUID]) -> None:
        """For each batch: with fail_fast, once a member has failed (or timed out), cancel the
        rest (as cancel_batch does, reason "fail_fast"); otherwise release waiting members to
        pending while fewer than parallel_limit hold a slot. Idempotent; each batch in a
        transaction of its own."""
        for batch_id in sorted(set(batch_ids)):
            ready: list[str] = []
            cancelled: list[UUID] = []
            requested: list[UUID] = []
            async with self._write() as conn:
                batch = await self._lock_batch(conn, batch_id)
                if batch is None:
                    continue
                if batch.fail_fast and batch.cancelled_at is None and await self._has_failed(conn, batch_id):
                    await self._mark_cancelled(conn, batch, "fail_fast")
                    cancelled, requested = await self._cancel_members(conn, batch_id)
                else:
                    ready = await self._release(conn, batch)
                    await self._notify(conn, "insert", ready)
            await self._after_commit("insert", ready)
            await self._after_commit("finish", [str(i) for i in cancelled])
            await self._after_commit("cancel", [str(i) for i in requested])

    async def settle_batches_quietly(self, batch_ids: Iterable[UUID]) -> None:
        """settle_batches after a write that finished members has committed: a failure here
        must not make that write look failed (it is not repeated); maintenance settles later."""
        try:
            await self.settle_batches(batch_ids)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "settling batches failed; maintenance will settle them")

    async def _has_failed(self, conn: AsyncConnection, batch_id: UUID) -> bool:
        c = jobs.c
        found = sa.select(c.id).where(c.batch_id == batch_id, c.status.in_(FAILURES)).limit(1)
        return (await conn.execute(found)).first() is not None

    async def _release(self, conn: AsyncConnection, batch: Batch) -> list[str]:
        """Waiting members to pending, up to the batch's room, highest priority then oldest
        first; the queues of those released."""
        c = jobs.c
        room: int | None = None
        if batch.parallel_limit is not None:
            holding = sa.select(sa.func.count()).select_from(jobs).where(c.batch_id == batch.id, _holding_a_slot(c))
            room = batch.parallel_limit - int((await conn.execute(holding)).scalar_one())
            if room <= 0:
                return []
        waiting = sa.select(c.id).where(c.batch_id == batch.id, _held(c)).order_by(c.priority.desc(), c.id)
        if room is not None:
            waiting = waiting.limit(room)
        release = (
            jobs.update()
            .where(c.id.in_(self._lock_skipping(waiting).scalar_subquery()))
            .values(status=Status.PENDING.value, run_at=self._now(), updated_at=self._now())
            .returning(c.queue)
        )
        return sorted({r.queue for r in await conn.execute(release)})

    async def settle_waiting_batches(self) -> int:
        """Maintenance's safety net: settle every batch with members waiting while it has room
        (left so when a process died between finishing a member and settling). How many."""
        c = jobs.c
        waiting = sa.select(c.batch_id).where(_held(c)).distinct().subquery()
        holders = jobs.alias("holders")
        holding = (
            sa.select(sa.func.count())
            .select_from(holders)
            .where(holders.c.batch_id == waiting.c.batch_id, _holding_a_slot(holders.c))
            .scalar_subquery()
        )
        stmt = (
            sa.select(waiting.c.batch_id)
            .join(batches, batches.c.id == waiting.c.batch_id)
            .where(sa.or_(batches.c.parallel_limit.is_(None), batches.c.parallel_limit > holding))
        )
        async with self._read_engine.connect() as conn:
            due = [r.batch_id for r in await conn.execute(stmt)]
        if due:
            await self.settle_batches(due)
        return len(due)


def batch_ids_of(pairs: Iterable[tuple[UUID, UUID | None]]) -> set[UUID]:
    return {batch_id for _job_id, batch_id in pairs if batch_id is not None}
