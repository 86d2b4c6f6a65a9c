"""SqlStore: what both dialects say alike, in SQLAlchemy Core. Dialects override the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.audit import SYSTEM, Actor, AuditEntry
from conveyor.model import (
    Job,
    JobFilter,
    JobOrder,
    LogEntry,
    LogLevel,
    NewJob,
    Outcome,
    OutcomeKind,
    Owner,
    ProgressUpdate,
    Status,
    utc_now,
)
from conveyor.store import ordering
from conveyor.store.alerts import AlertTables
from conveyor.store.analytics import JobAnalytics
from conveyor.store.audit import AuditTables, journal_in
from conveyor.store.base import TOPICS, Listener
from conveyor.store.batches import BatchTables, batch_ids_of
from conveyor.store.cache import CacheTables
from conveyor.store.control import ControlTables
from conveyor.store.filters import STATUS_VALUES, filter_clauses
from conveyor.store.interactions import InteractionTables
from conveyor.store.limits import RateWindows
from conveyor.store.notifications import NotificationTables
from conveyor.store.packstate import PackStateTables
from conveyor.store.retention import RetentionTables
from conveyor.store.rows import (
    CLAIMED_COLUMNS,
    RESCUE_ACTIONS,
    bulk_created_record,
    claimed_job,
    created_record,
    grouped_records,
    job_from_row,
    job_of_new,
    log_row,
    row_of,
)
from conveyor.store.schedules import ScheduleTables
from conveyor.store.schema import audit_journal, job_logs, jobs, queue_states
from conveyor.store.statistics import JobStatistics
from conveyor.store.users import UserTables
from conveyor.store.webhooks import WebhookTables


def paused_queues() -> sa.Select[Any]:
    return sa.select(queue_states.c.name).where(queue_states.c.paused)


# Who rescues a job whose worker stopped answering: no principal asked; the maintenance pass did.
RESCUER = Actor(user_id=SYSTEM, name="lease rescue")


class SqlStore(
    ControlTables,
    ScheduleTables,
    AuditTables,
    BatchTables,
    CacheTables,
    RateWindows,
    WebhookTables,
    AlertTables,
    RetentionTables,
    UserTables,
    PackStateTables,
    NotificationTables,
    JobStatistics,
    JobAnalytics,
    InteractionTables,
):
    """The Store protocol over an async SQLAlchemy engine.

    `_engine` runs writes; `_read_engine` runs reads (the same engine on PostgreSQL; on
    SQLite one whose transactions do not take the write lock).
    """

    dialect = "sql"

    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None, *, url: str) -> None:
        self._engine = engine
        self._read_engine = read_engine or engine
        self._url = url
        self._listeners: list[Listener] = []

    # --- lifecycle ------------------------------------------------------------------

    async def migrate(self) -> None:
        from conveyor.store.migrate import upgrade

        await asyncio.to_thread(upgrade, self._url)

    async def connect(self) -> None:
        """SQLite opens its files on first use, at no noticeable cost."""

    async def close(self) -> None:
        await self._engine.dispose()
        if self._read_engine is not self._engine:
            await self._read_engine.dispose()

    async def listen(self, listener: Listener, topics: Collection[str] = TOPICS) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    @property
    def notifies_across_processes(self) -> bool:
        return False

    def _publish(self, topic: str, payloads: Sequence[str]) -> None:
        for listener in self._listeners:
            for payload in payloads:
                listener(topic, payload)

    # --- dialect hooks ----------------------------------------------------------------

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction."""
        return self._engine.begin()

    def _now(self) -> sa.ColumnElement[datetime]:
        """The clock leases are measured on."""
        raise NotImplementedError

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[datetime]:
        raise NotImplementedError

    def _filter(self, where: JobFilter) -> list[sa.ColumnElement[bool]]:
        return filter_clauses(where)

    def _insert(self) -> Any:
        """The dialect's INSERT construct (for ON CONFLICT)."""
        raise NotImplementedError

    async def _notify(self, conn: AsyncConnection, topic: str, payloads: Sequence[str]) -> None:
        """Announce within the transaction; delivered once it commits."""

    # True where the database hands our own notifications back to us (LISTEN/NOTIFY).
    _echoes_notifications = False

    async def _after_commit(self, topic: str, payloads: Sequence[str]) -> None:
        """In-process delivery, for dialects whose database does not echo notifications."""
        if payloads and not self._echoes_notifications:
            self._publish(topic, payloads)

    async def _count_inserted(self, conn: AsyncConnection, new_jobs: Sequence[NewJob]) -> None:
        """SQLite keeps no roll-ups: it counts the jobs table."""

    # --- enqueue ------------------------------------------------------------------------

    async def insert_jobs(
        self, new_jobs: Sequence[NewJob], *, also: Sequence[AuditEntry] = ()
    ) -> list[tuple[Job, bool]]:
        if not new_jobs:
            return []
        now = utc_now()
        made = [job_of_new(n, now) for n in new_jobs]
        rows = [row_of(n, now) for n in new_jobs]
        # Each created job's audit record goes in with it: in its statement or transaction.
        records = [created_record(job, n, now) for job, n in zip(made, new_jobs, strict=True)]
        inserted = await self._insert_rows(new_jobs, rows, records, also)
        missing = [n.idempotency_key for n in new_jobs if n.id not in inserted]
        existing: dict[str, Job] = {}
        if missing:
            async with self._read_engine.connect() as conn:
                found = await conn.execute(sa.select(jobs).where(jobs.c.idempotency_key.in_(missing)))
                existing = {j.idempotency_key: j for j in map(job_from_row, found)}  # type: ignore[misc]
        out: list[tuple[Job, bool]] = []
        for new, job in zip(new_jobs, made, strict=True):
            if new.id in inserted:
                out.append((job, True))
            else:
                out.append((existing[new.idempotency_key], False))  # type: ignore[index]
        return out

    async def insert_batches(self, batches: Iterable[Sequence[NewJob]]) -> list[Job]:
        # Keyless bulk jobs: all of them are stored, in one transaction, with one audit record
        # per batch naming its jobs (as PostgreSQL's COPY path does).
        now = utc_now()
        stored: list[Job] = []
        new_jobs: list[NewJob] = []
        records: list[dict[str, Any]] = []
        for batch in batches:
            if batch:
                made = [job_of_new(n, now) for n in batch]
                stored.extend(made)
                new_jobs.extend(batch)
                records.append(bulk_created_record(made, batch[0], now))
        if not new_jobs:
            return []
        rows = [row_of(n, now) for n in new_jobs]
        async with self._write() as conn:
            await conn.execute(jobs.insert(), rows)
            await self._count_inserted(conn, new_jobs)
            await conn.execute(audit_journal.insert(), records)
            ready = sorted({r["queue"] for r in rows if r["status"] == Status.PENDING})
            await self._notify(conn, "insert", ready)
        await self._after_commit("insert", ready)
        return stored

    async def _insert_rows(
        self,
        new_jobs: Sequence[NewJob],
        rows: list[dict[str, Any]],
        records: list[dict[str, Any]],
        also: Sequence[AuditEntry] = (),
    ) -> set[UUID]:
        """Insert `new_jobs` (as `rows`) in one transaction, skipping known idempotency keys,
        counted, with the audit journal's rows (`records`, one per row) of those inserted, and
        `also` when any was; the ids inserted."""
        async with self._write() as conn:
            if any(r["idempotency_key"] is not None for r in rows):
                stmt = (
                    self._insert()
                    .on_conflict_do_nothing(
                        index_elements=[jobs.c.idempotency_key],
                        index_where=jobs.c.idempotency_key.isnot(None),
                    )
                    .returning(jobs.c.id)
                )
                inserted = {r.id for r in await conn.execute(stmt, rows)}
            else:
                await conn.execute(jobs.insert(), rows)
                inserted = {r["id"] for r in rows}
            await self._count_inserted(conn, [n for n in new_jobs if n.id in inserted])
            if written := [rec for rec, row in zip(records, rows, strict=True) if row["id"] in inserted]:
                await conn.execute(audit_journal.insert(), written)
                await journal_in(conn, also)
            ready = sorted({r["queue"] for r in rows if r["id"] in inserted and r["status"] == Status.PENDING})
            await self._notify(conn, "insert", ready)
        await self._after_commit("insert", ready)
        return inserted

    # --- reads --------------------------------------------------------------------------

    async def get_job(self, job_id: UUID) -> Job | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        return job_from_row(row) if row else None

    async def attempts_held(self, job_ids: Sequence[UUID], worker_id: str) -> dict[UUID, int]:
        return await self._running_on(worker_id, jobs.c.id.in_(job_ids))

    async def running_on(self, worker_id: str) -> dict[UUID, int]:
        return await self._running_on(worker_id)

    async def _running_on(self, worker_id: str, *where: sa.ColumnElement[bool]) -> dict[UUID, int]:
        c = jobs.c
        running = sa.select(c.id, c.attempt).where(c.worker_id == worker_id, c.status == Status.RUNNING.value, *where)
        async with self._read_engine.connect() as conn:
            return {r.id: r.attempt for r in await conn.execute(running)}

    async def list_jobs(
        self,
        where: JobFilter,
        *,
        limit: int,
        offset: int,
        newest_first: bool = True,
        after: ordering.After | None = None,
        order: JobOrder | None = None,
    ) -> tuple[list[Job], int]:
        clauses = filter_clauses(where)
        order = order or JobOrder("created", descending=newest_first)
        by_status = ordering.reads_by_status(order, where)
        async with self._read_engine.connect() as conn:
            count = await self._count_matching(conn, where)
            if after is None and count - offset < offset + limit and offset < count:
                # A page past the middle by offset: read from the other end, where it is fewer
                # rows in (every order is total, so the reverse order is exactly the reverse).
                backwards = JobOrder(order.key, descending=not order.descending)
                rows = await self._page(
                    conn, clauses, backwards, None, limit=min(limit, count - offset),
                    offset=max(0, count - offset - limit), by_status=by_status,
                )  # fmt: skip
                rows.reverse()
            else:
                rows = await self._page(conn, clauses, order, after, limit=limit, offset=offset, by_status=by_status)
        return [job_from_row(r) for r in rows], count

    @staticmethod
    async def _page(
        conn: AsyncConnection,
        clauses: list[Any],
        order: JobOrder,
        after: ordering.After | None,
        *,
        limit: int,
        offset: int,
        by_status: bool,
    ) -> list[Any]:
        # Keyset paging (`after`): the jobs past the cursor in the listing's order, found
        # through an index however deep the page (an offset walks every row before it).
        rows: list[Any] = []
        for segment in ordering.segments(order, after):
            if len(rows) >= limit:
                break
            page = ordering.page(
                clauses, order, segment, limit=limit - len(rows), offset=0 if after else offset, by_status=by_status
            )
            rows.extend((await conn.execute(page)).all())
        return rows

    async def changed_owners(
        self, job_ids: Sequence[str], queues: Sequence[str], since: datetime
    ) -> tuple[set[Owner], set[str]]:
        """The owners of the jobs `job_ids` names and of those created at or after `since` in
        `queues`, and which of `queues` had such jobs (a live feed's round: conveyor.engine.changes).
        Found by primary key and through the (status, created_at) index: the recent rows only."""
        c = jobs.c
        who = (c.owner_user_id, c.owner_org_id, c.owner_study_id)
        ids = [job_id for job_id in map(_uuid_or_none, job_ids) if job_id is not None]
        owners: set[Owner] = set()
        found: set[str] = set()
        async with self._read_engine.connect() as conn:
            if ids:
                for user, org, study in await conn.execute(sa.select(*who).where(c.id.in_(ids)).distinct()):
                    owners.add(Owner(user_id=user, org_id=org, study_id=study))
            if queues:
                recent = (
                    sa.select(c.queue, *who)
                    .where(c.status.in_(STATUS_VALUES), c.created_at >= since, c.queue.in_(queues))
                    .distinct()
                )
                for queue, user, org, study in await conn.execute(recent):
                    owners.add(Owner(user_id=user, org_id=org, study_id=study))
                    found.add(queue)
        return owners, found

    async def _count_matching(self, conn: AsyncConnection, where: JobFilter) -> int:
        total = sa.select(sa.func.count()).select_from(jobs).where(*filter_clauses(where))
        return int((await conn.execute(total)).scalar_one())

    async def compact_rollups(self) -> None:
        """Fold the roll-ups' deltas (where the dialect keeps roll-ups)."""

    async def recount_rollups(self) -> int:
        """Count the jobs table afresh into the roll-ups (where the dialect keeps them), while
        jobs come and go; the groups written. For roll-ups that drifted: processes of a version
        before migration 0017 storing jobs after it ran, or rows written by hand."""
        return 0

    async def count_jobs(self, where: JobFilter, by: str = "status") -> dict[str, int]:
        return {str(key[0]): n for key, n in (await self.count_grouped(where, (by,))).items()}

    async def get_logs(
        self, job_id: UUID, *, min_level: LogLevel | None, limit: int, offset: int
    ) -> tuple[list[LogEntry], int]:
        clauses = [job_logs.c.job_id == job_id]
        if min_level is not None:
            clauses.append(job_logs.c.level >= int(min_level))
        page = sa.select(job_logs).where(*clauses).order_by(job_logs.c.id).limit(limit).offset(offset)
        total = sa.select(sa.func.count()).select_from(job_logs).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        entries = [LogEntry(r.job_id, r.ts, LogLevel(r.level), r.message, r.component, r.attempt) for r in rows]
        return entries, count

    # --- the worker's side --------------------------------------------------------------

    async def claim_jobs(self, queues: Sequence[str], limit: int, worker_id: str, lease: timedelta) -> list[Job]:
        if limit <= 0:
            return []
        c = jobs.c
        chosen = (
            sa.select(c.id)
            .where(c.status == Status.PENDING.value, c.queue.in_(queues), c.queue.notin_(paused_queues()))
            .order_by(c.priority.desc(), c.id)
            .limit(limit)
        )
        stmt = (
            jobs.update()
            .where(c.id.in_(self._lock_skipping(chosen).scalar_subquery()))
            .values(
                status=Status.RUNNING.value,
                attempt=c.attempt + 1,
                worker_id=worker_id,
                started_at=self._now(),
                updated_at=self._now(),
                lease_expires_at=self._now_plus(lease),
            )
            .returning(*[jobs.c[name] for name in CLAIMED_COLUMNS])
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        claimed = [claimed_job(*r, worker_id=worker_id) for r in rows]
        claimed.sort(key=lambda j: (-j.priority, j.id))  # RETURNING keeps no order
        return claimed

    def _lock_skipping(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select

    async def heartbeat(
        self, worker_id: str, job_ids: Sequence[UUID], lease: timedelta
    ) -> dict[UUID, tuple[int, bool]]:
        if not job_ids:
            return {}
        c = jobs.c
        stmt = (
            jobs.update()
            .where(c.id.in_(job_ids), c.status == Status.RUNNING.value, c.worker_id == worker_id)
            .values(lease_expires_at=self._now_plus(lease))
            .returning(c.id, c.attempt, c.cancel_requested)
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        return {r.id: (r.attempt, bool(r.cancel_requested)) for r in rows}

    async def flush(
        self,
        outcomes: Sequence[Outcome] = (),
        progress: Sequence[ProgressUpdate] = (),
        logs: Sequence[LogEntry] = (),
    ) -> list[UUID]:
        if not (outcomes or progress or logs):
            return []
        async with self._write() as conn:
            if logs:
                await conn.execute(job_logs.insert(), [log_row(e) for e in logs])
            if progress:
                await self._write_progress(conn, progress)
            done = await self._apply_outcomes(conn, outcomes) if outcomes else []
            applied = [job_id for job_id, _batch_id in done]
            finished = [str(i) for i in applied]
            await self._notify(conn, "finish", finished)
            requeued = sorted({o_q for o_q in await self._requeued_queues(conn, outcomes, applied)})
            await self._notify(conn, "insert", requeued)
        await self._after_commit("finish", finished)
        await self._after_commit("insert", requeued)
        if batch_ids := batch_ids_of(done):
            await self.settle_batches_quietly(batch_ids)
        return applied

    async def _requeued_queues(
        self, conn: AsyncConnection, outcomes: Sequence[Outcome], applied: Sequence[UUID]
    ) -> list[str]:
        released = {o.job_id for o in outcomes if o.kind is OutcomeKind.RELEASED} & set(applied)
        if not released:
            return []
        rows = await conn.execute(sa.select(jobs.c.queue).where(jobs.c.id.in_(released)).distinct())
        return [r.queue for r in rows]

    async def _write_progress(self, conn: AsyncConnection, updates: Sequence[ProgressUpdate]) -> None:
        c = jobs.c
        stmt = (
            jobs.update()
            .where(
                c.id == sa.bindparam("b_id"),
                c.attempt == sa.bindparam("b_attempt"),
                c.status == Status.RUNNING.value,
            )
            .values(
                progress=sa.bindparam("b_progress"),
                item_errors=sa.bindparam("b_item_errors"),
                item_errors_dropped=sa.bindparam("b_dropped"),
                updated_at=self._now(),
            )
        )
        await conn.execute(
            stmt,
            [
                {
                    "b_id": u.job_id,
                    "b_attempt": u.attempt,
                    "b_progress": u.progress.to_json(),
                    "b_item_errors": u.item_errors,
                    "b_dropped": u.item_errors_dropped,
                }
                for u in updates
            ],
        )

    async def _apply_outcomes(
        self, conn: AsyncConnection, outcomes: Sequence[Outcome]
    ) -> list[tuple[UUID, UUID | None]]:
        """Write a batch of outcomes, each only while the job still runs that attempt on that
        worker; the ids applied, each with its job's batch. Each dialect writes the batch in
        one statement."""
        raise NotImplementedError

    # --- cancel, stage, rescue ----------------------------------------------------------

    async def request_cancel(
        self, job_id: UUID, records: Callable[[Job], Sequence[AuditEntry]] | None = None
    ) -> tuple[Job | None, bool]:
        c = jobs.c
        at_once = (
            jobs.update()
            .where(c.id == job_id, c.status.in_([Status.SCHEDULED.value, Status.PENDING.value]))
            .values(status=Status.CANCELLED.value, completed_at=self._now(), updated_at=self._now())
            .returning(*jobs.c)
        )
        flag = (
            jobs.update()
            .where(c.id == job_id, c.status == Status.RUNNING.value)
            .values(cancel_requested=True, updated_at=self._now())
            .returning(*jobs.c)
        )
        topic = "finish"
        async with self._write() as conn:
            row = (await conn.execute(at_once)).first()
            if row is not None:
                await self.record_job_events(conn, [(row.id, row.status, row.owner_org_id, row.kind, row.batch_id)])
            else:
                row = (await conn.execute(flag)).first()
                topic = "cancel"
            if row is None:
                row = (await conn.execute(sa.select(jobs).where(c.id == job_id))).first()
                topic = ""
            if topic:
                await self._notify(conn, topic, [str(job_id)])
                if records is not None:
                    await journal_in(conn, records(job_from_row(row)))
        if topic:
            await self._after_commit(topic, [str(job_id)])
        job = job_from_row(row) if row else None
        if topic == "finish" and job is not None and job.batch_id is not None:  # a slot may be free
            await self.settle_batches_quietly([job.batch_id])
        return job, bool(topic)

    async def delete_job(
        self, job_id: UUID, records: Callable[[Job], Sequence[AuditEntry]] | None = None
    ) -> tuple[Job | None, bool]:
        c = jobs.c
        # Guarded by status in the statement itself: a claim that wins the race keeps its job.
        delete = jobs.delete().where(c.id == job_id, c.status != Status.RUNNING.value).returning(*jobs.c)
        async with self._write() as conn:
            row = (await conn.execute(delete)).first()
            if row is not None:
                await conn.execute(job_logs.delete().where(job_logs.c.job_id == job_id))
                deleted = job_from_row(row)
                if records is not None:
                    await journal_in(conn, records(deleted))
            else:
                row = (await conn.execute(sa.select(jobs).where(c.id == job_id))).first()
                return (job_from_row(row) if row else None), False
        if deleted.batch_id is not None and not deleted.status.is_finished:  # it held a slot, or waited
            await self.settle_batches_quietly([deleted.batch_id])
        return deleted, True

    # --- sealed values (key rotation; see conveyor.engine.sealing) --------------------------------

    async def sealed_jobs_page(
        self, kinds: Sequence[str], after: UUID | None, limit: int
    ) -> list[tuple[UUID, Any, Any, Any, Any]]:
        """(id, data, result, error, item errors) of jobs of `kinds`, in id order after `after`."""
        c = jobs.c
        columns = (c.id, c.data, c.result, c.error, c.item_errors)
        stmt = sa.select(*columns).where(c.kind.in_(kinds)).order_by(c.id).limit(limit)
        if after is not None:
            stmt = stmt.where(c.id > after)
        async with self._read_engine.connect() as conn:
            return [(r.id, r.data, r.result, r.error, r.item_errors) for r in await conn.execute(stmt)]

    async def replace_sealed(self, job_id: UUID, field: str, old: Any, new: Any) -> bool:
        """Set the job's `field` (data, result, error or item_errors) to `new` if it still holds `old`."""
        column = jobs.c[field]
        async with self._write() as conn:
            current = (await conn.execute(sa.select(column).where(jobs.c.id == job_id).with_for_update())).first()
            if current is None or current[0] != old:
                return False
            await conn.execute(jobs.update().where(jobs.c.id == job_id).values({field: new}))
        return True

    async def sealed_logs_page(self, after: int, limit: int, not_kid: str) -> list[tuple[int, UUID, str]]:
        """(id, job id, message) of log lines sealed with another key than `not_kid`, after `after`."""
        c = job_logs.c
        stmt = (
            sa.select(c.id, c.job_id, c.message)
            .where(c.id > after, c.message.like("sealed:1:%"), ~c.message.like(f"sealed:1:{not_kid}:%"))
            .order_by(c.id)
            .limit(limit)
        )
        async with self._read_engine.connect() as conn:
            return [(r.id, r.job_id, r.message) for r in await conn.execute(stmt)]

    async def replace_log_messages(self, messages: Sequence[tuple[int, str]]) -> None:
        if messages:
            stmt = job_logs.update().where(job_logs.c.id == sa.bindparam("log_id")).values(message=sa.bindparam("text"))
            async with self._write() as conn:
                await conn.execute(stmt, [{"log_id": i, "text": m} for i, m in messages])

    async def stage_due(self, now: datetime | None = None) -> int:
        c = jobs.c
        due = now if now is not None else self._now()
        # Rows another stager or a cancel holds are skipped, not waited on: the next tick gets them.
        chosen = sa.select(c.id).where(c.status == Status.SCHEDULED.value, c.run_at <= due)
        stmt = (
            jobs.update()
            .where(c.id.in_(self._lock_skipping(chosen).scalar_subquery()))
            .values(status=Status.PENDING.value, updated_at=self._now())
            .returning(c.queue)
        )
        async with self._write() as conn:
            queues = [r.queue for r in await conn.execute(stmt)]
            ready = sorted(set(queues))
            await self._notify(conn, "insert", ready)
        await self._after_commit("insert", ready)
        return len(queues)

    async def rescue_expired(self, now: datetime | None = None) -> list[UUID]:
        c = jobs.c
        expired_before = now if now is not None else self._now()
        lost = {
            "type": "WorkerLost",
            "message": "its lease ran out: the worker running it stopped answering, or never heard of its claim",
            "retryable": True,
        }
        out_of_attempts = c.attempt >= c.max_attempts
        # Skip rows a live statement holds (a late heartbeat, an outcome being written): if
        # their lease is still expired next tick, they are rescued then.
        chosen = (
            sa.select(c.id).where(c.status == Status.RUNNING.value, c.lease_expires_at < expired_before).order_by(c.id)
        )
        stmt = (
            jobs.update()
            .where(c.id.in_(self._lock_skipping(chosen).scalar_subquery()))
            .values(
                status=sa.case(
                    (c.cancel_requested, Status.CANCELLED.value),
                    (out_of_attempts, Status.FAILED.value),
                    else_=Status.PENDING.value,
                ),
                completed_at=sa.case((c.cancel_requested | out_of_attempts, self._now()), else_=None),
                error=sa.case((c.cancel_requested, None), else_=sa.literal(lost, jobs.c.error.type)),
                worker_id=None,
                lease_expires_at=None,
                updated_at=self._now(),
            )
            .returning(c.id, c.status, c.queue, c.batch_id, c.owner_org_id, c.kind)
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
            if rows:
                done = [(r.id, r.status, r.owner_org_id) for r in rows]
                await conn.execute(audit_journal.insert(), grouped_records(done, RESCUER, utc_now(), RESCUE_ACTIONS))
                await self.record_job_events(conn, [(r.id, r.status, r.owner_org_id, r.kind, r.batch_id) for r in rows])
            ready = sorted({r.queue for r in rows if r.status == Status.PENDING.value})
            finished = [str(r.id) for r in rows if r.status != Status.PENDING.value]
            await self._notify(conn, "insert", ready)
            await self._notify(conn, "finish", finished)
        await self._after_commit("insert", ready)
        await self._after_commit("finish", finished)
        if batch_ids := batch_ids_of((r.id, r.batch_id) for r in rows if r.status != Status.PENDING.value):
            await self.settle_batches_quietly(batch_ids)
        return [r.id for r in rows]


def _uuid_or_none(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None
