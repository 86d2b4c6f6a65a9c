"""The drug interaction table an operator loaded (a mixin of SqlStore; conveyor.interactions
parses and checks it).

A load replaces the pairs and synonyms in one transaction with the row naming the table
(name, version, sha256) and its audit record: a check reads either the old table or the
new one, never a mixture, and never a table nobody recorded loading.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from conveyor.audit import AuditEntry
from conveyor.store.audit import journal_in
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import interaction_synonyms, interaction_tables, interactions

# Rows per INSERT statement (SQLite allows 32,766 bound values; a pair row binds ten).
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class InteractionTableInfo:
    id: UUID
    name: str
    version: str
    sha256: str
    pairs: int
    synonyms: int
    loaded_at: datetime
    loaded_by: str | None


@dataclass(frozen=True, slots=True)
class InteractionRow:
    drug_a: str  # normalised, drug_a < drug_b
    drug_b: str
    severity: str
    description: str | None = None
    mechanism: str | None = None
    management: str | None = None
    evidence: str | None = None
    source: str | None = None
    source_version: str | None = None
    last_reviewed: str | None = None


class InteractionTables(StoreHooks):
    """The loaded interaction table (mixed into SqlStore)."""

    async def replace_interaction_table(
        self,
        info: InteractionTableInfo,
        pairs: Sequence[InteractionRow],
        synonyms: Sequence[tuple[str, str]],
        records: Sequence[AuditEntry],
    ) -> None:
        async with self._write() as conn:
            await conn.execute(interactions.delete())
            await conn.execute(interaction_synonyms.delete())
            for start in range(0, len(pairs), CHUNK):
                rows = [_pair_values(p) for p in pairs[start : start + CHUNK]]
                await conn.execute(interactions.insert(), rows)
            for start in range(0, len(synonyms), CHUNK):
                chunk = synonyms[start : start + CHUNK]
                await conn.execute(interaction_synonyms.insert(), [{"name": n, "ingredient": i} for n, i in chunk])
            await conn.execute(interaction_tables.insert().values(**{f: getattr(info, f) for f in info.__slots__}))
            await journal_in(conn, records)

    async def interaction_table(self) -> InteractionTableInfo | None:
        """The table in force: the newest load."""
        stmt = sa.select(interaction_tables).order_by(interaction_tables.c.id.desc()).limit(1)
        async with self._read_engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return InteractionTableInfo(**row._mapping) if row else None

    async def interaction_snapshot(
        self, names: Collection[str]
    ) -> tuple[InteractionTableInfo | None, dict[str, str], list[InteractionRow], set[str]]:
        """In one read transaction: the table in force, the synonyms among `names` (name ->
        ingredient), the pairs between the names (as given or as their ingredients) and which
        of those names the table knows at all."""
        async with self._read_engine.connect() as conn, conn.begin():
            table = (
                await conn.execute(sa.select(interaction_tables).order_by(interaction_tables.c.id.desc()).limit(1))
            ).first()
            if table is None:
                return None, {}, [], set()
            s = interaction_synonyms.c
            synonyms = dict((await conn.execute(sa.select(s.name, s.ingredient).where(s.name.in_(list(names))))).all())
            candidates = sorted(set(names) | set(synonyms.values()))
            p = interactions.c
            rows = (
                await conn.execute(sa.select(interactions).where(p.drug_a.in_(candidates), p.drug_b.in_(candidates)))
            ).all()
            known_a = sa.select(p.drug_a).where(p.drug_a.in_(candidates))
            known_b = sa.select(p.drug_b).where(p.drug_b.in_(candidates))
            known = {r[0] for r in await conn.execute(sa.union(known_a, known_b))}
        pairs = [InteractionRow(**r._mapping) for r in rows]
        return InteractionTableInfo(**table._mapping), synonyms, pairs, known


def _pair_values(row: InteractionRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__slots__}
