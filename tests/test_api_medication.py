"""Seed 001's typed job endpoints over HTTP, on SQLite and PostgreSQL: 202 with the job and
links to both job families, each validation error naming its field, 401 without credentials,
403 for a role the table refuses, the job visible through /api/v1/jobs/{id} and
/api/v1/jobs/jobs/{id}, no PHI in plain text at rest, in answers or in the audit trail, and
every refusal recorded as evidence. Parametrized by tests/medication_samples.py, so that each
installed kind's sample body is exercised; then the notifications API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import API_MAX_BODY_BYTES, ApiHarness, api_harness, cut_sessions, running_worker
from medication_samples import SAMPLES, changed

from conveyor.access import Role
from conveyor.api.app import route_table
from conveyor.api.routes.medication import ROLES_BY_ROUTE, TYPED_JOBS
from conveyor.model import Owner
from conveyor.store.audit import AuditFilter
from conveyor.store.migrate import sync_engine

INSTALLED = {r.path for r in route_table()}
PATHS = [t.path for t in TYPED_JOBS if t.route in INSTALLED and t.path in SAMPLES]
INVALID = [(path, change, name) for path in PATHS for change, name in SAMPLES[path].invalid]
MONITORING_CODES = {400: "JOB002", 401: "JOB003", 403: "JOB003", 404: "JOB001"}


def url(path: str) -> str:
    return f"/api/v1/jobs/{path}"


def raw_text(database_url: str) -> str:
    """Every row of every table, as text."""
    engine = sync_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return "\n".join(str(r) for t in tables for r in conn.execute(sa.text(f'SELECT * FROM "{t}"')))
    finally:
        engine.dispose()


async def refusals(api: ApiHarness, route: str) -> list[dict[str, Any]]:
    records, _ = await api.conveyor.audit.list(AuditFilter(action="job.refused", object_id=route), limit=100)
    return [r.after for r in records]


def assert_monitoring_error(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == MONITORING_CODES[status] and error["request_id"] == response.headers["x-request-id"]
    if field is not None:
        assert error["field"] == field, error
    return dict(error)


def test_the_three_endpoints_of_this_part_are_installed_and_every_installed_one_has_a_sample() -> None:
    assert {"medication-reminder", "refill-check", "supply-monitor"} <= set(PATHS)
    installed = {t.path for t in TYPED_JOBS if t.route in INSTALLED}
    assert installed <= set(SAMPLES), f"add sample bodies to tests/medication_samples.py for {installed - set(SAMPLES)}"
    # Static paths come before /api/v1/jobs/{job_id}
    order = [r.path for r in route_table()]
    assert all(order.index(url(p)) < order.index("/api/v1/jobs/{job_id}") for p in PATHS)


@pytest.mark.parametrize("path", PATHS)
async def test_a_job_starts_with_202_and_is_visible_through_both_families(
    api: ApiHarness, database_url: str, path: str
) -> None:
    sample = SAMPLES[path]
    entry = next(t for t in TYPED_JOBS if t.path == path)
    # An operator, or an admin where the role table wants one (backup)
    operator = await api.key("operator" if Role.OPERATOR in entry.roles else "admin", org="org-a")
    response = await api.client.post(url(path), json=sample.body, headers=operator)
    assert response.status_code == 202, response.text
    job = response.json()
    assert set(job) == {"id", "type", "status", "priority", "created_at", "links"}
    assert (job["type"], job["status"], job["priority"]) == (entry.kind, "pending", entry.priority.value.upper())
    assert job["links"] == {"self": f"/api/v1/jobs/{job['id']}", "monitoring": f"/api/v1/jobs/jobs/{job['id']}"}
    assert not any(value in response.text for value in sample.phi)  # minimum necessary
    canonical = await api.client.get(job["links"]["self"], headers=operator)
    monitoring = await api.client.get(job["links"]["monitoring"], headers=operator)
    assert canonical.status_code == 200 and canonical.json()["data"]["type"] == entry.kind
    assert monitoring.status_code == 200 and monitoring.json()["job"]["job_type"] == entry.kind
    # Another organisation's member finds no such job in either family.
    outsider = await api.key("admin", org="org-b")
    for link in job["links"].values():
        assert (await api.client.get(link, headers=outsider)).status_code == 404
    # The body is sealed at rest; creation and each read of it are in the audit trail.
    stored = raw_text(database_url)
    assert job["id"] in stored and not any(value in stored for value in sample.phi)
    created, _ = await api.conveyor.audit.list(AuditFilter(action="job.created", object_id=job["id"]), limit=5)
    reads, _ = await api.conveyor.audit.list(AuditFilter(action="job.read", object_id=job["id"]), limit=5)
    assert len(created) == 1 and len(reads) == 2


@pytest.mark.parametrize(("priority", "attempts"), [("CRITICAL", 6), ("HIGH", 4), ("MEDIUM", 4), ("low", 3)])
async def test_priority_selects_seed_001s_retry_table(api: ApiHarness, priority: str, attempts: int) -> None:
    admin = await api.key("admin", org="org-a")
    body = {**SAMPLES["refill-check"].body, "priority": priority}
    response = await api.client.post(url("refill-check"), json=body, headers=admin)
    assert response.status_code == 202 and response.json()["priority"] == priority.upper()
    job = await api.conveyor.engine.get(uuid.UUID(response.json()["id"]))
    assert job.max_attempts == attempts and job.priority_class.value == priority.lower()
    assert "priority" not in job.data  # an option, not input


@pytest.mark.parametrize(("path", "change", "field"), INVALID, ids=[f"{p}:{f}" for p, _, f in INVALID])
async def test_each_validation_error_names_its_field_and_is_recorded(
    api: ApiHarness, path: str, change: dict[str, Any], field: str
) -> None:
    admin = await api.key("admin", org="org-a")
    body = changed(SAMPLES[path].body, change)
    error = assert_monitoring_error(await api.client.post(url(path), json=body, headers=admin), 400, field)
    assert not any(value in str(error) for value in SAMPLES[path].phi)  # no PHI in error messages
    [record] = await refusals(api, url(path))
    assert (record["status"], record["field"], record["method"]) == (400, field, "POST")
    assert not any(value in str(record) for value in SAMPLES[path].phi)
    assert await api.conveyor.engine.list() == ([], 0)


@pytest.mark.parametrize("path", PATHS)
async def test_a_body_that_is_no_object_is_refused(api: ApiHarness, path: str) -> None:
    admin = await api.key("admin", org="org-a")
    assert_monitoring_error(await api.client.post(url(path), json=[1], headers=admin), 400, "body")
    bad_json = await api.client.post(url(path), content=b"{", headers={**admin, "Content-Type": "application/json"})
    assert_monitoring_error(bad_json, 400, "body")
    assert [r["code"] for r in await refusals(api, url(path))] == ["INVALID_REQUEST", "INVALID_JSON"]


@pytest.mark.parametrize("path", PATHS)
async def test_without_credentials_401_and_recorded(api: ApiHarness, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = await api.client.post(url(path), json=SAMPLES[path].body, headers=headers)
        assert_monitoring_error(response, 401)
        assert "bearer" in response.headers["www-authenticate"].lower()
    recorded = await refusals(api, url(path))
    assert [r["status"] for r in recorded] == [401, 401]
    records, _ = await api.conveyor.audit.list(AuditFilter(action="job.refused", object_id=url(path)), limit=5)
    assert {r.actor_id for r in records} == {"anonymous"}


async def test_a_body_over_the_limit_is_refused_before_routing_and_recorded(api: ApiHarness) -> None:
    headers = await api.key("operator", org="org-a")
    body = {**SAMPLES["refill-check"].body, "medication_id": "x" * (API_MAX_BODY_BYTES + 1)}
    response = await api.client.post(url("refill-check"), json=body, headers=headers)
    assert response.status_code == 413
    [recorded] = await refusals(api, url("refill-check"))
    assert (recorded["status"], recorded["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert "x" * 100 not in str(recorded)  # nothing of the body


@pytest.mark.parametrize("path", PATHS)
async def test_roles_the_table_refuses_get_403_and_are_recorded(api: ApiHarness, path: str) -> None:
    allowed = ROLES_BY_ROUTE[url(path)]
    sample = SAMPLES[path]
    for role in Role:
        headers = await api.key(role.value, org="org-a")
        body = sample.body
        if role is Role.USER and sample.patient_field:  # for themselves: see below
            continue
        response = await api.client.post(url(path), json=body, headers=headers)
        if role in allowed:
            assert response.status_code == 202, (role, response.text)
        else:
            assert_monitoring_error(response, 403)
    refused = [r for r in Role if r not in allowed and not (r is Role.USER and sample.patient_field)]
    assert [r["status"] for r in await refusals(api, url(path))] == [403] * len(refused)


@pytest.mark.parametrize("path", [p for p in PATHS if SAMPLES[p].patient_field])
async def test_a_user_starts_jobs_for_themselves_only(api: ApiHarness, path: str) -> None:
    sample = SAMPLES[path]
    field = sample.patient_field
    assert field is not None
    alice = ApiHarness.jwt(sub="alice", roles=("user",), org="org-a")
    for_someone_else = await api.client.post(url(path), json=sample.body, headers=alice)
    assert_monitoring_error(for_someone_else, 403, field)
    own = await api.client.post(url(path), json={**sample.body, field: "alice"}, headers=alice)
    assert own.status_code == 202, own.text
    assert (await api.client.get(f"/api/v1/jobs/jobs/{own.json()['id']}", headers=alice)).status_code == 200


async def test_a_reminder_runs_and_its_firing_is_a_notification_over_the_api(
    api: ApiHarness, database_url: str
) -> None:
    """The reminder job made over HTTP runs; a firing delivers a notification that its
    organisation reads (body opened, audited), filters and marks read; another organisation
    does not see it (404); a user sees the ones addressed to them."""
    nurse = await api.key("operator", org="org-a")
    body = {**SAMPLES["medication-reminder"].body, "user_id": "alice"}
    created = await api.client.post(url("medication-reminder"), json=body, headers=nurse)
    conveyor = api.conveyor
    async with running_worker(conveyor, scheduler=None):
        done = await conveyor.engine.wait(uuid.UUID(created.json()["id"]), timeout=30)
        assert done.status.value == "completed", done.error
        [schedule_id, _] = done.result["schedule_ids"]
        schedule = await conveyor.store.get_schedule(schedule_id)
        assert schedule is not None and schedule.next_run_at is not None
        [delivery] = await conveyor.schedules.fire_due(schedule.next_run_at)
        assert (await conveyor.engine.wait(delivery.id, timeout=30)).status.value == "completed"
    await conveyor.notifications.notify(
        owner=Owner(org_id="org-b"), user_id="bob", kind="medication_reminder", body={"x": 1}, delivery_key="b-1"
    )

    listed = await api.client.get("/api/v1/notifications", params={"kind": "medication_reminder"}, headers=nurse)
    assert listed.status_code == 200, listed.text
    [note] = listed.json()["notifications"]
    assert note["user_id"] == "alice" and note["read"] is False
    assert note["body"]["medication_id"] == "warfarin-5mg" and note["body"]["timezone"] == "Europe/Berlin"
    assert listed.json()["pagination"]["total"] == 1
    assert "warfarin" not in raw_text(database_url).replace("SELECT", "")  # sealed at rest

    alice = ApiHarness.jwt(sub="alice", roles=("user",), org="org-a")
    bob_of_a = ApiHarness.jwt(sub="bob", roles=("user",), org="org-a")
    outsider = await api.key("admin", org="org-b")
    assert [
        n["id"] for n in (await api.client.get("/api/v1/notifications", headers=alice)).json()["notifications"]
    ] == [note["id"]]
    assert (await api.client.get("/api/v1/notifications", headers=bob_of_a)).json()["notifications"] == []
    for headers in (bob_of_a, outsider):
        assert_monitoring_error(await api.client.get(f"/api/v1/notifications/{note['id']}", headers=headers), 404)
        assert_monitoring_error(await api.client.post(f"/api/v1/notifications/{note['id']}/read", headers=headers), 404)
    assert_monitoring_error(await api.client.get("/api/v1/notifications/not-an-id", headers=nurse), 404)
    super_admin = await api.key("super_admin", org="org-b")
    assert (await api.client.get("/api/v1/notifications", headers=super_admin)).json()["pagination"]["total"] == 2

    read = await api.client.post(f"/api/v1/notifications/{note['id']}/read", headers=alice)
    assert read.status_code == 200 and read.json()["notification"]["read"] is True
    unread = await api.client.get("/api/v1/notifications", params={"unread": "true"}, headers=nurse)
    assert unread.json()["notifications"] == []
    by_user = await api.client.get(
        "/api/v1/notifications", params={"user_id": "alice", "unread": "false"}, headers=nurse
    )
    assert [n["id"] for n in by_user.json()["notifications"]] == [note["id"]]
    reads, _ = await conveyor.audit.list(AuditFilter(action="notification.read"), limit=100)
    assert reads and all("warfarin" not in str(r.after) for r in reads)
    marked, _ = await conveyor.audit.list(AuditFilter(action="notification.marked_read"), limit=10)
    assert [r.object_id for r in marked] == [note["id"]]


async def test_a_process_without_the_pack_answers_404_and_records_it(database_url: str) -> None:
    async with api_harness(database_url, packs="none") as bare:
        admin = await bare.key("admin", org="org-a")
        response = await bare.client.post(url("refill-check"), json=SAMPLES["refill-check"].body, headers=admin)
        error = assert_monitoring_error(response, 404)
        assert error["details"]["reason"] == "JOB_TYPE_NOT_INSTALLED"
        assert [r["status"] for r in await refusals(bare, url("refill-check"))] == [404]


async def test_a_server_error_is_500_in_seed_000s_shape_and_recorded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_harness(database_url, raise_app_exceptions=False) as app:
        admin = await app.key("admin", org="org-a")

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the engine broke")

        monkeypatch.setattr(app.conveyor.engine, "enqueue", broken)
        response = await app.client.post(url("refill-check"), json=SAMPLES["refill-check"].body, headers=admin)
        assert response.status_code == 500 and response.json()["error"]["code"] == "JOB005"
        assert "broke" not in response.text
        [record] = await refusals(app, url("refill-check"))
        assert (record["status"], record["code"]) == (500, "INTERNAL_ERROR")


async def test_a_typed_job_refused_by_an_unavailable_database_is_a_503(
    api: ApiHarness, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The route records its refusal as evidence (that write fails too, and says so in a line);
    # the answer is the 503 any endpoint gives, not a 500.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only sessions")
    import psycopg

    name = sa.make_url(database_url).database
    assert name is not None
    operator = await api.key("operator", org="org-a")
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        try:
            cut_sessions(admin, name)
            with caplog.at_level("WARNING", logger="conveyor"):
                response = await api.client.post(
                    url("medication-reminder"), json=SAMPLES["medication-reminder"].body, headers=operator
                )
        finally:
            admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
            cut_sessions(admin, name)
    assert response.status_code == 503, response.text
    assert response.headers["x-error-code"] == "DATABASE_UNAVAILABLE" and response.headers["retry-after"] == "2"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [r.getMessage() for r in caplog.records]
