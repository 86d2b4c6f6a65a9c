"""Local users in the core, on both databases: password rules naming the field, argon2id
hashes, sign-in with lock-out after N failures and release after the period (the clock moved),
an unknown user answered and timed as a wrong password, and every sign-in, failure, lock-out
and change of a user recorded in the audit trail (never the password nor its hash)."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.audit import Actor
from conveyor.model import utc_now
from conveyor.store.audit import AuditFilter
from conveyor.users import InvalidCredentials, InvalidUserRequest, UserExists, UserNotFound, Users

PASSWORD = "correct horse battery"
CLIENT = Actor(user_id="ada", request_id="req_sign_in_1", client_address="10.1.2.3")


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> Any:
        return self.now


def users_of(app: Conveyor, **options: Any) -> tuple[Users, Clock]:
    clock = Clock()
    options.setdefault("hasher", app.users.hasher)  # the test app's cheap argon2id
    return Users(app.store, app.audit, clock=clock, **options), clock


async def records(app: Conveyor, **where: Any) -> list[Any]:
    found, _ = await app.audit.list(AuditFilter(**where), limit=1000)
    return found


async def test_create_stores_an_argon2id_hash_and_records_the_user(app: Conveyor) -> None:
    user = await app.users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert (await app.users.get("ada")) == user
    [created] = await records(app, action="user.created")
    assert created.object_id == "ada" and created.org_id == "org-a"
    assert created.after["name"] == "Ada Lovelace" and created.after["role"] == "operator"
    assert "passwordHash" not in created.after and user.password_hash not in str(created.after)
    with pytest.raises(UserExists) as exists:
        await app.users.create("ada", name="Another", role="viewer", password=PASSWORD)
    assert exists.value.details["field"] == "userId"


@pytest.mark.parametrize(
    ("user_id", "name", "role", "password", "field", "says"),
    [
        ("ada", "Ada", "operator", "short", "password", "at least 12 characters"),
        ("ada", "Ada", "operator", "x" * 257, "password", "at most 256"),
        ("adalovelace12", "Ada", "operator", "ADALOVELACE12", "password", "user id"),
        ("ada", "Ada Lovelace 1", "operator", "ada lovelace 1", "password", "name"),
        ("ada", "Ada", "operator", "abababababababab", "password", "4 different"),
        ("ada", "Ada", "operator", "nul\x00in the password", "password", "plain text"),
        ("has space", "Ada", "operator", PASSWORD, "userId", "letters, digits"),
        ("apikey:x", "Ada", "operator", PASSWORD, "userId", "letters, digits"),
        ("ada", " ", "operator", PASSWORD, "name", "printed name"),
        ("ada", "Ada", "wizard", PASSWORD, "role", "unknown role"),
    ],
)
async def test_password_and_account_rules_name_the_field(
    app: Conveyor, user_id: str, name: str, role: str, password: str, field: str, says: str
) -> None:
    with pytest.raises(InvalidUserRequest) as refused:
        await app.users.create(user_id, name=name, role=role, password=password)
    assert refused.value.details["field"] == field
    assert says in refused.value.message
    assert await app.users.get(user_id) is None


async def test_minimum_length_is_a_setting(app: Conveyor) -> None:
    from conveyor.users import PasswordPolicy

    users = Users(app.store, app.audit, policy=PasswordPolicy(min_length=20), hasher=app.users.hasher)
    with pytest.raises(InvalidUserRequest, match="at least 20"):
        await users.create("ada", name="Ada", role="user", password="fifteen chars!!")


async def test_sign_in_is_recorded_with_client_and_request(app: Conveyor) -> None:
    users, _clock = users_of(app)
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    user = await users.verify("ada", PASSWORD, actor=CLIENT)
    assert user.last_sign_in_at is not None
    [signed_in] = await records(app, action="user.signed_in")
    assert (signed_in.object_id, signed_in.client_address, signed_in.request_id) == ("ada", "10.1.2.3", "req_sign_in_1")


async def test_wrong_password_and_unknown_user_are_one_error_each_recorded(app: Conveyor) -> None:
    users, _clock = users_of(app)
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    with pytest.raises(InvalidCredentials) as wrong:
        await users.verify("ada", "not the password at all", actor=CLIENT)
    with pytest.raises(InvalidCredentials) as unknown:
        await users.verify("nobody", PASSWORD, actor=CLIENT)
    assert (wrong.value.code, wrong.value.message) == (unknown.value.code, unknown.value.message)
    failed = await records(app, action="user.sign_in_failed")
    assert [(r.object_id, r.after["reason"]) for r in failed] == [("ada", "wrong password"), ("nobody", "unknown user")]
    assert all(r.client_address == "10.1.2.3" and r.request_id == "req_sign_in_1" for r in failed)
    assert (await users.get("ada")).failed_attempts == 1  # type: ignore[union-attr]


async def test_an_unknown_user_costs_what_a_wrong_password_costs(app: Conveyor) -> None:
    """The dummy hash: without it an unknown id answers in about a millisecond, a known one in
    the tens argon2id takes (measured figures in the README)."""
    from argon2 import PasswordHasher

    users, _clock = users_of(app, max_failures=1000, hasher=PasswordHasher())  # the production cost
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD)

    async def timed(user_id: str) -> float:
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials):
            await users.verify(user_id, "not the password at all")
        return time.perf_counter() - started

    await timed("nobody")  # the dummy hash is made once
    wrong = statistics.median([await timed("ada") for _ in range(5)])
    unknown = statistics.median([await timed("nobody") for _ in range(5)])
    assert unknown > 0.5 * wrong, f"unknown user {unknown * 1000:.1f} ms, wrong password {wrong * 1000:.1f} ms"


async def test_lock_out_after_n_failures_and_release_after_the_period(app: Conveyor) -> None:
    users, clock = users_of(app, max_failures=3, lockout=timedelta(minutes=15))
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await users.verify("ada", "not the password at all", actor=CLIENT)
    locked = await users.get("ada")
    assert locked is not None and locked.locked(clock.now)
    with pytest.raises(InvalidCredentials):  # the right password, during the lock-out
        await users.verify("ada", PASSWORD, actor=CLIENT)
    [lock] = await records(app, action="user.locked")
    assert lock.client_address == "10.1.2.3" and lock.after["lockedUntil"] is not None
    reasons = [r.after["reason"] for r in await records(app, action="user.sign_in_failed")]
    assert reasons == ["wrong password"] * 3 + ["locked out"]

    clock.now += timedelta(minutes=14)
    with pytest.raises(InvalidCredentials):
        await users.verify("ada", PASSWORD)
    clock.now += timedelta(minutes=2)
    assert (await users.verify("ada", PASSWORD)).failed_attempts == 0


async def test_a_success_resets_the_count_of_consecutive_failures(app: Conveyor) -> None:
    users, clock = users_of(app, max_failures=3)
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await users.verify("ada", "not the password at all")
    await users.verify("ada", PASSWORD)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            await users.verify("ada", "not the password at all")
    user = await users.get("ada")
    assert user is not None and not user.locked(clock.now) and user.failed_attempts == 2


async def test_unlock_disable_reset_and_change_are_recorded(app: Conveyor) -> None:
    users, _clock = users_of(app, max_failures=1)
    await users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD, org_id="org-a")
    with pytest.raises(InvalidCredentials):
        await users.verify("ada", "not the password at all")
    await users.unlock("ada")
    await users.verify("ada", PASSWORD)
    await users.update("ada", disabled=True)
    with pytest.raises(InvalidCredentials):
        await users.verify("ada", PASSWORD)
    await users.update("ada", disabled=False, role="admin", name="Ada King")
    await users.set_password("ada", "a brand new pass phrase")
    await users.verify("ada", "a brand new pass phrase")
    await users.change_password("ada", "a brand new pass phrase", "yet another pass phrase")
    with pytest.raises(InvalidUserRequest) as same:
        await users.change_password("ada", "yet another pass phrase", "yet another pass phrase")
    assert same.value.details["field"] == "newPassword"
    with pytest.raises(UserNotFound):
        await users.unlock("nobody")
    user_records = await records(app, object_type="user", object_id="ada")
    actions = [r.action for r in user_records]
    for action in ("user.created", "user.locked", "user.unlocked", "user.changed", "user.password_reset",
                   "user.password_changed", "user.signed_in", "user.sign_in_failed"):  # fmt: skip
        assert action in actions
    changed = [r for r in user_records if r.action == "user.changed"]
    assert changed[0].after["disabled"] is True and changed[1].after["role"] == "admin"
    hashes = {(await users.get("ada")).password_hash}  # type: ignore[union-attr]
    assert not any(h in str(r.before) + str(r.after) for r in user_records for h in hashes)
    assert (await app.audit.verify()).ok


async def test_a_hash_of_other_parameters_is_rehashed_at_sign_in(app: Conveyor) -> None:
    from argon2 import PasswordHasher

    await app.users.create("ada", name="Ada Lovelace", role="operator", password=PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=16384, parallelism=1)
    users, _clock = users_of(app, hasher=stronger)
    assert stronger.check_needs_rehash((await users.get("ada")).password_hash)  # type: ignore[union-attr]
    await users.verify("ada", PASSWORD)
    rehashed = (await users.get("ada")).password_hash  # type: ignore[union-attr]
    assert not stronger.check_needs_rehash(rehashed) and "m=16384,t=2,p=1" in rehashed
    await users.verify("ada", PASSWORD)
