"""Audit: the one service that records what happened, seals the journal into the chain,
verifies the chain, and reads it back.

The store records each job created in the statement that stores it; the engine records the
other lifecycle operations (cancel, retry) and the schedules theirs, so that every path is
covered: the API, the CLI, library code and the scheduler alike. Who acts comes from
`conveyor.audit.current_actor()`: the API sets it per request from the principal (with
request id and client address), the CLI to its user; anything else is recorded as `system`.
Edge-only operations (API keys, queue pause, sign-in failures) are recorded by the edge
through `record`. Records are journaled at once and chained by `seal`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from conveyor.audit import (
    Actor,
    AuditEntry,
    AuditRecord,
    ChainVerifier,
    Checkpoint,
    SignatureMark,
    SignatureRow,
    Verdict,
    current_actor,
)
from conveyor.store.audit import AuditFilter
from conveyor.store.base import Store

VERIFY_PAGE = 2000
SEAL_BATCH = 5000  # journal rows chained per transaction


class Audit:
    def __init__(self, store: Store, *, key: str | None = None, checkpoint_every: int = 0) -> None:
        """`checkpoint_every` 0: checkpoints only when asked (an Audit built without the
        installation's settings must not sign checkpoints with no key)."""
        self.store: Any = store
        self.key = key
        self.checkpoint_every = checkpoint_every

    async def record(
        self,
        action: str,
        object_type: str,
        object_id: object = None,
        *,
        before: Any = None,
        after: Any = None,
        org_id: str | None = None,
        actor: Actor | None = None,
        signature: SignatureMark | None = None,
    ) -> None:
        await self.record_many(
            [self.entry(action, object_type, object_id, before=before, after=after, org_id=org_id, actor=actor,
                        signature=signature)]
        )  # fmt: skip

    @staticmethod
    def entry(
        action: str,
        object_type: str,
        object_id: object = None,
        *,
        before: Any = None,
        after: Any = None,
        org_id: str | None = None,
        actor: Actor | None = None,
        signature: SignatureMark | None = None,
    ) -> AuditEntry:
        """A record to hand to a store operation, which journals it in the change's transaction."""
        return AuditEntry(
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            actor=actor or current_actor(),
            before=before,
            after=after,
            org_id=org_id,
            signature=signature,
        )

    async def record_many(self, entries: Sequence[AuditEntry]) -> None:
        """Journal `entries` in one statement; they join the chain at the next seal."""
        await self.store.journal_audit(entries)

    async def seal(self) -> int:
        """Chain every journal row written before this call; how many this process sealed
        (another process sealing at the same moment is waited for, not raced)."""
        # Rows journaled meanwhile wait for the next seal: chasing them, the leader sealed a
        # few rows at a time all through a busy drain (92 seals in 8 s, ~8 statements each).
        # A row committed before this call has an id no greater than the newest seen now.
        newest = await self.store.newest_journaled()
        if newest is None:
            return 0
        sealed = 0
        while True:
            made = await self.store.seal_audit(
                SEAL_BATCH, through=newest, checkpoint_every=self.checkpoint_every, key=self.key
            )
            if made is None:  # another sealer holds the chain: let it finish, then look again
                await asyncio.sleep(0.01)
                continue
            sealed += made
            if made == 0:  # a batch may stop short of SEAL_BATCH rows at its size bound
                return sealed

    async def checkpoint(self) -> Checkpoint | None:
        """A checkpoint of the chain's head now, after sealing the journal (signed when a key is
        configured)."""
        await self.seal()
        return await self.store.checkpoint_audit(key=self.key)  # type: ignore[no-any-return]

    async def verify(self, *, page_size: int = VERIFY_PAGE) -> Verdict:
        """Seal the journal, then walk the whole chain in pages; the verdict names the first
        broken record."""
        await self.seal()
        verifier = ChainVerifier(await self.store.audit_checkpoints(), key=self.key)
        after = 0
        while verifier.verdict.ok:
            page = await self.store.audit_page(after, page_size)
            if not page or not verifier.feed(page):
                break
            after = page[-1].seq
        if verifier.verdict.ok:
            verifier.check_signatures([row async for row in self.signature_rows()])
        return verifier.finish()

    async def signature_rows(self, *, page_size: int = VERIFY_PAGE) -> AsyncIterator[SignatureRow]:
        after = ""
        while True:
            page = await self.store.list_signatures(after_id=after, limit=page_size)
            for row in page:
                yield row
            if len(page) < page_size:
                return
            after = page[-1].id

    async def signatures_of(self, object_type: str, object_id: object) -> list[SignatureRow]:
        """The e-signatures applied to one object (a job: its cancel, retry, delete), oldest first."""
        rows = await self.store.list_signatures(object_type=object_type, object_id=str(object_id))
        return sorted(rows, key=lambda r: r.signed_at)

    async def list(self, where: AuditFilter, *, limit: int, offset: int = 0) -> tuple[list[AuditRecord], int]:
        """A page of chained records (the journal sealed first, so nothing recorded is missing)."""
        await self.seal()
        return await self.store.list_audit(where, limit=limit, offset=offset)  # type: ignore[no-any-return]

    async def stream(self, where: AuditFilter, *, page_size: int = 1000) -> AsyncIterator[AuditRecord]:
        """Every matching record, oldest first, read a keyset page at a time."""
        await self.seal()
        after = 0
        while True:
            page, _total = await self.store.list_audit(where, limit=page_size, after_seq=after, count=False)
            for record in page:
                yield record
            if len(page) < page_size:
                return
            after = page[-1].seq
