"""Electronic signatures on critical operations (21 CFR Part 11 §11.50, §11.70, §11.200).

Which operations are critical is a setting (CriticalOperations). An edge that serves requests
(the API) opens a `signing` context per request with the caller and the signature the request
carries, if any; the core's operations ask `Signatures.demand(operation, …)` before they change
anything. Outside such a context (library code, the scheduler, the operator's CLI on the
database) nothing is demanded: the edge is where a person acts.

A demanded signature must be presented (else SignatureRequired), name a meaning from the
vocabulary, and be the signer's own user id and password (else SignatureInvalid; a wrong
password counts toward the signer's lock-out). Who may sign:

- a caller signed in as a user (a JWT) signs as that user, and only as that user;
- an API key has no user: a local user of the key's organisation (any, for a super-admin key)
  whose own role holds the operation's permission signs for it; the record names the key as
  the actor and the user as the signer.

The signature's manifest (signer id, printed name, server UTC time, meaning) goes into the
audit record of the operation, and its row names that record's content hash (conveyor.audit).
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from conveyor.access import Permission, Principal, Role
from conveyor.audit import SignatureMark
from conveyor.errors import ConveyorError
from conveyor.users import InvalidCredentials, Users

# Operations that can be made critical, with the permission a signer for an API key must hold.
OPERATIONS: dict[str, Permission] = {
    "job.cancel": Permission.JOBS_MANAGE,
    "job.retry": Permission.JOBS_MANAGE,
    "job.delete": Permission.JOBS_MANAGE,
    "cache.clear": Permission.CACHE_CLEAR,
    "schedule.change": Permission.SCHEDULES_MANAGE,  # update, pause, resume
    "schedule.delete": Permission.SCHEDULES_MANAGE,
    "api_key.revoke": Permission.KEYS_MANAGE,
}
JOB_OPERATIONS = ("job.cancel", "job.retry", "job.delete")


class SignatureRequired(ConveyorError):
    code = "SIGNATURE_REQUIRED"

    def __init__(self, operation: str) -> None:
        super().__init__(
            f"{operation} is a critical operation: sign it with X-Signature-User, X-Signature-Password "
            "and X-Signature-Meaning",
            field="X-Signature-User",
            operation=operation,
        )


class SignatureInvalid(ConveyorError):
    code = "SIGNATURE_INVALID"

    def __init__(self, message: str, *, field: str, operation: str) -> None:
        super().__init__(message, field=field, operation=operation)


@dataclass(frozen=True, slots=True)
class CriticalOperations:
    """Operation names that need a signature; job operations named `op:critical` only on
    critical-priority jobs."""

    always: frozenset[str] = frozenset()
    critical_jobs_only: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> CriticalOperations:
        always: set[str] = set()
        critical: set[str] = set()
        raw = text.strip()
        if raw.lower() in ("", "none"):
            return cls()
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            name, _, qualifier = item.partition(":")
            if name not in OPERATIONS:
                raise ValueError(f"unknown critical operation {name!r}: use {', '.join(OPERATIONS)}")
            if qualifier == "critical" and name in JOB_OPERATIONS:
                critical.add(name)
            elif qualifier:
                raise ValueError(f"{item!r}: only job operations take ':critical'")
            else:
                always.add(name)
        return cls(frozenset(always), frozenset(critical - always))

    def requires(self, operation: str, *, critical_job: bool = False) -> bool:
        return operation in self.always or (critical_job and operation in self.critical_jobs_only)


@dataclass(frozen=True, slots=True)
class Presented:
    """The signature a request carries."""

    user_id: str
    password: str
    meaning: str


@dataclass(frozen=True, slots=True)
class SigningContext:
    principal: Principal
    presented: Presented | None


_SIGNING: contextvars.ContextVar[SigningContext | None] = contextvars.ContextVar("conveyor_signing", default=None)


@contextlib.contextmanager
def signing(context: SigningContext) -> Iterator[None]:
    token = _SIGNING.set(context)
    try:
        yield
    finally:
        _SIGNING.reset(token)


def set_signing(context: SigningContext | None) -> None:
    """For the rest of the current context (an API request's task)."""
    _SIGNING.set(context)


class Signatures:
    def __init__(self, users: Users, critical: CriticalOperations, meanings: frozenset[str]) -> None:
        self.users = users
        self.critical = critical
        self.meanings = meanings

    @staticmethod
    def in_request() -> bool:
        """Whether a request's signing context is open (outside one nothing is demanded)."""
        return _SIGNING.get() is not None

    def meaning_list(self) -> list[str]:
        return sorted(self.meanings)

    async def demand(self, operation: str, *, critical_job: bool = False) -> SignatureMark | None:
        """The signature of the current request for `operation`, checked; None when none is
        needed. Raises SignatureRequired / SignatureInvalid before anything is changed."""
        context = _SIGNING.get()
        if context is None or not self.critical.requires(operation, critical_job=critical_job):
            return None
        presented = context.presented
        if presented is None:
            raise SignatureRequired(operation)
        for header, value in [
            ("X-Signature-User", presented.user_id),
            ("X-Signature-Password", presented.password),
            ("X-Signature-Meaning", presented.meaning),
        ]:
            if not value:
                raise SignatureInvalid(f"the signature lacks {header}", field=header, operation=operation)
        if presented.meaning not in self.meanings:
            raise SignatureInvalid(
                f"the signature meaning must be one of {', '.join(self.meaning_list())}",
                field="X-Signature-Meaning",
                operation=operation,
            )
        principal = context.principal
        if principal.via != "api_key" and presented.user_id != principal.user_id:
            raise SignatureInvalid(
                "the signer must be the signed-in user (a signature is used only by its owner)",
                field="X-Signature-User",
                operation=operation,
            )
        try:
            user = await self.users.verify(presented.user_id, presented.password, purpose="signature")
        except InvalidCredentials:
            raise SignatureInvalid(
                "signature refused: user id or password is wrong, or the account is locked out or disabled",
                field="X-Signature-Password",
                operation=operation,
            ) from None
        if principal.via == "api_key":
            same_org = principal.is_super_admin or user.org_id == principal.org_id
            if not same_org or OPERATIONS[operation] not in Principal(user.id, (Role(user.role),)).permissions:
                raise SignatureInvalid(
                    "the signer must be a user of the key's organisation whose role may do this",
                    field="X-Signature-User",
                    operation=operation,
                )
        return SignatureMark(
            id=str(uuid.uuid4()),
            signer_id=user.id,
            signer_name=user.name,
            meaning=presented.meaning,
            signed_at=self.users.clock(),
        )
