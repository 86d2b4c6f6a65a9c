"""Local users: accounts with argon2id password hashes, password rules, sign-in with lock-out
(21 CFR Part 11 §11.300), and the password check an e-signature re-enters (§11.200).

- Passwords are hashed with argon2id (argon2-cffi's PasswordHasher, its RFC 9106 defaults);
  only the hash is stored, and compared by the library in constant time.
- An unknown user id costs what a wrong password costs (a dummy hash is verified), and both
  are answered with the same error: user ids cannot be told apart by the answer or its time.
  A locked-out or disabled account answers the same error too (its audit record says which).
- `max_failures` consecutive failures (sign-ins and signatures alike) lock the account for
  `lockout`; a success resets the count. Every sign-in, failure and lock-out, and every change
  of a user, is an audit record, written in the transaction of the change.

The clock is injectable (`clock`), so that tests can move past a lock-out.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from conveyor.access import Principal, Role
from conveyor.audit import Actor, AuditEntry, current_actor
from conveyor.errors import ConveyorError
from conveyor.model import utc_now
from conveyor.storable import text_problem
from conveyor.store.users import UserRecord

if TYPE_CHECKING:
    from conveyor.engine.audit import Audit
    from conveyor.settings import Settings
    from conveyor.store.base import Store

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
MAX_PASSWORD_CHARS = 256


class InvalidUserRequest(ConveyorError):
    code = "INVALID_USER_REQUEST"


class UserExists(ConveyorError):
    code = "USER_EXISTS"


class UserNotFound(ConveyorError):
    code = "USER_NOT_FOUND"

    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} not found", field="userId")


class InvalidCredentials(ConveyorError):
    """One answer for an unknown user, a wrong password, a locked-out or disabled account."""

    code = "INVALID_CREDENTIALS"

    def __init__(self) -> None:
        super().__init__("user id or password is wrong, or the account is locked out or disabled")


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    min_length: int = 12

    def problem(self, password: object, *, user_id: str, name: str | None = None) -> str | None:
        """What is wrong with `password` for this user (None: it is acceptable)."""
        if not isinstance(password, str):
            return "must be text"
        if len(password) < self.min_length:
            return f"must be at least {self.min_length} characters"
        if len(password) > MAX_PASSWORD_CHARS:
            return f"must be at most {MAX_PASSWORD_CHARS} characters"
        if "\x00" in password or text_problem(password):
            return "must be plain text (no NUL, no lone surrogates)"
        folded = password.strip().casefold()
        if folded == user_id.casefold() or (name and folded == name.strip().casefold()):
            return "must not be the user id or the user's name"
        if len(set(password)) < 4:
            return "must have at least 4 different characters"
        return None


def audited(user: UserRecord) -> dict[str, Any]:
    """What the audit trail keeps of a user: never the password nor its hash."""
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "orgId": user.org_id,
        "disabled": user.disabled,
        "lockedUntil": user.locked_until,
        "failedAttempts": user.failed_attempts,
        "passwordChangedAt": user.password_changed_at,
    }


def principal_of(user: UserRecord) -> Principal:
    return Principal(user_id=user.id, name=user.name, roles=(Role(user.role),), org_id=user.org_id, via="jwt")


class Users:
    def __init__(
        self,
        store: Store,
        audit: Audit,
        *,
        policy: PasswordPolicy | None = None,
        max_failures: int = 5,
        lockout: timedelta = timedelta(minutes=15),
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store: Any = store
        self.audit = audit
        self.policy = policy or PasswordPolicy()
        self.max_failures = max_failures
        self.lockout = lockout
        self.hasher = hasher or PasswordHasher()  # argon2id, RFC 9106 low-memory profile
        self.clock = clock
        self._dummy_hash: str | None = None

    @classmethod
    def from_settings(cls, store: Store, audit: Audit, settings: Settings) -> Users:
        return cls(
            store,
            audit,
            policy=PasswordPolicy(min_length=settings.password_min_length),
            max_failures=settings.sign_in_max_failures,
            lockout=timedelta(minutes=settings.sign_in_lockout_minutes),
            hasher=PasswordHasher(
                time_cost=settings.password_hash_time_cost,
                memory_cost=settings.password_hash_memory_kib,
                parallelism=settings.password_hash_parallelism,
            ),
        )

    # --- hashing (in a thread: argon2 takes tens of milliseconds on purpose) ----------------------

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    async def _matches(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return self.hasher.verify(password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash("conveyor: no such user, the same work as one")
        return self._dummy_hash

    # --- checks ------------------------------------------------------------------------------

    def _check_password(self, password: object, *, user_id: str, name: str | None, field: str) -> str:
        if problem := self.policy.problem(password, user_id=user_id, name=name):
            raise InvalidUserRequest(f"{field} {problem}", field=field)
        return password  # type: ignore[return-value]  # checked to be text above

    @staticmethod
    def _check_name(name: object) -> str:
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 200 or text_problem(name):
            raise InvalidUserRequest("name (the printed name) must be 1-200 characters of text", field="name")
        return name.strip()

    @staticmethod
    def _check_role(role: object) -> Role:
        try:
            return Role(role)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise InvalidUserRequest(f"unknown role {role!r}: use one of {allowed}", field="role") from None

    # --- accounts ----------------------------------------------------------------------------

    async def create(
        self,
        user_id: str,
        *,
        name: str,
        role: Role | str,
        password: str,
        org_id: str | None = None,
        created_by: str | None = None,
    ) -> UserRecord:
        if not isinstance(user_id, str) or not USER_ID.match(user_id):
            raise InvalidUserRequest(
                "userId must be 1-200 characters: letters, digits and . _ @ + - (starting with a letter or digit)",
                field="userId",
            )
        name = self._check_name(name)
        checked_role = self._check_role(role)
        if org_id is not None and (not 1 <= len(org_id) <= 200 or text_problem(org_id)):
            raise InvalidUserRequest("orgId must be 1-200 characters of text", field="orgId")
        self._check_password(password, user_id=user_id, name=name, field="password")
        now = self.clock()
        record = UserRecord(
            id=user_id,
            name=name,
            role=checked_role.value,
            org_id=org_id,
            password_hash=await self._hash(password),
            failed_attempts=0,
            locked_until=None,
            password_changed_at=now,
            disabled=False,
            created_at=now,
            created_by=created_by or current_actor().user_id,
            last_sign_in_at=None,
        )
        entry = self.audit.entry("user.created", "user", user_id, after=audited(record), org_id=org_id)
        if not await self.store.insert_user(record, [entry]):
            raise UserExists(f"user {user_id!r} exists already", field="userId")
        return record

    async def get(self, user_id: str) -> UserRecord | None:
        return await self.store.get_user(user_id)  # type: ignore[no-any-return]

    async def list(self, *, org_id: str | None = None, every_org: bool = True) -> list[UserRecord]:
        return await self.store.list_users(org_id=org_id, every_org=every_org)  # type: ignore[no-any-return]

    async def _change(self, user_id: str, action: str, values: dict[str, Any]) -> UserRecord:
        def records(before: UserRecord, after: UserRecord) -> list[AuditEntry]:
            return [
                self.audit.entry(
                    action, "user", user_id, before=audited(before), after=audited(after), org_id=after.org_id
                )
            ]

        changed = await self.store.change_user(user_id, lambda _user: values, records)
        if changed is None:
            raise UserNotFound(user_id)
        return changed[1]  # type: ignore[no-any-return]

    async def update(
        self, user_id: str, *, name: str | None = None, role: Role | str | None = None, disabled: bool | None = None
    ) -> UserRecord:
        """Change the printed name, the role, or disable/enable; recorded as user.changed."""
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = self._check_name(name)
        if role is not None:
            values["role"] = self._check_role(role).value
        if disabled is not None:
            values["disabled"] = bool(disabled)
        if not values:
            found = await self.get(user_id)
            if found is None:
                raise UserNotFound(user_id)
            return found
        return await self._change(user_id, "user.changed", values)

    async def set_password(self, user_id: str, password: str) -> UserRecord:
        """An administrator's reset (user.password_reset); also lifts a lock-out."""
        user = await self.get(user_id)
        if user is None:
            raise UserNotFound(user_id)
        self._check_password(password, user_id=user_id, name=user.name, field="password")
        values = {
            "password_hash": await self._hash(password),
            "password_changed_at": self.clock(),
            "failed_attempts": 0,
            "locked_until": None,
        }
        return await self._change(user_id, "user.password_reset", values)

    async def change_password(self, user_id: str, current: str, new: str, *, actor: Actor | None = None) -> UserRecord:
        """The user's own change: the current password first (a wrong one counts as a failed
        sign-in, InvalidCredentials); the new one must follow the rules and differ."""
        user = await self.verify(user_id, current, purpose="password_change", actor=actor)
        self._check_password(new, user_id=user_id, name=user.name, field="newPassword")
        if await self._matches(user.password_hash, new):
            raise InvalidUserRequest("newPassword must differ from the current password", field="newPassword")
        values = {"password_hash": await self._hash(new), "password_changed_at": self.clock()}
        return await self._change(user_id, "user.password_changed", values)

    async def unlock(self, user_id: str) -> UserRecord:
        return await self._change(user_id, "user.unlocked", {"failed_attempts": 0, "locked_until": None})

    # --- sign-in and signatures ------------------------------------------------------------------

    async def verify(
        self, user_id: str, password: str, *, purpose: str = "sign_in", actor: Actor | None = None
    ) -> UserRecord:
        """The user, if `password` is theirs and the account may act now; else InvalidCredentials
        (and the failure counted and recorded). `purpose`: sign_in (recorded as user.signed_in /
        user.sign_in_failed), signature (user.signature_failed; a success is recorded by the
        signed record itself) or password_change."""
        actor = actor or current_actor()
        now = self.clock()
        user = await self.get(user_id) if isinstance(user_id, str) and 0 < len(user_id) <= 200 else None
        password = password if isinstance(password, str) and len(password) <= MAX_PASSWORD_CHARS else ""
        matches = await self._matches(user.password_hash if user is not None else await self._dummy(), password)
        failed = "user.sign_in_failed" if purpose != "signature" else "user.signature_failed"
        if user is None:
            await self.audit.record(
                failed, "user", user_id, after={"reason": "unknown user", "purpose": purpose}, actor=actor
            )
            raise InvalidCredentials()
        if user.disabled or user.locked(now):
            reason = "disabled" if user.disabled else "locked out"
            after = {"reason": reason, "purpose": purpose, "lockedUntil": user.locked_until}
            await self.audit.record(failed, "user", user.id, after=after, org_id=user.org_id, actor=actor)
            raise InvalidCredentials()
        if not matches:
            await self._failed(user.id, failed, purpose, actor)
            raise InvalidCredentials()
        values: dict[str, Any] = {"failed_attempts": 0}
        if purpose == "sign_in":
            values["last_sign_in_at"] = now
        if self.hasher.check_needs_rehash(user.password_hash):
            values["password_hash"] = await self._hash(password)

        def records(_before: UserRecord, after: UserRecord) -> list[AuditEntry]:
            if purpose != "sign_in":
                return []
            return [
                self.audit.entry(
                    "user.signed_in", "user", after.id, after={"role": after.role}, org_id=after.org_id, actor=actor
                )
            ]

        changed = await self.store.change_user(
            user.id,
            lambda u: values if u.failed_attempts or purpose == "sign_in" or "password_hash" in values else None,
            records,
        )
        return changed[1] if changed is not None else user  # type: ignore[no-any-return]

    async def _failed(self, user_id: str, action: str, purpose: str, actor: Actor) -> None:
        now = self.clock()

        def change(user: UserRecord) -> dict[str, Any]:
            failures = user.failed_attempts + 1
            if failures >= self.max_failures:
                return {"failed_attempts": 0, "locked_until": now + self.lockout}
            return {"failed_attempts": failures}

        def records(before: UserRecord, after: UserRecord) -> list[AuditEntry]:
            locked = after.locked_until is not None and after.locked_until != before.locked_until
            failures = before.failed_attempts + 1
            out = [
                self.audit.entry(
                    action,
                    "user",
                    after.id,
                    org_id=after.org_id,
                    actor=actor,
                    after={"reason": "wrong password", "purpose": purpose, "failedAttempts": failures},
                )
            ]
            if locked:
                out.append(
                    self.audit.entry(
                        "user.locked",
                        "user",
                        after.id,
                        before=audited(before),
                        after=audited(after),
                        org_id=after.org_id,
                        actor=actor,
                    )
                )
            return out

        await self.store.change_user(user_id, change, records)
