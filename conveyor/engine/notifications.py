"""Notifications: messages for one recipient (a reminder due, a refill needed), read over the
API and announced on the webhook channel.

`notify` is what a job calls (through `ctx.service("notifications")`): the body is sealed with
the keyring, and the row and its `notification.created` outbox event are written in one
transaction under the caller's delivery key, so one firing makes one notification and one
event however often its job runs. The event carries no body (minimum necessary): the
receiver reads the notification through the API. Who sees a notification is decided as for
jobs (conveyor.access), the recipient standing for the job's user; reading a body is
audited (notification.read), as reading a sensitive job is.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from uuid import UUID

from conveyor.crypto import Keyring, SealError
from conveyor.engine import Engine
from conveyor.errors import NotificationNotFound, PermanentError
from conveyor.model import MAX_NAME_LENGTH, Owner, Visibility, new_job_id, too_long_owner_field, utc_now
from conveyor.store.notifications import Notification
from conveyor.store.schema import notifications as notifications_table


def body_aad(notification_id: UUID) -> str:
    return f"conveyor:notification:{notification_id}:body"


# The longest text a notification's columns hold: the schema's sizes.
_TEXT_LIMITS = {name: notifications_table.c[name].type.length for name in ("user_id", "kind", "delivery_key")}


def _check_text(*, owner: Owner, user_id: str | None, kind: str, delivery_key: str) -> None:
    """A job that writes a notification no database column could hold fails for good, saying
    which field (PostgreSQL raised its own error, retried as if passing; SQLite stored it)."""
    given = {"user_id": user_id, "kind": kind, "delivery_key": delivery_key}
    for name, limit in _TEXT_LIMITS.items():
        value = given[name]
        if value is not None and len(value) > limit:
            raise PermanentError(f"notification {name} longer than {limit} characters")
    if field := too_long_owner_field(owner):
        raise PermanentError(f"notification {field} longer than {MAX_NAME_LENGTH} characters")


class Notifications:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store: Any = engine.store
        self.keyring = engine.sealing.keyring

    async def notify(
        self,
        *,
        owner: Owner,
        user_id: str | None,
        kind: str,
        body: dict[str, Any],
        delivery_key: str,
        job_id: UUID | None = None,
        now: datetime | None = None,
    ) -> tuple[Notification, bool]:
        """Write a notification to `user_id` in `owner`'s organisation (and study), with its
        webhook event; (the notification, opened; whether this call created it)."""
        if self.keyring is None:
            raise PermanentError("notifications are stored encrypted, and no encryption key is configured")
        _check_text(owner=owner, user_id=user_id, kind=kind, delivery_key=delivery_key)
        notification_id = new_job_id()
        sealed = self.keyring.seal_json(body, body_aad(notification_id))
        record = Notification(
            id=notification_id,
            org_id=owner.org_id,
            study_id=owner.study_id,
            user_id=user_id,
            kind=kind,
            body=sealed,
            delivery_key=delivery_key,
            job_id=job_id,
            created_at=now or utc_now(),
        )
        event = {
            "notification": {
                "id": str(notification_id),
                "kind": kind,
                "userId": user_id,
                "jobId": None if job_id is None else str(job_id),
            }
        }
        stored, created = await self.store.insert_notification(record, event)
        return self.opened(stored), created

    def opened(self, notification: Notification) -> Notification:
        """With its body opened where this process holds the key (else left sealed)."""
        if self.keyring is None:
            return notification
        try:
            body = self.keyring.open_json(notification.body, body_aad(notification.id))
        except SealError:
            return notification
        return dataclasses.replace(notification, body=body)

    async def get(self, notification_id: UUID, *, visible_to: Visibility | None = None) -> Notification:
        """NotificationNotFound also when it lies outside `visible_to` (ids leak nothing)."""
        found = await self.store.get_notification(notification_id)
        if found is None or (visible_to is not None and not visible_to.allows(_owner(found))):
            raise NotificationNotFound(notification_id)
        await self._record_read([found])
        return self.opened(found)

    async def list(
        self,
        *,
        visible_to: Visibility | None,
        user_id: str | None = None,
        kind: str | None = None,
        unread: bool | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[Notification], int]:
        page, total = await self.store.list_notifications(
            visible_to=visible_to, user_id=user_id, kind=kind, unread=unread, limit=limit, offset=offset
        )
        await self._record_read(page)
        return [self.opened(n) for n in page], total

    async def mark_read(self, notification_id: UUID, *, visible_to: Visibility | None = None) -> Notification:
        found = await self.store.get_notification(notification_id)
        if found is None or (visible_to is not None and not visible_to.allows(_owner(found))):
            raise NotificationNotFound(notification_id)
        marked = await self.store.mark_notification_read(notification_id, utc_now())
        if marked is None:
            raise NotificationNotFound(notification_id)
        if found.read_at is None:
            await self.engine.audit.record(
                "notification.marked_read", "notification", notification_id, org_id=found.org_id
            )
        return self.opened(marked)

    async def _record_read(self, page: list[Notification]) -> None:
        if not page:
            return
        orgs = {n.org_id for n in page}
        await self.engine.audit.record(
            "notification.read", "notification", page[0].id if len(page) == 1 else None,
            after={"count": len(page), "notificationIds": [str(n.id) for n in page]},
            org_id=orgs.pop() if len(orgs) == 1 else None,
        )  # fmt: skip

    async def rotate(self, batch: int = 500) -> int:
        return await rotate_bodies(self.store, self.keyring, batch)


async def rotate_bodies(store: Any, keyring: Keyring | None, batch: int = 500) -> int:
    """Re-seal with the current key the bodies another key sealed; how many."""
    if keyring is None:
        return 0
    done = 0
    after = None
    while page := await store.notifications_page(after, batch):
        for n in page:
            if keyring.kid_of(n.body) in (None, keyring.current):
                continue
            bound = body_aad(n.id)
            resealed = keyring.seal_json(keyring.open_json(n.body, bound), bound)
            done += await store.replace_notification_body(n.id, n.body, resealed)
        after = page[-1].id
    return done


def _owner(notification: Notification) -> Owner:
    return Owner(user_id=notification.user_id, org_id=notification.org_id, study_id=notification.study_id)
