"""Pack state: what a job type keeps between jobs, per owner, sealed at rest.

A job reaches it through `ctx.state(namespace)`: JSON documents by key, scoped to the job's
organisation (or to its user when it has none), so that no job sees another organisation's
state. Values are sealed with the installation's keyring (conveyor.crypto), bound to their
scope, namespace and key, and re-sealed by `conveyor keys rotate` like job data. Writes are
compare-and-set on a version: `update(key, change)` reads, applies and writes again when
another write came first.

Example::

    state = ctx.state("inventory")
    doc = await state.get("ward-7")                       # None, or a Document
    await state.put("ward-7", {"beds": 12}, version=doc.version if doc else None)
    await state.update("ward-7", lambda value: {**(value or {}), "beds": 11})
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.crypto import Keyring, SealError
from conveyor.errors import PermanentError, StateConflict
from conveyor.model import Owner
from conveyor.storable import unstorable
from conveyor.store.packstate import ANY_VERSION, StoredState

_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
MAX_KEY = 300
# Tries of update() before a StateConflict is raised (each lost race means another write won),
# with a growing, jittered pause between them so that racing writers spread out.
UPDATE_TRIES = 50
UPDATE_PAUSE = 0.002  # seconds, times the try number, at most
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Document:
    key: str
    value: Any
    version: int
    updated_at: datetime


def scope_of(owner: Owner) -> str:
    """The scope a job's state lives in: its organisation's, else its user's."""
    if owner.org_id is not None:
        return f"org:{owner.org_id}"
    if owner.user_id is not None:
        return f"user:{owner.user_id}"
    return "system"


def state_aad(scope: str, namespace: str, key: str) -> str:
    return f"conveyor:state:{scope}:{namespace}:{key}"


class PackState:
    """The store of every scope's state; `namespace(owner, name)` is one job's view of it."""

    def __init__(self, store: Any, keyring: Keyring | None) -> None:
        self.store = store
        self.keyring = keyring

    def namespace(self, owner: Owner, namespace: str) -> StateNamespace:
        if not _NAME.match(namespace):
            raise ValueError(f"state namespace {namespace!r}: 1-100 letters, digits, '.', '_', ':' or '-'")
        return StateNamespace(self, scope_of(owner), namespace)

    def seal(self, scope: str, namespace: str, key: str, value: Any) -> Any:
        if self.keyring is None:
            raise PermanentError("pack state is stored encrypted, and no encryption key is configured")
        return self.keyring.seal_json(value, state_aad(scope, namespace, key))

    def open(self, stored: StoredState) -> Any:
        if self.keyring is None:
            raise SealError("pack state is sealed and no encryption key is configured here")
        return self.keyring.open_json(stored.value, state_aad(stored.scope, stored.namespace, stored.key))

    async def rotate(self, batch: int = 500) -> int:
        """Re-seal with the current key what another key sealed; how many documents."""
        keyring = self.keyring
        if keyring is None:
            return 0
        done = 0
        after = None
        while page := await self.store.state_page(after, batch):
            for stored in page:
                if keyring.kid_of(stored.value) in (None, keyring.current):
                    continue
                resealed = self.seal(stored.scope, stored.namespace, stored.key, self.open(stored))
                done += await self.store.replace_state_value(stored, resealed)
            after = (page[-1].scope, page[-1].namespace, page[-1].key)
        return done


class StateNamespace:
    """One scope's documents of one namespace."""

    def __init__(self, state: PackState, scope: str, namespace: str) -> None:
        self._state = state
        self._store = state.store
        self.scope = scope
        self.namespace = namespace

    def _document(self, stored: StoredState) -> Document:
        return Document(stored.key, self._state.open(stored), stored.version, stored.updated_at)

    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY:
            raise ValueError(f"state keys are 1-{MAX_KEY} characters of text")

    async def get(self, key: str) -> Document | None:
        self._check_key(key)
        stored = await self._store.get_state(self.scope, self.namespace, key)
        return None if stored is None else self._document(stored)

    async def put(self, key: str, value: Any, *, version: int | None = _UNSET) -> Document:
        """Write `value`. Without `version` it replaces whatever is there; `version=None`
        creates the key only if absent, an int only if the document is at that version
        (StateConflict otherwise)."""
        self._check_key(key)
        if found := unstorable(value, "value"):
            raise ValueError(f"state {found[0]} {found[1]}")
        expected = ANY_VERSION if version is _UNSET else version
        sealed = self._state.seal(self.scope, self.namespace, key, value)
        stored = await self._store.put_state(self.scope, self.namespace, key, sealed, expected=expected)
        if stored is None:
            raise StateConflict(self.namespace, key)
        return Document(key, value, stored.version, stored.updated_at)

    async def update(self, key: str, change: Callable[[Any], Any]) -> Document:
        """Apply `change(current value or None)` and write the result, again on a lost race."""
        for attempt in range(1, UPDATE_TRIES + 1):
            current = await self.get(key)
            value = change(None if current is None else current.value)
            try:
                return await self.put(key, value, version=None if current is None else current.version)
            except StateConflict:
                # jitter to part racing writers, not a secret (bandit B311)
                await asyncio.sleep(random.random() * UPDATE_PAUSE * attempt)  # nosec B311
        raise StateConflict(self.namespace, key)

    async def delete(self, key: str, *, version: int | None = None) -> bool:
        """Delete the document (only at `version`, when given); whether one was deleted."""
        self._check_key(key)
        expected = ANY_VERSION if version is None else version
        return bool(await self._store.delete_state(self.scope, self.namespace, key, expected=expected))

    async def list(self, prefix: str = "", *, after: str | None = None, limit: int = 100) -> list[Document]:
        """Documents whose key starts with `prefix`, in key order (page on with `after`)."""
        page = await self._store.list_state(self.scope, self.namespace, prefix=prefix, after=after, limit=limit)
        return [self._document(s) for s in page]
