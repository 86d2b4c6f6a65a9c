"""The audit trail over HTTP and the CLI: what the API's operations record (actor, request id,
client address, before and after), reading with filters and pages, export, verify, and who
may read it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from conftest import ApiHarness
from typer.testing import CliRunner

from conveyor import Conveyor
from conveyor.cli import app as cli

ADMIN_A = {"sub": "admin-a", "roles": ("admin",), "org": "org-a"}


async def records(api: ApiHarness, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await api.client.get("/api/v1/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_job_operations_record_actor_request_and_states(api: ApiHarness) -> None:
    user = api.jwt("user-1", roles=("user",), org="org-a")
    made = await api.client.post(
        "/api/v1/jobs", json={"type": "t.echo", "data": {"value": 1}}, headers={**user, "X-Request-ID": "req-create-1"}
    )
    job_id = made.json()["data"]["jobId"]
    cancelled = await api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers={**user, "X-Request-ID": "req-cx"})
    assert cancelled.status_code == 200
    retried = await api.client.post(f"/api/v1/jobs/{job_id}/retry", headers=user)
    again = retried.json()["data"]["id"]
    deleted = await api.client.delete(f"/api/v1/jobs/{again}", headers=user)
    assert deleted.status_code == 200, deleted.text

    trail = (await records(api, api.jwt(**ADMIN_A), object_type="job"))["records"]
    actions = [(r["action"], r["objectId"]) for r in trail]
    assert actions == [
        ("job.created", job_id),
        ("job.cancelled", job_id),
        ("job.created", again),
        ("job.retried", job_id),
        ("job.deleted", again),
    ]
    created, cancel = trail[0], trail[1]
    assert (created["actorId"], created["actorName"], created["orgId"]) == ("user-1", "Test user-1", "org-a")
    assert (created["requestId"], created["clientAddress"]) == ("req-create-1", "127.0.0.1")
    assert created["before"] is None and created["after"]["status"] == "pending"
    assert (cancel["requestId"], cancel["before"]["status"], cancel["after"]["status"]) == (
        "req-cx", "pending", "cancelled"
    )  # fmt: skip
    assert trail[3]["after"] == {"retryJobId": again}


async def test_schedule_queue_and_key_operations_are_recorded(api: ApiHarness) -> None:
    admin = api.jwt(**ADMIN_A)
    body = {"name": "nightly", "job_type": "t.echo", "data": {"value": 1}, "cron": "0 0 1 1 *"}
    schedule_id = (await api.client.post("/api/v1/jobs/schedules", json=body, headers=admin)).json()["schedule"]["id"]
    base = f"/api/v1/jobs/schedules/{schedule_id}"
    await api.client.patch(base, json={"name": "nightly 2"}, headers=admin)
    await api.client.post(f"{base}/pause", headers=admin)
    await api.client.post(f"{base}/resume", headers=admin)
    await api.client.delete(base, headers=admin)
    await api.client.post("/api/v1/jobs/queues/default/pause", headers=admin)
    await api.client.post("/api/v1/jobs/queues/default/resume", headers=admin)
    key = (await api.client.post("/api/v1/api-keys", json={"name": "k", "role": "viewer"}, headers=admin)).json()
    await api.client.delete(f"/api/v1/api-keys/{key['data']['id']}", headers=admin)

    trail = (await records(api, admin))["records"]
    assert [r["action"] for r in trail] == [
        "schedule.created", "schedule.changed", "schedule.paused", "schedule.resumed", "schedule.deleted",
        "queue.paused", "queue.resumed", "api_key.created", "api_key.revoked",
    ]  # fmt: skip
    # the caller is known on every kind of route (bodies, queries, path parameters alone)
    assert {(r["actorId"], r["orgId"]) for r in trail} == {("admin-a", "org-a")}
    changed = trail[1]
    assert (changed["before"]["name"], changed["after"]["name"]) == ("nightly", "nightly 2")
    assert trail[4]["after"] is None and trail[4]["before"]["id"] == schedule_id
    assert (trail[5]["before"], trail[5]["after"]) == ({"paused": False}, {"paused": True})
    assert trail[8]["before"]["revoked_at"] is None and trail[8]["after"]["revoked_at"] is not None
    secret = key["data"]["key"].split("_", 2)[2]  # cvk_<id>_<secret>; the secret may hold "_"
    assert secret not in json.dumps(trail), "an API key's secret reached the audit trail"


async def test_failed_sign_ins_are_recorded_without_the_secret(api: ApiHarness) -> None:
    forged = "cvk_0123456789abcdef_not-the-real-secret"
    refused = await api.client.get("/api/v1/jobs", headers={"X-API-Key": forged, "X-Request-ID": "req-bad"})
    assert refused.status_code == 401
    await api.client.get("/api/v1/jobs", headers={"Authorization": "Bearer not-a-jwt"})
    await api.client.get("/api/v1/jobs")  # no credential: not a sign-in attempt
    root = await api.key("super_admin", org=None)
    trail = (await records(api, root, action="auth.failed"))["records"]
    assert [(r["after"]["credential"], r["after"]["keyId"]) for r in trail] == [
        ("api_key", "0123456789abcdef"),
        ("jwt", None),
    ]
    assert (trail[0]["requestId"], trail[0]["clientAddress"], trail[0]["actorId"]) == (
        "req-bad",
        "127.0.0.1",
        "anonymous",
    )
    assert trail[0]["after"]["route"] == "/api/v1/jobs"
    assert "not-the-real-secret" not in json.dumps(trail) and "not-a-jwt" not in json.dumps(trail)
    # an admin of an organisation does not see sign-in failures (they belong to none)
    assert (await records(api, api.jwt(**ADMIN_A), action="auth.failed"))["total"] == 0


async def test_library_calls_are_recorded_as_the_system(api: ApiHarness) -> None:
    job = await api.conveyor.engine.enqueue("t.echo", {"value": 1})
    root = await api.key("super_admin", org=None)
    [record] = (await records(api, root, object_id=str(job.id)))["records"]
    assert (record["actorId"], record["requestId"]) == ("system", None)


async def test_filters_pages_scope_and_who_may_read(api: ApiHarness) -> None:
    for org, n in (("org-a", 3), ("org-b", 2)):
        headers = api.jwt(f"u-{org}", roles=("user",), org=org)
        for i in range(n):
            await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": i}}, headers=headers)
    admin_a = api.jwt(**ADMIN_A)
    first = await records(api, admin_a, page_size=2)
    assert (first["total"], len(first["records"]), first["hasNext"]) == (3, 2, True)
    second = await records(api, admin_a, page_size=2, page=2)
    assert [r["seq"] for r in first["records"] + second["records"]] == sorted(
        r["seq"] for r in first["records"] + second["records"]
    )
    assert {r["orgId"] for r in first["records"] + second["records"]} == {"org-a"}
    assert (await records(api, admin_a, actor="u-org-b"))["total"] == 0
    assert (await records(api, admin_a, action="job.cancelled"))["total"] == 0
    assert (await records(api, admin_a, since="2999-01-01T00:00:00Z"))["total"] == 0
    assert (await records(api, admin_a, until="2999-01-01T00:00:00"))["total"] == 3
    root = await api.key("super_admin", org=None)
    assert (await records(api, root, action="job.created"))["total"] == 5
    too_big = await api.client.get("/api/v1/audit", params={"page_size": 501}, headers=admin_a)
    assert too_big.status_code == 400
    for role in ("viewer", "user", "operator"):
        for path in ("/api/v1/audit", "/api/v1/audit/export", "/api/v1/audit/verify"):
            refused = await api.client.get(path, headers=api.jwt(f"{role}-1", roles=(role,)))
            assert refused.status_code == 403, (role, path)


async def test_export_csv_and_json_parse_back_and_verify_answers(api: ApiHarness) -> None:
    user = api.jwt("user-1", roles=("user",), org="org-a")
    for i in range(3):
        await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": i}}, headers=user)
    admin = api.jwt(**ADMIN_A)
    exported = await api.client.get("/api/v1/audit/export", params={"format": "csv"}, headers=admin)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    # the export is recorded before it is read: it is in itself
    assert [r["action"] for r in rows] == ["job.created"] * 3 + ["audit.exported"]
    assert json.loads(rows[0]["after"])["status"] == "pending" and len(rows[0]["hash"]) == 64
    assert json.loads(rows[3]["after"])["format"] == "csv"
    as_json = (await api.client.get("/api/v1/audit/export", headers=admin)).json()
    assert [r["seq"] for r in as_json[:-1]] == [int(r["seq"]) for r in rows]
    assert as_json[0] == (await records(api, admin))["records"][0]
    # the exports themselves are in the trail
    assert (await records(api, admin, action="audit.exported"))["total"] == 2
    verdict = (await api.client.get("/api/v1/audit/verify", headers=admin)).json()["data"]
    assert verdict["ok"] and verdict["records"] == 5 and verdict["brokenSeq"] is None


def test_cli_verify_and_checkpoint(tmp_path: Path, sqlite_template: Path, monkeypatch: Any) -> None:
    import shutil

    import sqlalchemy as sa

    from conveyor.store.migrate import sync_engine

    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url)
    monkeypatch.setenv("CONVEYOR_AUDIT_KEY", "cli-test-key")
    runner = CliRunner()
    assert runner.invoke(cli, ["enqueue", "noop"]).exit_code == 0
    made = json.loads(runner.invoke(cli, ["audit", "checkpoint"]).output)
    assert (made["seq"], made["signed"]) == (1, True)
    ok = runner.invoke(cli, ["audit", "verify"])
    verdict = json.loads(ok.output)
    assert ok.exit_code == 0 and verdict["ok"] and verdict["checkpointsSigned"], ok.output
    engine = sync_engine(url)
    with engine.begin() as conn:
        record = conn.execute(sa.text("SELECT actor_id FROM conveyor_audit WHERE seq = 1")).scalar()
        conn.execute(sa.text("UPDATE conveyor_audit SET action = 'job.nothing' WHERE seq = 1"))
    engine.dispose()
    assert record.startswith("cli:")
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1 and json.loads(broken.output)["brokenSeq"] == 1


async def test_the_app_fixture_records_nothing_it_was_not_asked_to(app: Conveyor) -> None:
    assert (await app.audit.verify()).records == 0


async def test_hostile_caller_text_never_stops_a_record(api: ApiHarness) -> None:
    """A NUL in a bad token's algorithm (echoed in the refusal's reason), an actor name past
    the column's width: recorded, never a 500."""
    import base64

    from conveyor.audit import Actor

    header = base64.urlsafe_b64encode(json.dumps({"alg": "x\u0000y", "typ": "JWT"}).encode()).rstrip(b"=").decode()
    refused = await api.client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {header}.e30.sig"})
    assert refused.status_code == 401
    await api.conveyor.audit.record("test.long", "thing", "x" * 500, actor=Actor(user_id="u" * 500, name="N" * 500))
    root = await api.key("super_admin", org=None)
    trail = (await records(api, root))["records"]
    assert [r["action"] for r in trail] == ["auth.failed", "test.long"]
    assert "\\u0000" not in json.dumps(trail[0])
    assert [len(trail[1][f]) for f in ("actorId", "actorName", "objectId")] == [200, 200, 200]
    assert trail[1]["actorName"].endswith("\u2026")
    assert (await api.client.get("/api/v1/audit/verify", headers=root)).json()["data"]["ok"]


async def test_a_jobs_records_include_those_naming_it_in_a_list(api: ApiHarness) -> None:
    """`job_id` finds a job's own records and those naming it among others (after.jobIds): a
    bulk enqueue's job.created, a worker's job.completed, a batch.created; never another
    job's, and never another organisation's."""
    from uuid import UUID

    from conftest import running_worker

    from conveyor.engine import JobRequest
    from conveyor.model import Owner

    owner = Owner(user_id="u", org_id="org-a")
    bulk = await api.conveyor.engine.enqueue_many([JobRequest("t.echo", {"value": i}, owner=owner) for i in range(3)])
    mine = bulk[0].id
    lone = await api.conveyor.engine.enqueue("t.echo", {"value": 9}, owner=owner)
    async with running_worker(api.conveyor):
        for job in [*bulk, lone]:
            await api.conveyor.engine.wait(job.id, timeout=10)
    view = await api.conveyor.batches.submit("pair", [JobRequest("t.echo", {"value": 1})] * 2, owner=owner)

    admin = api.jwt(**ADMIN_A)
    trail = (await records(api, admin, job_id=str(mine)))["records"]
    assert [r["action"] for r in trail] == ["job.created", "job.completed"]
    assert all(str(mine) in r["after"]["jobIds"] and r["objectId"] is None for r in trail)
    assert str(lone.id) not in str(trail[0]["after"]["jobIds"])  # the lone job's records are its own
    own = (await records(api, admin, job_id=str(lone.id)))["records"]
    assert (own[0]["action"], own[0]["objectId"]) == ("job.created", str(lone.id))
    assert "job.completed" in [r["action"] for r in own]
    member = str(view.jobs[0].id)
    listed = (await records(api, admin, job_id=member, action="batch.created"))["records"]
    assert [(r["objectType"], r["objectId"]) for r in listed] == [("batch", str(view.batch.id))]
    # another organisation's admin: nothing, even by id
    assert (await records(api, api.jwt(sub="admin-b", roles=("admin",), org="org-b"), job_id=str(mine)))["total"] == 0
    assert (await records(api, admin, job_id=str(UUID(int=1))))["records"] == []
