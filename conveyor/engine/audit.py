"""Audit: the one service that records what happened, verifies the chain, and reads it back.

The engine records the job lifecycle's operations itself (enqueue, cancel, retry) and the
schedules theirs, so that every path is covered: the API, the CLI, library code and the
scheduler alike. Who acts comes from `conveyor.audit.current_actor()`: the API sets it per
request from the principal (with request id and client address), the CLI to its user;
anything else is recorded as `system`. Edge-only operations (API keys, queue pause, sign-in
failures) are recorded by the edge through `record`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from conveyor.audit import (
    Actor,
    AuditEntry,
    AuditRecord,
    ChainVerifier,
    Checkpoint,
    Verdict,
    current_actor,
)
from conveyor.store.audit import AuditFilter
from conveyor.store.base import Store

VERIFY_PAGE = 2000


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
    ) -> AuditRecord:
        entry = AuditEntry(
            action=action,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            actor=actor or current_actor(),
            before=before,
            after=after,
            org_id=org_id,
        )
        [record] = await self.record_many([entry])
        return record

    async def record_many(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append in one transaction (one turn of the chain's lock for the lot)."""
        return await self.store.append_audit(  # type: ignore[no-any-return]
            entries, checkpoint_every=self.checkpoint_every, key=self.key
        )

    async def checkpoint(self) -> Checkpoint | None:
        """A checkpoint of the chain's head now (signed when a key is configured)."""
        return await self.store.checkpoint_audit(key=self.key)  # type: ignore[no-any-return]

    async def verify(self, *, page_size: int = VERIFY_PAGE) -> Verdict:
        """Walk the whole chain in pages; the verdict names the first broken record."""
        verifier = ChainVerifier(await self.store.audit_checkpoints(), key=self.key)
        after = 0
        while verifier.verdict.ok:
            page = await self.store.audit_page(after, page_size)
            if not page or not verifier.feed(page):
                break
            after = page[-1].seq
        return verifier.finish()

    async def list(self, where: AuditFilter, *, limit: int, offset: int = 0) -> tuple[list[AuditRecord], int]:
        return await self.store.list_audit(where, limit=limit, offset=offset)  # type: ignore[no-any-return]

    async def stream(self, where: AuditFilter, *, page_size: int = 1000) -> AsyncIterator[AuditRecord]:
        """Every matching record, oldest first, read a keyset page at a time."""
        after = 0
        while True:
            page, _total = await self.store.list_audit(where, limit=page_size, after_seq=after, count=False)
            for record in page:
                yield record
            if len(page) < page_size:
                return
            after = page[-1].seq
