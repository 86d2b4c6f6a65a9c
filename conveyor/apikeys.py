"""API keys: created with a role and a scope, shown once, stored as a SHA-256 hash.

A key reads `cvk_<id>_<secret>`. The id is public (listings show it, revocation names it)
and finds the row; the secret, 32 random bytes, is never stored: only its SHA-256, which is
enough for a secret of that entropy (no password-style stretching is needed, as with GitHub's
and Stripe's tokens), and compared in constant time.

Lookups are cached for `cache_seconds` per process, so that a busy API does not read the key
on every request; a revocation reaches other processes within that time (this process: at
once).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.access import Principal, Role
from conveyor.errors import ConveyorError
from conveyor.model import utc_now
from conveyor.store.control import ApiKeyRecord, ControlTables

if TYPE_CHECKING:
    from conveyor.audit import AuditEntry
    from conveyor.engine.audit import Audit
    from conveyor.signatures import Signatures

PREFIX = "cvk"


class InvalidApiKeyRequest(ConveyorError):
    code = "INVALID_API_KEY_REQUEST"


@dataclass(frozen=True, slots=True)
class NewApiKey:
    record: ApiKeyRecord
    key: str  # the only time the secret exists outside the caller's hands


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not key_id or not secret:
        return None
    return key_id, secret


def principal_of(record: ApiKeyRecord) -> Principal:
    return Principal(
        user_id=f"apikey:{record.id}",
        name=record.name,
        roles=(Role(record.role),),
        org_id=record.org_id,
        study_id=record.study_id,
        via="api_key",
    )


def _audited(record: ApiKeyRecord) -> dict[str, Any]:
    """What the audit trail keeps of a key: never its secret, nor the secret's hash."""
    fields = ("id", "name", "role", "org_id", "study_id", "created_by", "created_at", "revoked_at")
    return {name: getattr(record, name) for name in fields}


class ApiKeys:
    """Creates, checks and revokes API keys; creations and revocations are recorded in
    `audit` when given (the API and the CLI give theirs)."""

    def __init__(
        self,
        store: ControlTables,
        *,
        cache_seconds: float = 10.0,
        audit: Audit | None = None,
        signatures: Signatures | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._signatures = signatures
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRecord | None]] = {}

    async def create(
        self,
        *,
        role: Role | str,
        name: str,
        org_id: str | None = None,
        study_id: str | None = None,
        created_by: str | None = None,
    ) -> NewApiKey:
        try:
            role = Role(role)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise InvalidApiKeyRequest(f"unknown role {role!r}: use one of {allowed}", field="role") from None
        if not name or len(name) > 200:
            raise InvalidApiKeyRequest("name must be 1-200 characters", field="name")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = ApiKeyRecord(
            id=key_id,
            secret_hash=_hash(secret),
            name=name,
            role=role.value,
            org_id=org_id,
            study_id=study_id,
            created_at=utc_now(),
            created_by=created_by,
            revoked_at=None,
        )
        await self._store.insert_api_key(record)
        if self._audit is not None:
            await self._audit.record("api_key.created", "api_key", key_id, after=_audited(record), org_id=org_id)
        return NewApiKey(record, f"{PREFIX}_{key_id}_{secret}")

    async def authenticate(self, key: str) -> Principal | None:
        """The principal a key stands for; None for a malformed, unknown or revoked key."""
        parts = split_key(key)
        if parts is None:
            return None
        key_id, secret = parts
        record = await self._lookup(key_id)
        if record is None or not record.active or not hmac.compare_digest(record.secret_hash, _hash(secret)):
            return None
        return principal_of(record)

    async def _lookup(self, key_id: str) -> ApiKeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await self._store.get_api_key(key_id)
        if len(self._cache) > 10_000:  # unknown ids must not grow it without bound
            self._cache.clear()
        self._cache[key_id] = (now + self._cache_seconds, record)
        return record

    async def list(self, *, org_id: str | None = None, every_org: bool = True) -> list[ApiKeyRecord]:
        return await self._store.list_api_keys(org_id=org_id, every_org=every_org)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return await self._store.get_api_key(key_id)

    async def revoke(self, key_id: str) -> ApiKeyRecord | None:
        self._cache.pop(key_id, None)
        before = await self._store.get_api_key(key_id)
        signature = None
        if self._signatures is not None and before is not None and before.active:
            signature = await self._signatures.demand("api_key.revoke")
        audit = self._audit

        def records(revoked: ApiKeyRecord) -> list[AuditEntry]:
            if audit is None or before is None:
                return []
            return [audit.entry("api_key.revoked", "api_key", key_id, before=_audited(before),
                                after=_audited(revoked), org_id=revoked.org_id, signature=signature)]  # fmt: skip

        revoked = await self._store.revoke_api_key(key_id, records)
        self._cache.pop(key_id, None)
        return revoked

    async def any_exist(self) -> bool:
        return await self._store.count_api_keys() > 0
