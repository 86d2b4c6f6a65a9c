"""The audit trail's tables: the journal, sealing it into the hash chain, reading the chain in
pages, checkpoints.

A mixin of SqlStore. Records reach the journal with no lock (here, or inside the statements
that store jobs). Sealing is serialised so that each record links to the one before it: on
PostgreSQL by a transaction-scoped advisory lock taken before the head is read (a sealer that
finds it taken leaves the work to the one holding it), on SQLite by the write lock every write
transaction (BEGIN IMMEDIATE) already holds. The chain's order is the order of sealing; a
record whose transaction commits while a seal is under way is simply sealed by the next.
Nothing here updates or deletes a chained record; on PostgreSQL triggers refuse it
(migration 0005).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.audit import (
    GENESIS,
    RECORD_COLUMNS,
    AuditEntry,
    AuditRecord,
    Checkpoint,
    SignatureRow,
    chain,
    content_hash,
    journal_row,
    sign_checkpoint,
)
from conveyor.model import utc_now
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import audit, audit_checkpoints, audit_journal, audit_subjects, signatures

# An arbitrary constant: the key of the advisory lock that serialises sealing.
PG_AUDIT_LOCK = 7_412_202_612
_JOURNAL_COLUMNS = [audit_journal.c[name] for name in RECORD_COLUMNS]
# What one seal may take of the journal, as stored (PostgreSQL's jsonb compressed: a bulk
# enqueue's record naming 1,000 jobs is ~13 kB there, ~40 kB as text and several times that
# as Python objects). A thousand of those sealed at once took the sealing worker from 80 to
# 170 MB; now a seal holds some 80 of them.
SEAL_BYTES = 1024 * 1024


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
    # The records about one job: its own (object job, this id) and those naming it in a list.
    job_id: str | None = None

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        c = audit.c
        out: list[sa.ColumnElement[bool]] = []
        if self.job_id is not None:
            # Two index lookups (object_type, object_id) and (job_id, seq), united: an OR of
            # them would make the database read every record to test the second.
            own = sa.select(c.seq).where(c.object_type == "job", c.object_id == self.job_id)
            listed = sa.select(audit_subjects.c.seq).where(audit_subjects.c.job_id == self.job_id)
            out.append(c.seq.in_(sa.union(own, listed)))
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


class AuditTables(StoreHooks):
    """Append, page through and checkpoint the audit chain (mixed into SqlStore)."""

    async def journal_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Write `entries` to the journal (one statement, no lock); `seal_audit` chains them."""
        if entries:
            async with self._write() as conn:
                await journal_in(conn, entries)

    async def newest_journaled(self) -> int | None:
        """The id of the newest row in the audit journal (None: the journal is empty)."""
        async with self._read_engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.max(audit_journal.c.id)))).scalar_one()  # type: ignore[no-any-return]

    async def seal_audit(
        self,
        limit: int,
        *,
        through: int | None = None,
        max_bytes: int = SEAL_BYTES,
        checkpoint_every: int = 0,
        key: str | None = None,
    ) -> int | None:
        """Move up to `limit` journal rows, oldest first (and none newer than the id `through`),
        into the chain after its head, in one transaction, and no more of them than hold about
        `max_bytes` of before/after JSON (at least one); with `checkpoint_every`, also
        checkpoint the new head when the chain passes a multiple of it. How many were sealed
        (0: nothing to seal); None when another process is sealing now."""
        waiting = sa.true() if through is None else audit_journal.c.id <= through
        # A look first, without the write lock (SQLite has one for the whole database): the
        # leader seals every pass, and the journal is mostly empty.
        async with self._read_engine.connect() as conn:
            if (await conn.execute(sa.select(audit_journal.c.id).where(waiting).limit(1))).first() is None:
                return 0
        async with self._write() as conn:
            if not await _lock_chain(conn):
                return None
            last = (await conn.execute(_last_to_seal(conn.dialect.name, limit, max_bytes, waiting))).scalar_one()
            if last is None:
                return 0
            if conn.dialect.name == "postgresql":
                taken = sa.delete(audit_journal).where(audit_journal.c.id <= last)
                rows = (await conn.execute(taken.returning(audit_journal.c.id, *_JOURNAL_COLUMNS))).all()
            else:  # one writer at a time: read, then delete what was read
                rows = (await conn.execute(sa.select(audit_journal).where(audit_journal.c.id <= last))).all()
                if rows:
                    await conn.execute(sa.delete(audit_journal).where(audit_journal.c.id <= last))
            if not rows:
                return 0
            prev_seq, prev_hash = await _head(conn)
            records = chain(
                sorted((r._asdict() for r in rows), key=lambda r: r["id"]), prev_seq=prev_seq, prev_hash=prev_hash
            )
            await conn.execute(audit.insert(), [r.fields() for r in records])
            await conn.execute(FILE_SUBJECTS[conn.dialect.name], {"after_seq": prev_seq})
            head = records[-1]
            if checkpoint_every and head.seq // checkpoint_every > prev_seq // checkpoint_every:
                await _insert_checkpoint(conn, head.seq, head.hash, key)
        return len(records)

    async def audit_unsealed(self) -> int:
        """How many records wait in the journal."""
        async with self._read_engine.connect() as conn:
            return (await conn.execute(sa.select(sa.func.count()).select_from(audit_journal))).scalar_one()

    async def checkpoint_audit(self, *, key: str | None) -> Checkpoint | None:
        """A checkpoint of the head now (the existing one if the head has one); None: empty chain."""
        async with self._write() as conn:
            await _lock_chain(conn, wait=True)
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

    async def list_signatures(
        self, *, object_type: str | None = None, object_id: str | None = None, after_id: str = "", limit: int = 1000
    ) -> list[SignatureRow]:
        """E-signatures (of one object, when given), in id order after `after_id`."""
        c = signatures.c
        stmt = sa.select(signatures).where(c.id > after_id).order_by(c.id).limit(limit)
        if object_type is not None:
            stmt = stmt.where(c.object_type == object_type)
        if object_id is not None:
            stmt = stmt.where(c.object_id == object_id)
        async with self._read_engine.connect() as conn:
            return [SignatureRow(**r._mapping) for r in await conn.execute(stmt)]

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


def _last_to_seal(dialect: str, limit: int, max_bytes: int, waiting: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """The id of the newest journal row a seal takes: of the `limit` oldest `waiting`, those
    whose before/after JSON add up to `max_bytes` (the first one in any case)."""
    j = audit_journal.c
    stored = sa.func.pg_column_size if dialect == "postgresql" else sa.func.length
    size = sa.func.coalesce(stored(j.before), 0) + sa.func.coalesce(stored(j.after), 0)
    oldest = (
        sa.select(j.id, sa.func.sum(size).over(order_by=j.id).label("running"))
        .where(waiting)
        .order_by(j.id)
        .limit(limit)
        .subquery()
    )
    within = sa.func.max(sa.case((oldest.c.running <= max_bytes, oldest.c.id)))
    return sa.select(sa.func.coalesce(within, sa.func.min(oldest.c.id)))


# conveyor_audit_subjects' rows for the records just chained (seq past the old head): each
# job a record names in its `after.jobIds`, once, filed by the database in one statement. A
# row per job sent from Python (executemany) cost the sealing worker ~17 µs a job named, two
# names a job (created, completed): a third of a core at 10,000 jobs a second. A record whose
# jobIds is not a list names none (the CASE keeps the JSON functions from failing on it).
FILE_SUBJECTS = {
    "postgresql": sa.text(
        """
        INSERT INTO conveyor_audit_subjects (job_id, seq)
        SELECT DISTINCT named.value #>> '{}', a.seq
        FROM conveyor_audit AS a,
             jsonb_array_elements(CASE WHEN jsonb_typeof(a.after -> 'jobIds') = 'array'
                                       THEN a.after -> 'jobIds' ELSE '[]'::jsonb END) AS named(value)
        WHERE a.seq > :after_seq AND jsonb_typeof(named.value) = 'string'
          AND length(named.value #>> '{}') <= 200
        """
    ),
    "sqlite": sa.text(
        """
        INSERT INTO conveyor_audit_subjects (job_id, seq)
        SELECT DISTINCT named.value, a.seq
        FROM conveyor_audit AS a,
             json_each(CASE WHEN json_type(a.after, '$.jobIds') = 'array'
                            THEN json_extract(a.after, '$.jobIds') ELSE '[]' END) AS named
        WHERE a.seq > :after_seq AND named.type = 'text' AND length(named.value) <= 200
        """
    ),
}


async def journal_in(conn: AsyncConnection, entries: Sequence[AuditEntry]) -> None:
    """Journal `entries` inside the caller's transaction (so a record commits with the change
    it records, or not at all). A signed entry's row is read back as stored, and its
    signature's row written with the content hash of that record (conveyor.audit)."""
    now = utc_now()
    plain = [journal_row(e, now) for e in entries if e.signature is None]
    if plain:
        await conn.execute(audit_journal.insert(), plain)
    for entry in entries:
        mark = entry.signature
        if mark is None:
            continue
        stored = (
            await conn.execute(audit_journal.insert().returning(*_JOURNAL_COLUMNS), journal_row(entry, now))
        ).one()
        row = stored._asdict()
        await conn.execute(
            signatures.insert().values(
                id=mark.id,
                record_hash=content_hash(row),
                action=row["action"],
                object_type=row["object_type"],
                object_id=row["object_id"],
                org_id=row["org_id"],
                signer_id=mark.signer_id,
                signer_name=mark.signer_name,
                meaning=mark.meaning,
                signed_at=mark.signed_at,
                signed_by_caller=row["actor_id"],
            )
        )


async def _lock_chain(conn: AsyncConnection, *, wait: bool = False) -> bool:
    """Whether this transaction now holds the chain until it ends. PostgreSQL: concurrent
    sealers would read the same head and fork the chain; the lock makes them take turns.
    SQLite's write transaction is exclusive already."""
    if conn.dialect.name != "postgresql":
        return True
    if wait:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})
        return True
    return bool(
        (await conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PG_AUDIT_LOCK})).scalar()
    )


async def _head(conn: AsyncConnection) -> tuple[int, str]:
    row = (await conn.execute(sa.select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc()).limit(1))).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


async def _insert_checkpoint(conn: AsyncConnection, seq: int, head_hash: str, key: str | None) -> Checkpoint:
    checkpoint = sign_checkpoint(seq, head_hash, utc_now(), key)
    values: dict[str, Any] = {name: getattr(checkpoint, name) for name in checkpoint.__slots__}
    await conn.execute(audit_checkpoints.insert().values(**values))
    return checkpoint
