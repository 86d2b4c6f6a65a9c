"""Webhook subscriptions, the event outbox and delivery records (a mixin of SqlStore).

Events are written to the outbox (conveyor_webhook_events) in the transaction that makes
them happen: outcomes (PostgreSQL: a CTE of APPLY_OUTCOMES; SQLite: `record_job_events` in
the flush), cancels, rescues, batch cancels, alerts. Only organisations with an enabled
subscription that wants the event get a row, so an installation without subscriptions pays
one probe of an empty table per outcome batch. The leader reads the outbox, turns each event
into delivery jobs (one per subscription, under an idempotency key, so a leader that dies
half-way and its successor make each delivery once) and deletes what it handled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.model import FINISHED, Job, Status, new_job_id, utc_now
from conveyor.store.hooks import StoreHooks
from conveyor.store.rows import job_from_row
from conveyor.store.schema import batches, jobs, webhook_deliveries, webhook_events, webhooks

# The job type that delivers events: its own outcomes make no events (no loop of deliveries).
DELIVERY_KIND = "webhook_delivery"
JOB_EVENTS = tuple(f"job.{s.value}" for s in (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMEOUT))
BATCH_COMPLETED = "batch.completed"
ALERT_RAISED, ALERT_CLEARED = "alert.raised", "alert.cleared"
NOTIFICATION_CREATED = "notification.created"  # written by store/notifications.py
EVENT_TYPES = (*JOB_EVENTS, BATCH_COMPLETED, ALERT_RAISED, ALERT_CLEARED, NOTIFICATION_CREATED)
_FINISHED_VALUES = tuple(s.value for s in FINISHED)


@dataclass(frozen=True, slots=True)
class Webhook:
    id: UUID
    org_id: str | None
    url: str
    events: tuple[str, ...]
    secret: str  # as stored: sealed when the installation has a keyring
    description: str | None
    enabled: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str) -> bool:
        return self.enabled and event_type in self.events


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    id: UUID
    created_at: datetime
    org_id: str | None
    event_type: str
    job_id: UUID | None
    batch_id: UUID | None
    payload: Any


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt at delivering one event to one subscription."""

    webhook_id: UUID
    event_id: str
    event_type: str
    job_id: UUID
    attempt: int
    status_code: int | None
    success: bool
    duration_ms: float
    error: str | None
    delivered_at: datetime
    id: int | None = None


# (job id, status, organisation, kind, batch id) of a job that reached a status.
JobChange = tuple[UUID, str, str | None, str, UUID | None]


def webhook_from_row(row: Any) -> Webhook:
    m = row._mapping
    return Webhook(
        id=m["id"],
        org_id=m["org_id"],
        url=m["url"],
        events=tuple(m["events"] or ()),
        secret=m["secret"],
        description=m["description"],
        enabled=bool(m["enabled"]),
        created_by=m["created_by"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _delivery_from_row(row: Any) -> Delivery:
    m = row._mapping
    return Delivery(
        id=m["id"],
        webhook_id=m["webhook_id"],
        event_id=m["event_id"],
        event_type=m["event_type"],
        job_id=m["job_id"],
        attempt=m["attempt"],
        status_code=m["status_code"],
        success=bool(m["success"]),
        duration_ms=m["duration_ms"],
        error=m["error"],
        delivered_at=m["delivered_at"],
    )


def _org_is(column: Any, org_id: str | None) -> sa.ColumnElement[bool]:
    return column.is_(None) if org_id is None else column == org_id


class WebhookTables(StoreHooks):
    """Subscriptions, outbox, deliveries (mixed into SqlStore)."""

    # --- subscriptions ---------------------------------------------------------------------------

    async def insert_webhook(self, webhook: Webhook) -> Webhook:
        values = {f: getattr(webhook, f) for f in Webhook.__dataclass_fields__}
        values["events"] = list(webhook.events)
        async with self._write() as conn:
            await conn.execute(webhooks.insert().values(**values))
        return webhook

    async def get_webhook(self, webhook_id: UUID) -> Webhook | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))).first()
        return webhook_from_row(row) if row else None

    async def list_webhooks(
        self, *, org_id: str | None = None, every_org: bool = False, limit: int = 100, offset: int = 0
    ) -> tuple[list[Webhook], int]:
        """A page of subscriptions of `org_id` (every organisation's with `every_org`), newest
        first, and how many in all."""
        c = webhooks.c
        clauses = [] if every_org else [_org_is(c.org_id, org_id)]
        page = (
            sa.select(webhooks).where(*clauses).order_by(c.created_at.desc(), c.id.desc()).limit(limit).offset(offset)
        )
        total = sa.select(sa.func.count()).select_from(webhooks).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        return [webhook_from_row(r) for r in rows], int(count)

    async def update_webhook(self, webhook_id: UUID, **changes: Any) -> tuple[Webhook | None, Webhook | None]:
        """Apply `changes` (url, events, secret, description, enabled); (before, after), both
        None when the subscription does not exist."""
        if "events" in changes:
            changes["events"] = list(changes["events"])
        async with self._write() as conn:
            row = (await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id).with_for_update())).first()
            if row is None:
                return None, None
            before = webhook_from_row(row)
            stmt = (
                webhooks.update()
                .where(webhooks.c.id == webhook_id)
                .values(**changes, updated_at=utc_now())
                .returning(*webhooks.c)
            )
            after = webhook_from_row((await conn.execute(stmt)).one())
        return before, after

    async def replace_webhook_secret(self, webhook_id: UUID, old: str, new: str) -> bool:
        """Set the subscription's stored secret to `new` if it still holds `old` (key rotation:
        the same secret sealed anew, so neither `updated_at` nor the audit trail changes)."""
        c = webhooks.c
        stmt = webhooks.update().where(c.id == webhook_id, c.secret == old).values(secret=new)
        async with self._write() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def delete_webhook(self, webhook_id: UUID) -> Webhook | None:
        stmt = webhooks.delete().where(webhooks.c.id == webhook_id).returning(*webhooks.c)
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
        return webhook_from_row(row) if row else None

    async def enabled_webhooks(self, org_ids: Iterable[str | None]) -> list[Webhook]:
        """The enabled subscriptions of these organisations (None: jobs of no organisation)."""
        wanted = set(org_ids)
        if not wanted:
            return []
        named = [o for o in wanted if o is not None]
        c = webhooks.c
        match = [c.org_id.in_(named)] if named else []
        if None in wanted:
            match.append(c.org_id.is_(None))
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(sa.select(webhooks).where(c.enabled, sa.or_(*match)))).all()
        return [webhook_from_row(r) for r in rows]

    # --- the outbox --------------------------------------------------------------------------------

    async def record_job_events(self, conn: AsyncConnection, changes: Sequence[JobChange]) -> int:
        """Inside the caller's transaction: an outbox row for each job that reached a finished
        status, where its organisation subscribes to that event (or, for a batch member, to
        batch.completed). How many were written."""
        changes = [ch for ch in changes if ch[1] in _FINISHED_VALUES and ch[3] != DELIVERY_KIND]
        if not changes:
            return 0
        orgs = {ch[2] for ch in changes}
        named = [o for o in orgs if o is not None]
        c = webhooks.c
        match = [c.org_id.in_(named)] if named else []
        if None in orgs:
            match.append(c.org_id.is_(None))
        rows = (await conn.execute(sa.select(c.org_id, c.events).where(c.enabled, sa.or_(*match)))).all()
        if not rows:
            return 0
        wanted: dict[str | None, set[str]] = {}
        for org_id, events in rows:
            wanted.setdefault(org_id, set()).update(events or ())
        now = utc_now()
        records = []
        for job_id, status, org_id, _kind, batch_id in changes:
            types = wanted.get(org_id, set())
            event_type = f"job.{status}"
            if event_type in types or (batch_id is not None and BATCH_COMPLETED in types):
                records.append(
                    {"id": new_job_id(), "created_at": now, "org_id": org_id, "event_type": event_type,
                     "job_id": job_id, "batch_id": batch_id, "payload": None}
                )  # fmt: skip
        if records:
            await conn.execute(webhook_events.insert(), records)
        return len(records)

    async def insert_event(self, conn: AsyncConnection, event_type: str, org_id: str | None, payload: Any) -> bool:
        """Inside the caller's transaction: an outbox row for an event with its payload (alerts),
        if the organisation subscribes to it."""
        c = webhooks.c
        subscribed = (
            (await conn.execute(sa.select(c.events).where(c.enabled, _org_is(c.org_id, org_id)))).scalars().all()
        )
        if not any(event_type in (events or ()) for events in subscribed):
            return False
        await conn.execute(
            webhook_events.insert().values(
                id=new_job_id(), created_at=utc_now(), org_id=org_id, event_type=event_type, payload=payload
            )
        )
        return True

    async def webhook_events_page(self, limit: int) -> list[WebhookEvent]:
        """The oldest events of the outbox."""
        c = webhook_events.c
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(sa.select(webhook_events).order_by(c.created_at, c.id).limit(limit))).all()
        return [WebhookEvent(r.id, r.created_at, r.org_id, r.event_type, r.job_id, r.batch_id, r.payload) for r in rows]

    async def delete_webhook_events(self, ids: Sequence[UUID]) -> None:
        if ids:
            async with self._write() as conn:
                await conn.execute(webhook_events.delete().where(webhook_events.c.id.in_(ids)))

    async def announce_completed_batches(self, batch_ids: Iterable[UUID]) -> list[UUID]:
        """For each batch whose members have all finished and whose completion was not yet
        announced: mark it announced and put a batch.completed event in the outbox (where its
        organisation subscribes), in one transaction. The batches announced."""
        ids = sorted(set(batch_ids))
        if not ids:
            return []
        j, b = jobs.c, batches.c
        unfinished = sa.exists().where(j.batch_id == b.id, j.status.notin_(_FINISHED_VALUES))
        stmt = (
            batches.update()
            .where(b.id.in_(ids), b.completion_announced_at.is_(None), ~unfinished)
            .values(completion_announced_at=utc_now())
            .returning(b.id, b.owner_org_id)
        )
        async with self._write() as conn:
            done = (await conn.execute(stmt)).all()
            for batch_id, org_id in done:
                c = webhooks.c
                subscribed = (
                    (await conn.execute(sa.select(c.events).where(c.enabled, _org_is(c.org_id, org_id))))
                    .scalars()
                    .all()
                )
                if any(BATCH_COMPLETED in (events or ()) for events in subscribed):
                    await conn.execute(
                        webhook_events.insert().values(
                            id=new_job_id(),
                            created_at=utc_now(),
                            org_id=org_id,
                            event_type=BATCH_COMPLETED,
                            batch_id=batch_id,
                        )
                    )
        return [r.id for r in done]

    # --- deliveries ----------------------------------------------------------------------------------

    async def insert_delivery(self, delivery: Delivery) -> Delivery:
        values = {f: getattr(delivery, f) for f in Delivery.__dataclass_fields__ if f != "id"}
        async with self._write() as conn:
            new_id = (
                await conn.execute(webhook_deliveries.insert().values(**values).returning(webhook_deliveries.c.id))
            ).scalar_one()
        return replace(delivery, id=new_id)

    async def list_deliveries(self, webhook_id: UUID, *, limit: int, offset: int) -> tuple[list[Delivery], int]:
        """A page of a subscription's delivery attempts, newest first, and how many in all."""
        c = webhook_deliveries.c
        page = (
            sa.select(webhook_deliveries)
            .where(c.webhook_id == webhook_id)
            .order_by(c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        total = sa.select(sa.func.count()).select_from(webhook_deliveries).where(c.webhook_id == webhook_id)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        return [_delivery_from_row(r) for r in rows], int(count)

    async def prune_deliveries(self, before: datetime, limit: int = 500) -> int:
        """Delivery records older than `before`, up to `limit` of them; how many went."""
        c = webhook_deliveries.c
        chosen = sa.select(c.id).where(c.delivered_at < before).order_by(c.delivered_at).limit(limit)
        async with self._write() as conn:
            result = await conn.execute(webhook_deliveries.delete().where(c.id.in_(chosen.scalar_subquery())))
        return int(result.rowcount or 0)

    async def get_jobs(self, ids: Sequence[UUID]) -> list[Job]:
        """The jobs of these ids that exist (in no order)."""
        if not ids:
            return []
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(sa.select(jobs).where(jobs.c.id.in_(list(ids))))).all()
        return [job_from_row(r) for r in rows]
