"""StoreHooks: what SqlStore gives the mixins that keep its other tables (schedules, audit,
batches, cache, rate windows, control), declared once. SqlStore and its dialects define
the real ones; the mixins inherit these declarations so that each is typed and complete
on its own."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class StoreHooks:
    dialect: str
    _read_engine: AsyncEngine

    def _write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE)."""
        raise NotImplementedError

    def _now(self) -> sa.ColumnElement[datetime]:
        raise NotImplementedError

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[datetime]:
        raise NotImplementedError

    def _lock_skipping(self, select: sa.Select[Any]) -> sa.Select[Any]:
        raise NotImplementedError

    async def _notify(self, conn: AsyncConnection, topic: str, payloads: Sequence[str]) -> None:
        raise NotImplementedError

    async def _after_commit(self, topic: str, payloads: Sequence[str]) -> None:
        raise NotImplementedError

    async def _count_inserted(self, conn: AsyncConnection, new_jobs: Sequence[Any]) -> None:
        """Count jobs just stored (NewJobs) in the roll-ups, within the transaction that stores
        them."""
        raise NotImplementedError

    async def record_job_events(self, conn: AsyncConnection, changes: Sequence[Any]) -> int:
        """The webhook outbox's rows for jobs that finished (store/webhooks.py)."""
        raise NotImplementedError

    async def insert_event(self, conn: AsyncConnection, event_type: str, org_id: str | None, payload: Any) -> bool:
        """An outbox row with its payload (store/webhooks.py)."""
        raise NotImplementedError

    def _upsert(self, table: sa.Table) -> Any:
        """INSERT … ON CONFLICT, which both dialects spell alike."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)
