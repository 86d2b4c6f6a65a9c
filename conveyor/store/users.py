"""Local users' table: accounts, their password hashes and lock-out state.

A mixin of SqlStore. Each change is made in one transaction with its audit records (journaled
in it, conveyor.store.audit.journal_in), so a user is never changed unrecorded. A change
reads the row first under the write lock (PostgreSQL: FOR UPDATE; SQLite's write transaction
is exclusive), so that concurrent failed sign-ins count each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.audit import AuditEntry
from conveyor.store.audit import journal_in
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import users


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    name: str
    role: str
    org_id: str | None
    password_hash: str
    failed_attempts: int
    locked_until: datetime | None
    password_changed_at: datetime
    disabled: bool
    created_at: datetime
    created_by: str | None
    last_sign_in_at: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


# A change: the new column values for the user as read in the transaction (None: no change).
Change = Callable[[UserRecord], dict[str, Any] | None]
# The audit records of a change: from the user before and after it.
Records = Callable[[UserRecord, UserRecord], Sequence[AuditEntry]]


class UserTables(StoreHooks):
    """Local users (mixed into SqlStore)."""

    async def insert_user(self, record: UserRecord, records: Sequence[AuditEntry]) -> bool:
        """Insert the user with its records; False (nothing written) when the id is taken."""
        values = {name: getattr(record, name) for name in record.__slots__}
        async with self._write() as conn:
            if (await conn.execute(sa.select(users.c.id).where(users.c.id == record.id))).first() is not None:
                return False
            await conn.execute(users.insert().values(**values))
            await journal_in(conn, records)
        return True

    async def get_user(self, user_id: str) -> UserRecord | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        return UserRecord(**row._mapping) if row else None

    async def list_users(self, *, org_id: str | None = None, every_org: bool = True) -> list[UserRecord]:
        stmt = sa.select(users).order_by(users.c.id)
        if not every_org:
            stmt = stmt.where(users.c.org_id.is_(None) if org_id is None else users.c.org_id == org_id)
        async with self._read_engine.connect() as conn:
            return [UserRecord(**r._mapping) for r in await conn.execute(stmt)]

    async def change_user(self, user_id: str, change: Change, records: Records) -> tuple[UserRecord, UserRecord] | None:
        """Apply `change` to the user as it is now, with the records it makes, in one
        transaction; (before, after), or None for an unknown user."""
        select = sa.select(users).where(users.c.id == user_id)
        if self.dialect == "postgresql":
            select = select.with_for_update()
        async with self._write() as conn:
            row = (await conn.execute(select)).first()
            if row is None:
                return None
            before = UserRecord(**row._mapping)
            values = change(before)
            if not values:
                return before, before
            updated = (
                await conn.execute(users.update().where(users.c.id == user_id).values(**values).returning(*users.c))
            ).one()
            after = UserRecord(**updated._mapping)
            await journal_in(conn, records(before, after))
        return before, after
