"""The control plane's tables: API keys, paused queues, and the registry of live workers.

A mixin of SqlStore: the same connections and write lock as the jobs, portable SQL only
(none of this is on a hot path; an API key is looked up once per request at most, and the
callers cache it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from conveyor.audit import AuditEntry
from conveyor.model import utc_now
from conveyor.store.audit import journal_in
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import api_keys, queue_states, workers


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    secret_hash: str
    name: str
    role: str
    org_id: str | None
    study_id: str | None
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class QueueState:
    name: str
    paused: bool
    changed_at: datetime
    changed_by: str | None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    started_at: datetime
    last_seen_at: datetime


class ControlTables(StoreHooks):
    """API keys, queue states and worker presence (mixed into SqlStore)."""

    # --- API keys ---------------------------------------------------------------------------

    async def insert_api_key(self, record: ApiKeyRecord) -> None:
        async with self._write() as conn:
            await conn.execute(api_keys.insert().values(**_fields(record)))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        return ApiKeyRecord(**row._mapping) if row else None

    async def list_api_keys(self, *, org_id: str | None = None, every_org: bool = True) -> list[ApiKeyRecord]:
        stmt = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not every_org:
            stmt = stmt.where(api_keys.c.org_id.is_(None) if org_id is None else api_keys.c.org_id == org_id)
        async with self._read_engine.connect() as conn:
            return [ApiKeyRecord(**r._mapping) for r in await conn.execute(stmt)]

    async def revoke_api_key(
        self, key_id: str, records: Callable[[ApiKeyRecord], Sequence[AuditEntry]] | None = None
    ) -> ApiKeyRecord | None:
        """Revoke (once; revoking again keeps the first time); the key, or None if unknown.
        `records`: the audit records of a key revoked now, journaled in the same transaction."""
        c = api_keys.c
        async with self._write() as conn:
            revoked = await conn.execute(
                api_keys.update().where(c.id == key_id, c.revoked_at.is_(None)).values(revoked_at=utc_now())
            )
            row = (await conn.execute(sa.select(api_keys).where(c.id == key_id))).first()
            if revoked.rowcount and row is not None and records is not None:
                await journal_in(conn, records(ApiKeyRecord(**row._mapping)))
        return ApiKeyRecord(**row._mapping) if row else None

    async def count_api_keys(self) -> int:
        async with self._read_engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(api_keys))).scalar_one()

    # --- queues -------------------------------------------------------------------------------

    async def set_queue_paused(self, name: str, paused: bool, *, by: str | None = None) -> QueueState:
        values = {"name": name, "paused": paused, "changed_at": utc_now(), "changed_by": by}
        async with self._write() as conn:
            updated = await conn.execute(queue_states.update().where(queue_states.c.name == name).values(**values))
            if updated.rowcount == 0:
                await conn.execute(queue_states.insert().values(**values))
        return QueueState(**values)  # type: ignore[arg-type]

    async def queue_states(self) -> dict[str, QueueState]:
        async with self._read_engine.connect() as conn:
            rows = await conn.execute(sa.select(queue_states))
            return {r.name: QueueState(**r._mapping) for r in rows}

    # --- workers --------------------------------------------------------------------------------

    async def record_worker(self, record: WorkerRecord) -> None:
        """Insert or refresh a worker's row (its presence: last_seen_at, running)."""
        values = _fields(record)
        async with self._write() as conn:
            updated = await conn.execute(
                workers.update()
                .where(workers.c.id == record.id)
                .values(last_seen_at=record.last_seen_at, running=record.running)
            )
            if updated.rowcount == 0:
                await conn.execute(workers.insert().values(**values))

    async def forget_workers(self, ids: Sequence[str] = (), *, unseen_for: timedelta | None = None) -> int:
        """Delete the named workers' rows, or those not seen for `unseen_for`."""
        stmt = workers.delete()
        if ids:
            stmt = stmt.where(workers.c.id.in_(ids))
        elif unseen_for is not None:
            stmt = stmt.where(workers.c.last_seen_at < utc_now() - unseen_for)
        else:
            return 0
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount

    async def list_workers(self) -> list[WorkerRecord]:
        async with self._read_engine.connect() as conn:
            rows = await conn.execute(sa.select(workers).order_by(workers.c.started_at))
            return [WorkerRecord(**r._mapping) for r in rows]


def _fields(record: Any) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}
