"""E-signatures on critical operations over HTTP (21 CFR Part 11 §11.50, §11.70, §11.200), on
both databases, with the installation's default set of critical operations.

Each critical operation is refused without a signature (428 SIGNATURE_REQUIRED), with a wrong
password, another user's credentials or an unknown meaning (403 SIGNATURE_INVALID), and then
nothing changed; with a good one it is done, its audit record carries the signature's manifest
and the signature's row is bound to that record's content hash. Tampering with a signature
row, moving it to another record, deleting it, or altering the signed record: verify finds it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from conftest import ApiHarness, api_harness, eventually, running_worker

from conveyor.audit import content_hash
from conveyor.engine.schedules import ScheduleSpec
from conveyor.model import Owner
from conveyor.settings import Settings
from conveyor.store.audit import AuditFilter
from conveyor.store.migrate import sync_engine

DEFAULT_CRITICAL = Settings.model_fields["critical_operations"].default
PASSWORDS = {"olga": "olga's long pass phrase", "adam": "adam's long pass phrase", "vera": "vera's long pass phrase"}
ORG_A = Owner(user_id="olga", org_id="org-a", created_by="Olga Operator")


@dataclass
class Env:
    h: ApiHarness
    tokens: dict[str, dict[str, str]]

    @property
    def client(self) -> httpx.AsyncClient:
        return self.h.client


@pytest.fixture
async def env(database_url: str) -> AsyncIterator[Env]:
    async with api_harness(database_url, critical_operations=DEFAULT_CRITICAL) as h:
        users = h.conveyor.users
        await users.create("olga", name="Olga Operator", role="operator", password=PASSWORDS["olga"], org_id="org-a")
        await users.create("adam", name="Adam Admin", role="admin", password=PASSWORDS["adam"], org_id="org-a")
        await users.create("vera", name="Vera Viewer", role="viewer", password=PASSWORDS["vera"], org_id="org-a")
        await users.create("bert", name="Bert B", role="admin", password="bert's long pass phrase", org_id="org-b")
        tokens = {}
        for user_id in ("olga", "adam", "vera"):
            answer = await h.client.post("/api/v1/auth/token", json={"userId": user_id, "password": PASSWORDS[user_id]})
            assert answer.status_code == 200, answer.text
            tokens[user_id] = {"Authorization": f"Bearer {answer.json()['data']['accessToken']}"}
        yield Env(h, tokens)


def sig(user_id: str, password: str | None = None, meaning: str = "approved") -> dict[str, str]:
    return {
        "X-Signature-User": user_id,
        "X-Signature-Password": PASSWORDS.get(user_id, "") if password is None else password,
        "X-Signature-Meaning": meaning,
    }


def code_of(response: httpx.Response) -> str | None:
    """The error code, in whichever family's shape the path answers (seed 003's has none)."""
    body = response.json()
    if "details" in body and isinstance(body["details"], dict):
        return body["details"].get("code")  # type: ignore[no-any-return]
    if "error" in body and isinstance(body["error"], dict):
        return body["error"]["details"].get("reason")  # type: ignore[no-any-return]
    return None


# --- the critical operations, each with what it acts on and how to see whether it changed -------


@dataclass
class Case:
    method: str
    path: str
    caller: str  # whose token
    state: Callable[[], Awaitable[Any]]
    action: str  # the audit action the signature signs
    object_type: str
    object_id: str | None
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None


async def job_case(env: Env, op: str) -> Case:
    engine = env.h.conveyor.engine
    job = await engine.enqueue("t.echo", {"value": 1}, priority="critical", owner=ORG_A)

    async def state() -> Any:
        _jobs, total = await engine.list()
        return total, (await engine.get(job.id)).status

    if op == "cancel":
        return Case("POST", f"/api/v1/jobs/{job.id}/cancel", "olga", state, "job.cancelled", "job", str(job.id))
    if op == "delete":  # seed 002's DELETE of a critical job (a cancel, recorded as job.deleted)
        return Case("DELETE", f"/api/v1/jobs/{job.id}", "olga", state, "job.deleted", "job", str(job.id))
    await engine.cancel(job.id)  # no request: nothing demanded
    return Case("POST", f"/api/v1/jobs/{job.id}/retry", "olga", state, "job.retried", "job", str(job.id))


async def schedule_case(env: Env, op: str) -> Case:
    schedules = env.h.conveyor.schedules
    made = await schedules.create(ScheduleSpec("nightly", "t.echo", {"value": 1}, cron="0 0 1 1 *"), owner=ORG_A)

    async def state() -> Any:
        found = await env.h.conveyor.store.get_schedule(made.id)
        return None if found is None else (found.name, found.enabled, found.updated_at)

    base = f"/api/v1/jobs/schedules/{made.id}"
    if op == "change":
        return Case("PATCH", base, "olga", state, "schedule.changed", "schedule", made.id, json={"name": "renamed"})
    if op == "pause":
        return Case("POST", base + "/pause", "olga", state, "schedule.paused", "schedule", made.id)
    return Case("DELETE", base, "olga", state, "schedule.deleted", "schedule", made.id)


async def cache_case(env: Env) -> Case:
    body = {"type": "t.cached_sum", "data": {"group": uuid.uuid4().hex, "seconds": 0, "value": 1}, "useCache": True}
    created = await env.client.post("/api/v1/jobs", json=body, headers=env.tokens["olga"])
    assert created.status_code == 201, created.text

    async def state() -> Any:
        return (await env.client.get("/api/v1/cache/stats", headers=env.tokens["olga"])).json()["total_cached_results"]

    async with running_worker(env.h.conveyor):
        assert await eventually(state) == 1
    return Case("DELETE", "/api/v1/cache/clear", "olga", state, "cache.cleared", "cache", None, {"confirm": "true"})


async def key_case(env: Env) -> Case:
    new = await env.h.conveyor.store.get_api_key(await _new_key_id(env))
    assert new is not None

    async def state() -> Any:
        return (await env.h.conveyor.store.get_api_key(new.id)).revoked_at  # type: ignore[union-attr]

    return Case("DELETE", f"/api/v1/api-keys/{new.id}", "adam", state, "api_key.revoked", "api_key", new.id)


async def _new_key_id(env: Env) -> str:
    created = await env.client.post(
        "/api/v1/api-keys", json={"name": "victim", "role": "viewer"}, headers=env.tokens["adam"]
    )
    assert created.status_code == 201, created.text
    return str(created.json()["data"]["id"])


CASES = ["job.cancel", "job.retry", "job.delete", "schedule.change", "schedule.pause", "schedule.delete",
         "cache.clear", "api_key.revoke"]  # fmt: skip


async def make_case(env: Env, name: str) -> Case:
    family, _, op = name.partition(".")
    if family == "job":
        return await job_case(env, op)
    if family == "schedule":
        return await schedule_case(env, op)
    if family == "cache":
        return await cache_case(env)
    return await key_case(env)


async def send(env: Env, case: Case, signature: dict[str, str] | None, caller: str | None = None) -> httpx.Response:
    headers = {**env.tokens[caller or case.caller], **(signature or {})}
    return await env.client.request(case.method, case.path, headers=headers, params=case.params, json=case.json)


async def signed_records(env: Env, case: Case) -> list[Any]:
    found, _ = await env.h.conveyor.audit.list(AuditFilter(action=case.action, object_id=case.object_id), limit=100)
    return [r for r in found if isinstance(r.after, dict) and "signature" in r.after]


@pytest.mark.parametrize("name", CASES)
async def test_a_critical_operation_needs_the_callers_own_signature(env: Env, name: str) -> None:
    case = await make_case(env, name)
    before = await case.state()
    other = "adam" if case.caller == "olga" else "olga"
    refusals = [
        (None, 428, "SIGNATURE_REQUIRED"),
        (sig(case.caller, "not my password at all"), 403, "SIGNATURE_INVALID"),
        (sig(case.caller, meaning="because"), 403, "SIGNATURE_INVALID"),
        (sig(other), 403, "SIGNATURE_INVALID"),  # someone else's good credentials: not the caller's signature
        ({"X-Signature-User": case.caller}, 403, "SIGNATURE_INVALID"),
    ]
    for signature, status, code in refusals:
        response = await send(env, case, signature)
        assert response.status_code == status, (signature, response.text)
        assert code_of(response) in (code, None), response.text
        if code_of(response) is None:  # seed 003's shape: the message says it
            assert "sign" in response.json()["detail"]
        assert await case.state() == before, f"{name}: a refused signature changed something"
    assert await signed_records(env, case) == []

    done = await send(env, case, sig(case.caller, meaning="responsible"))
    assert 200 <= done.status_code < 300, done.text
    assert await case.state() != before
    [record] = await signed_records(env, case)
    manifest = record.after["signature"]
    user = await env.h.conveyor.users.get(case.caller)
    assert user is not None
    assert (manifest["signerId"], manifest["printedName"], manifest["meaning"]) == (user.id, user.name, "responsible")
    assert manifest["signedAt"].endswith("Z")
    [row] = [r async for r in env.h.conveyor.audit.signature_rows()]
    assert row.id == manifest["id"] and row.record_hash == content_hash(record.fields())
    assert (row.action, row.object_type, row.object_id) == (case.action, case.object_type, case.object_id)
    verdict = await env.h.conveyor.audit.verify()
    assert verdict.ok and verdict.signatures == 1, verdict


async def test_a_non_critical_job_is_cancelled_without_a_signature(env: Env) -> None:
    engine = env.h.conveyor.engine
    job = await engine.enqueue("t.echo", {"value": 1}, priority="high", owner=ORG_A)
    response = await env.client.post(f"/api/v1/jobs/{job.id}/cancel", headers=env.tokens["olga"])
    assert response.status_code == 200, response.text
    # Seed 002's DELETE cancels: as a cancel, it needs a signature only on a critical job.
    other = await engine.enqueue("t.echo", {"value": 2}, priority="high", owner=ORG_A)
    delete = await env.client.delete(f"/api/v1/jobs/{other.id}", headers=env.tokens["olga"])
    assert delete.status_code == 200, delete.text
    assert (await engine.get(other.id)).status.value == "cancelled"


async def test_signatures_are_shown_with_the_job(env: Env) -> None:
    case = await make_case(env, "job.cancel")
    assert (await send(env, case, sig("olga"))).status_code == 200
    shown = await env.client.get(f"/api/v1/jobs/{case.object_id}/signatures", headers=env.tokens["vera"])
    assert shown.status_code == 200, shown.text
    [one] = shown.json()["data"]["signatures"]
    assert (one["signerId"], one["printedName"], one["meaning"], one["action"]) == (
        "olga", "Olga Operator", "approved", "job.cancelled",
    )  # fmt: skip
    assert len(one["recordHash"]) == 64 and one["requestedBy"] == "olga"
    with_job = await env.client.get(f"/api/v1/jobs/{case.object_id}", headers=env.tokens["vera"])
    assert with_job.json()["data"]["signatures"] == [one]
    verify = await env.client.get("/api/v1/audit/verify", headers=env.tokens["adam"])
    assert verify.json()["data"]["signatures"] == 1, verify.text


async def test_wrong_signature_passwords_lock_the_signer_out(env: Env) -> None:
    for _ in range(5):
        case = await make_case(env, "job.cancel")
        assert (await send(env, case, sig("olga", "not my password at all"))).status_code == 403
    case = await make_case(env, "job.cancel")
    refused = await send(env, case, sig("olga"))  # the right one, while locked out
    assert refused.status_code == 403 and code_of(refused) == "SIGNATURE_INVALID"
    signin = await env.client.post("/api/v1/auth/token", json={"userId": "olga", "password": PASSWORDS["olga"]})
    assert signin.status_code == 401
    failed, _ = await env.h.conveyor.audit.list(AuditFilter(action="user.signature_failed"), limit=100)
    assert len(failed) == 6 and {r.after["purpose"] for r in failed} == {"signature"}
    locked, _ = await env.h.conveyor.audit.list(AuditFilter(action="user.locked"), limit=100)
    assert [r.object_id for r in locked] == ["olga"]


# --- API keys: a user of the key's organisation signs for it ---------------------------------------


async def test_an_api_key_acts_only_with_a_users_signature(env: Env) -> None:
    key = await env.h.key("operator", org="org-a")
    case = await make_case(env, "job.cancel")
    before = await case.state()

    async def with_key(signature: dict[str, str] | None) -> httpx.Response:
        return await env.client.request(case.method, case.path, headers={**key, **(signature or {})})

    assert (await with_key(None)).status_code == 428
    assert (await with_key(sig("vera"))).status_code == 403  # a viewer's role may not cancel
    bert = {
        "X-Signature-User": "bert",
        "X-Signature-Password": "bert's long pass phrase",
        "X-Signature-Meaning": "approved",
    }
    assert (await with_key(bert)).status_code == 403  # another organisation's user
    assert await case.state() == before
    done = await with_key(sig("olga"))
    assert done.status_code == 200, done.text
    [record] = await signed_records(env, case)
    assert record.actor_id.startswith("apikey:") and record.after["signature"]["signerId"] == "olga"
    [row] = [r async for r in env.h.conveyor.audit.signature_rows()]
    assert row.signed_by_caller == record.actor_id


# --- the binding: tampering is found -------------------------------------------------------------


@pytest.fixture
def raw(database_url: str) -> Iterator[Callable[..., None]]:
    engine = sync_engine(database_url)
    tables = ("conveyor_audit", "conveyor_signatures")

    def run(statement: str, **params: Any) -> None:
        with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            for table in tables if postgres else ():
                conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            conn.execute(sa.text(statement), params)
            for table in tables if postgres else ():
                conn.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))

    yield run
    engine.dispose()


async def two_signed(env: Env) -> tuple[Any, Any]:
    for _ in range(2):
        case = await make_case(env, "job.cancel")
        assert (await send(env, case, sig("olga"))).status_code == 200
    rows = sorted([r async for r in env.h.conveyor.audit.signature_rows()], key=lambda r: r.signed_at)
    assert (await env.h.conveyor.audit.verify()).ok
    return rows[0], rows[1]


@pytest.mark.parametrize(
    ("tampering", "finds"),
    [
        ("UPDATE conveyor_signatures SET meaning = 'reviewed' WHERE id = :first", "altered"),
        ("UPDATE conveyor_signatures SET signer_name = 'Someone Else' WHERE id = :first", "altered"),
        ("UPDATE conveyor_signatures SET record_hash = :second_hash WHERE id = :first", "moved"),
        ("DELETE FROM conveyor_signatures WHERE id = :first", "missing"),
        ("INSERT INTO conveyor_signatures (id, record_hash, action, object_type, object_id, signer_id, signer_name, "
         "meaning, signed_at, signed_by_caller) SELECT 'forged', record_hash, action, object_type, object_id, "
         "signer_id, signer_name, meaning, signed_at, signed_by_caller FROM conveyor_signatures WHERE id = :first",
         "signs no record"),
    ],
)  # fmt: skip
async def test_tampering_with_a_signature_is_found(env: Env, raw: Any, tampering: str, finds: str) -> None:
    first, second = await two_signed(env)
    raw(tampering, first=first.id, second_hash=second.record_hash)
    verdict = await env.h.conveyor.audit.verify()
    assert not verdict.ok and finds in (verdict.problem or ""), verdict


async def test_altering_the_signed_record_breaks_the_chain(env: Env, raw: Any, database_url: str) -> None:
    first, _second = await two_signed(env)
    [record] = await signed_records(env, Case("", "", "", lambda: None, first.action, "job", first.object_id))  # type: ignore[arg-type, return-value]
    after = dict(record.after)
    after["signature"] = {**after["signature"], "meaning": "reviewed"}
    as_json = "JSONB" if database_url.startswith("postgresql") else "TEXT"
    raw(
        f"UPDATE conveyor_audit SET after = CAST(:after AS {as_json}) WHERE seq = :seq",
        after=json.dumps(after),
        seq=record.seq,
    )
    verdict = await env.h.conveyor.audit.verify()
    assert not verdict.ok and verdict.broken_seq == record.seq, verdict


async def test_the_policy_follows_the_servers_settings_and_refusals_carry_their_code(database_url: str) -> None:
    async with api_harness(database_url, critical_operations="cache.clear,job.retry:critical") as h:
        viewer = await h.key("viewer", "org-a")
        answer = await h.client.get("/api/v1/auth/signature-policy", headers=viewer)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"] == {
            "operations": {
                "job.cancel": "never",
                "job.retry": "critical_jobs",
                "job.delete": "never",
                "cache.clear": "always",
                "schedule.change": "never",
                "schedule.delete": "never",
                "api_key.revoke": "never",
            },
            "meanings": ["approved", "authored", "responsible", "reviewed"],
        }
        assert (await h.client.get("/api/v1/auth/signature-policy")).status_code == 401

        # seed 003's cache family has no place for the code in its body: the header carries it
        operator = await h.key("operator", "org-a")
        refused = await h.client.delete("/api/v1/cache/clear", params={"confirm": "true"}, headers=operator)
        assert refused.status_code == 428 and refused.headers["x-error-code"] == "SIGNATURE_REQUIRED"
        assert set(refused.json()) == {"detail", "status_code", "timestamp"}
        missing = await h.client.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=operator)
        assert missing.headers["x-error-code"] == "JOB_NOT_FOUND" == code_of(missing)
