"""Pack state: namespaced JSON documents per owner scope (a mixin of SqlStore).

Values arrive sealed (conveyor.engine.packstate seals and opens them); this layer keeps them
with a version that counts writes. A write names the version it read (None: the key must not
exist yet) and changes nothing when another write came first, so two jobs that update the
same document never lose one another's change: the loser reads again and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from conveyor.model import utc_now
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import pack_state

# Any version: the write replaces whatever is there (or creates the key).
ANY_VERSION = -1


@dataclass(frozen=True, slots=True)
class StoredState:
    scope: str
    namespace: str
    key: str
    value: Any  # as stored: sealed
    version: int
    created_at: datetime
    updated_at: datetime


def _state_of(row: Any) -> StoredState:
    m = row._mapping
    return StoredState(m["scope"], m["namespace"], m["key"], m["value"], m["version"], m["created_at"], m["updated_at"])


def _where(scope: str, namespace: str, key: str) -> sa.ColumnElement[bool]:
    c = pack_state.c
    return sa.and_(c.scope == scope, c.namespace == namespace, c.key == key)


class PackStateTables(StoreHooks):
    """Pack state (mixed into SqlStore)."""

    async def get_state(self, scope: str, namespace: str, key: str) -> StoredState | None:
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(sa.select(pack_state).where(_where(scope, namespace, key)))).first()
        return _state_of(row) if row else None

    async def put_state(
        self, scope: str, namespace: str, key: str, value: Any, *, expected: int | None
    ) -> StoredState | None:
        """Write `value` if the key is at version `expected` (None: absent; ANY_VERSION:
        whatever it is); the document as written, or None when the version did not match."""
        now = utc_now()
        where = _where(scope, namespace, key)
        select = sa.select(pack_state).where(where)
        if self.dialect == "postgresql":
            select = select.with_for_update()
        async with self._write() as conn:
            current = (await conn.execute(select)).first()
            found = None if current is None else current.version
            if expected != ANY_VERSION and found != expected:
                return None
            if current is None:
                # Two first writes at once: the primary key lets one in; the other is a conflict.
                inserted = await conn.execute(
                    self._upsert(pack_state)
                    .values(scope=scope, namespace=namespace, key=key, value=value, version=1,
                            created_at=now, updated_at=now)
                    .on_conflict_do_nothing()
                    .returning(*pack_state.c)
                )  # fmt: skip
                row = inserted.first()
                return _state_of(row) if row else None
            stmt = (
                pack_state.update()
                .where(where, pack_state.c.version == current.version)
                .values(value=value, version=current.version + 1, updated_at=now)
                .returning(*pack_state.c)
            )
            row = (await conn.execute(stmt)).first()
        return _state_of(row) if row else None

    async def delete_state(self, scope: str, namespace: str, key: str, *, expected: int = ANY_VERSION) -> bool:
        where = _where(scope, namespace, key)
        if expected != ANY_VERSION:
            where = sa.and_(where, pack_state.c.version == expected)
        async with self._write() as conn:
            result = await conn.execute(pack_state.delete().where(where))
        return bool(result.rowcount)

    async def list_state(
        self, scope: str, namespace: str, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> list[StoredState]:
        """Documents of the namespace whose key starts with `prefix`, in key order after `after`."""
        c = pack_state.c
        stmt = sa.select(pack_state).where(c.scope == scope, c.namespace == namespace)
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(c.key.like(escaped + "%", escape="\\"))
        if after is not None:
            stmt = stmt.where(c.key > after)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(stmt.order_by(c.key).limit(limit))).all()
        return [_state_of(r) for r in rows]

    async def state_page(self, after: tuple[str, str, str] | None, limit: int) -> list[StoredState]:
        """Every scope's documents in (scope, namespace, key) order after `after`: key rotation."""
        c = pack_state.c
        stmt = sa.select(pack_state).order_by(c.scope, c.namespace, c.key).limit(limit)
        if after is not None:
            stmt = stmt.where(sa.tuple_(c.scope, c.namespace, c.key) > sa.tuple_(*after))
        async with self._read_engine.connect() as conn:
            return [_state_of(r) for r in await conn.execute(stmt)]

    async def replace_state_value(self, state: StoredState, new: Any) -> bool:
        """Re-sealed `new` for a document still at the version read (rotation: not a new version)."""
        c = pack_state.c
        where = sa.and_(_where(state.scope, state.namespace, state.key), c.version == state.version)
        async with self._write() as conn:
            result = await conn.execute(pack_state.update().where(where).values(value=new))
        return bool(result.rowcount)
