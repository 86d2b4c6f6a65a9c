"""The audit trail's tables: appending to the hash chain, reading it in pages, checkpoints.

A mixin of SqlStore. Appends are serialised so that each record links to the one before it:
on PostgreSQL by a transaction-scoped advisory lock taken before the head is read, on SQLite
by the write lock every write transaction (BEGIN IMMEDIATE) already holds. Nothing here
updates or deletes a record; on PostgreSQL triggers refuse it (migration 0005).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from conveyor.audit import GENESIS, AuditEntry, AuditRecord, Checkpoint, chain, sign_checkpoint
from conveyor.model import utc_now
from conveyor.store.schema import audit, audit_checkpoints

# An arbitrary constant: the key of the advisory lock that serialises appends.
PG_AUDIT_LOCK = 7_412_202_612


@dataclass(frozen=True, slots=True)
class AuditFilter:
    org_id: str | None = None
    every_org: bool = True  # False: only org_id's records
    actor_id: str | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        c = audit.c
        out: list[sa.ColumnElement[bool]] = []
        if not self.every_org:
            out.append(c.org_id.is_(None) if self.org_id is None else c.org_id == self.org_id)
        for column, value in [
            (c.actor_id, self.actor_id),
            (c.action, self.action),
            (c.object_type, self.object_type),
            (c.object_id, self.object_id),
        ]:
            if value is not None:
                out.append(column == value)
        if self.since is not None:
            out.append(c.recorded_at >= self.since)
        if self.until is not None:
            out.append(c.recorded_at < self.until)
        return out


class AuditTables:
    """Append, page through and checkpoint the audit chain (mixed into SqlStore)."""

    _read_engine: AsyncEngine

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:  # provided by SqlStore
        raise NotImplementedError

    async def append_audit(
        self, entries: Sequence[AuditEntry], *, checkpoint_every: int = 0, key: str | None = None
    ) -> list[AuditRecord]:
        """Chain `entries` after the head, in one transaction; with `checkpoint_every`, also
        store a checkpoint of the new head when the chain passes a multiple of it."""
        if not entries:
            return []
        async with self._write() as conn:
            await _lock_chain(conn)
            prev_seq, prev_hash = await _head(conn)
            records = chain(list(entries), prev_seq=prev_seq, prev_hash=prev_hash, now=utc_now())
            await conn.execute(audit.insert(), [r.fields() for r in records])
            head = records[-1]
            if checkpoint_every and head.seq // checkpoint_every > prev_seq // checkpoint_every:
                await _insert_checkpoint(conn, head.seq, head.hash, key)
        return records

    async def checkpoint_audit(self, *, key: str | None) -> Checkpoint | None:
        """A checkpoint of the head now (the existing one if the head has one); None: empty chain."""
        async with self._write() as conn:
            await _lock_chain(conn)
            seq, head_hash = await _head(conn)
            if seq == 0:
                return None
            existing = (await conn.execute(sa.select(audit_checkpoints).where(audit_checkpoints.c.seq == seq))).first()
            if existing is not None:
                return Checkpoint(**existing._mapping)
            return await _insert_checkpoint(conn, seq, head_hash, key)

    async def audit_page(self, after_seq: int, limit: int) -> list[AuditRecord]:
        """Records with seq > after_seq, in seq order (a keyset page: flat cost however deep)."""
        stmt = sa.select(audit).where(audit.c.seq > after_seq).order_by(audit.c.seq).limit(limit)
        async with self._read_engine.connect() as conn:
            return [AuditRecord(**r._mapping) for r in await conn.execute(stmt)]

    async def audit_checkpoints(self) -> list[Checkpoint]:
        async with self._read_engine.connect() as conn:
            rows = await conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
            return [Checkpoint(**r._mapping) for r in rows]

    async def list_audit(
        self, where: AuditFilter, *, limit: int, offset: int = 0, after_seq: int = 0, count: bool = True
    ) -> tuple[list[AuditRecord], int]:
        """A page of matching records, oldest first, and how many match in all (-1 unless `count`)."""
        clauses = where.clauses()
        stmt = (
            sa.select(audit).where(*clauses, audit.c.seq > after_seq).order_by(audit.c.seq).limit(limit).offset(offset)
        )
        total_of = sa.select(sa.func.count()).select_from(audit).where(*clauses)
        async with self._read_engine.connect() as conn:
            records = [AuditRecord(**r._mapping) for r in await conn.execute(stmt)]
            total = (await conn.execute(total_of)).scalar_one() if count else -1
        return records, total


async def _lock_chain(conn: AsyncConnection) -> None:
    # PostgreSQL: concurrent appenders would read the same head and fork the chain; the lock
    # makes them take turns until commit. SQLite's write transaction is exclusive already.
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})


async def _head(conn: AsyncConnection) -> tuple[int, str]:
    row = (await conn.execute(sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1))).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


async def _insert_checkpoint(conn: AsyncConnection, seq: int, head_hash: str, key: str | None) -> Checkpoint:
    checkpoint = sign_checkpoint(seq, head_hash, utc_now(), key)
    values: dict[str, Any] = {name: getattr(checkpoint, name) for name in checkpoint.__slots__}
    await conn.execute(audit_checkpoints.insert().values(**values))
    return checkpoint
