"""Notifications: messages to one recipient, with their webhook event (a mixin of SqlStore).

A notification is written with its `notification.created` outbox event in one transaction,
under a unique delivery key: whoever writes the same key again (a retried attempt, a second
scheduler's duplicate) finds the first row and writes no second event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from conveyor.model import Visibility
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import notifications
from conveyor.store.webhooks import NOTIFICATION_CREATED


@dataclass(frozen=True, slots=True)
class Notification:
    id: UUID
    org_id: str | None
    study_id: str | None
    user_id: str | None
    kind: str
    body: Any  # as stored: sealed when the installation has a keyring
    delivery_key: str
    job_id: UUID | None
    created_at: datetime
    read_at: datetime | None = None


def notification_from_row(row: Any) -> Notification:
    return Notification(**{name: row._mapping[name] for name in Notification.__dataclass_fields__})


def _visible(visible_to: Visibility | None) -> list[sa.ColumnElement[bool]]:
    """What a caller sees, by the rule for jobs (conveyor.access): the recipient is the owner."""
    if visible_to is None:
        return []
    c = notifications.c
    clauses = [c.org_id.is_(None) if visible_to.org_id is None else c.org_id == visible_to.org_id]
    if visible_to.study_id is not None:
        clauses.append(c.study_id == visible_to.study_id)
    if visible_to.user_id is not None:
        clauses.append(c.user_id == visible_to.user_id)
    return clauses


class NotificationTables(StoreHooks):
    """Notifications (mixed into SqlStore)."""

    async def insert_notification(self, notification: Notification, event: Any) -> tuple[Notification, bool]:
        """Store it and, when new, its outbox event (payload `event`, None: no event); the
        notification as stored, and whether this call created it."""
        values = {name: getattr(notification, name) for name in Notification.__dataclass_fields__}
        async with self._write() as conn:
            inserted = (
                await conn.execute(
                    self._upsert(notifications)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=[notifications.c.delivery_key])
                    .returning(*notifications.c)
                )
            ).first()
            if inserted is None:
                stmt = sa.select(notifications).where(notifications.c.delivery_key == notification.delivery_key)
                return notification_from_row((await conn.execute(stmt)).one()), False
            if event is not None:
                await self.insert_event(conn, NOTIFICATION_CREATED, notification.org_id, event)
        return notification_from_row(inserted), True

    async def get_notification(self, notification_id: UUID) -> Notification | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(notifications).where(notifications.c.id == notification_id))).first()
        return notification_from_row(row) if row else None

    async def list_notifications(
        self,
        *,
        visible_to: Visibility | None,
        user_id: str | None = None,
        kind: str | None = None,
        unread: bool | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Notification], int]:
        """A page of the notifications the caller sees, newest first, and how many match."""
        c = notifications.c
        clauses = _visible(visible_to)
        if user_id is not None:
            clauses.append(c.user_id == user_id)
        if kind is not None:
            clauses.append(c.kind == kind)
        if unread is not None:
            clauses.append(c.read_at.is_(None) if unread else c.read_at.is_not(None))
        page = sa.select(notifications).where(*clauses).order_by(c.created_at.desc(), c.id.desc())
        total = sa.select(sa.func.count()).select_from(notifications).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page.limit(limit).offset(offset))).all()
            count = (await conn.execute(total)).scalar_one()
        return [notification_from_row(r) for r in rows], int(count)

    async def mark_notification_read(self, notification_id: UUID, now: datetime) -> Notification | None:
        """Mark it read (the first reading's time is kept); the notification, None if unknown."""
        c = notifications.c
        async with self._write() as conn:
            await conn.execute(
                notifications.update().where(c.id == notification_id, c.read_at.is_(None)).values(read_at=now)
            )
            row = (await conn.execute(sa.select(notifications).where(c.id == notification_id))).first()
        return notification_from_row(row) if row else None

    async def prune_notifications(self, before: datetime, limit: int = 500) -> int:
        """Notifications read before `before`, up to `limit` (unread ones stay); how many went."""
        c = notifications.c
        chosen = sa.select(c.id).where(c.read_at < before).limit(limit)
        async with self._write() as conn:
            result = await conn.execute(notifications.delete().where(c.id.in_(chosen.scalar_subquery())))
        return int(result.rowcount or 0)

    async def notifications_page(self, after: UUID | None, limit: int) -> list[Notification]:
        """Notifications in id order after `after` (key rotation walks them)."""
        c = notifications.c
        stmt = sa.select(notifications).order_by(c.id).limit(limit)
        if after is not None:
            stmt = stmt.where(c.id > after)
        async with self._read_engine.connect() as conn:
            return [notification_from_row(r) for r in await conn.execute(stmt)]

    async def replace_notification_body(self, notification_id: UUID, old: Any, new: Any) -> bool:
        c = notifications.c
        async with self._write() as conn:
            current = (await conn.execute(sa.select(c.body).where(c.id == notification_id))).first()
            if current is None or current[0] != old:
                return False
            await conn.execute(notifications.update().where(c.id == notification_id).values(body=new))
        return True
