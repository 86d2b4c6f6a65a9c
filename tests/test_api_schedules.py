"""Schedules over HTTP (seed 000's family): create, list, get, change, pause, resume, delete,
in seed 000's shapes; bad bodies are 400 naming the field; organisations never see each
other's schedules. (Who may call what is checked by the matrix in test_api_authz.py.)"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from conftest import ApiHarness, eventually

from conveyor.model import JobFilter

BASE = "/api/v1/jobs/schedules"
NIGHTLY = {
    "name": "nightly report",
    "job_type": "t.report",
    "data": {"name": "nightly", "count": 5},
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
    "priority": "high",
    "missed_policy": "run_once",
}
SCHEDULE_KEYS = {
    "id", "name", "job_type", "data", "cron", "timezone", "interval_seconds", "priority", "priority_level",
    "queue", "enabled", "missed_policy", "owner", "created_at", "updated_at", "last_run_at", "next_run_at",
}  # fmt: skip


async def create(api: ApiHarness, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await api.client.post(BASE, json=body or NIGHTLY, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["schedule"]


def assert_monitoring_error(response: Any, status: int, field: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "field", "details", "timestamp", "request_id"}
    assert error["code"] == {400: "JOB002", 401: "JOB003", 403: "JOB003", 404: "JOB001"}[status]
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["field"] == field, error
    return error


async def test_create_list_get_change_pause_resume_delete(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    created = await create(api, operator)
    assert set(created) == SCHEDULE_KEYS
    assert (created["job_type"], created["cron"], created["timezone"]) == ("t.report", "0 2 * * *", "Europe/Berlin")
    assert (created["priority"], created["priority_level"], created["missed_policy"]) == ("high", 8, "run_once")
    assert created["data"] == {"name": "nightly", "count": 5, "tags": []}
    assert created["enabled"] and created["owner"]["org_id"] == "org-a"
    assert created["next_run_at"].endswith(("T01:00:00.000Z", "T00:00:00.000Z"))  # 02:00 in Berlin
    schedule_id = created["id"]

    listed = (await api.client.get(BASE, headers=operator)).json()
    assert [s["id"] for s in listed["schedules"]] == [schedule_id]
    assert listed["schedules"][0]["next_run_at"] == created["next_run_at"]
    assert listed["pagination"] == {"page": 1, "page_size": 20, "total": 1, "total_pages": 1, "has_next": False}
    viewer = await api.key("viewer", org="org-a")
    got = await api.client.get(f"{BASE}/{schedule_id}", headers=viewer)
    assert got.status_code == 200 and got.json()["schedule"] == created

    changed = await api.client.patch(
        f"{BASE}/{schedule_id}", json={"interval_seconds": 90, "name": "every 90 s"}, headers=operator
    )
    assert changed.status_code == 200, changed.text
    schedule = changed.json()["schedule"]
    assert (schedule["name"], schedule["cron"], schedule["interval_seconds"]) == ("every 90 s", None, 90.0)
    assert schedule["next_run_at"] != created["next_run_at"]

    paused = (await api.client.post(f"{BASE}/{schedule_id}/pause", headers=operator)).json()
    assert paused["schedule"]["enabled"] is False and paused["schedule"]["next_run_at"] is None
    assert paused["message"] == "schedule paused"
    resumed = (await api.client.post(f"{BASE}/{schedule_id}/resume", headers=operator)).json()
    assert resumed["schedule"]["enabled"] is True and resumed["schedule"]["next_run_at"]

    deleted = await api.client.delete(f"{BASE}/{schedule_id}", headers=operator)
    assert deleted.status_code == 200 and deleted.json()["schedule"]["id"] == schedule_id
    assert_monitoring_error(await api.client.get(f"{BASE}/{schedule_id}", headers=operator), 404, None)
    assert_monitoring_error(await api.client.delete(f"{BASE}/{schedule_id}", headers=operator), 404, None)


async def test_pagination_defaults_to_20_and_stops_at_100(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    for n in range(23):
        await create(api, operator, {"name": f"s{n}", "job_type": "t.echo", "interval_seconds": 3600})
    first = (await api.client.get(BASE, headers=operator)).json()
    assert len(first["schedules"]) == 20 and first["pagination"]["has_next"] and first["pagination"]["total"] == 23
    second = (await api.client.get(BASE, params={"page": 2}, headers=operator)).json()
    assert [s["name"] for s in second["schedules"]] == ["s20", "s21", "s22"]
    assert_monitoring_error(await api.client.get(BASE, params={"page_size": 101}, headers=operator), 400, "page_size")


async def test_without_credentials_is_401(api: ApiHarness) -> None:
    for method, path in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/x"), ("POST", f"{BASE}/x/pause")):
        response = await api.client.request(method, path, json=NIGHTLY if method == "POST" else None)
        assert_monitoring_error(response, 401, None)


async def test_run_now_enqueues_one_job_of_a_paused_schedule_and_leaves_its_ticks(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    created = await create(api, operator)
    await api.client.post(f"{BASE}/{created['id']}/pause", headers=operator)
    ran = await api.client.post(f"{BASE}/{created['id']}/run", headers=operator)
    assert ran.status_code == 201, ran.text
    job = ran.json()["job"]
    assert (job["job_type"], job["status"], job["priority"]) == ("t.report", "pending", "high")
    assert ran.json()["schedule_id"] == created["id"]
    stored = await api.conveyor.engine.get(UUID(job["job_id"]))
    assert stored.schedule_id == created["id"] and stored.owner.org_id == "org-a"
    assert stored.data == {"name": "nightly", "count": 5, "tags": []}
    after = (await api.client.get(f"{BASE}/{created['id']}", headers=operator)).json()["schedule"]
    assert after["enabled"] is False and after["last_run_at"] is None  # a run by hand is not a tick
    await api.conveyor.audit.seal()
    [record] = [r for r in await api.conveyor.store.audit_page(0, 100) if r.action == "schedule.run"]
    assert (record.object_id, record.after) == (created["id"], {"jobId": job["job_id"]})
    # Another organisation's schedule is not there; a viewer may not run one.
    other = await api.key("operator", org="org-b")
    assert_monitoring_error(await api.client.post(f"{BASE}/{created['id']}/run", headers=other), 404, None)
    viewer = await api.key("viewer", org="org-a")
    assert (await api.client.post(f"{BASE}/{created['id']}/run", headers=viewer)).status_code == 403


async def test_organisations_never_see_each_others_schedules(api: ApiHarness) -> None:
    org_a, org_b = await api.key("operator", org="org-a"), await api.key("admin", org="org-b")
    mine = await create(api, org_a)
    theirs = await create(api, org_b, {**NIGHTLY, "name": "theirs"})
    for headers, visible in ((org_a, mine), (org_b, theirs)):
        listed = (await api.client.get(BASE, headers=headers)).json()
        assert [s["id"] for s in listed["schedules"]] == [visible["id"]] and listed["pagination"]["total"] == 1
    hidden = f"{BASE}/{mine['id']}"
    for method, path in (("GET", hidden), ("PATCH", hidden), ("DELETE", hidden), ("POST", f"{hidden}/pause")):
        response = await api.client.request(
            method, path, json={"name": "x"} if method == "PATCH" else None, headers=org_b
        )
        error = assert_monitoring_error(response, 404, None)
        assert error["details"]["reason"] == "SCHEDULE_NOT_FOUND"
    assert (await api.client.get(hidden, headers=org_a)).json()["schedule"]["name"] == "nightly report"
    root = await api.key("super_admin", org="org-c")
    assert (await api.client.get(BASE, headers=root)).json()["pagination"]["total"] == 2


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({**NIGHTLY, "job_type": "no.such.type"}, "job_type", "INVALID_JOB_TYPE"),
        ({**NIGHTLY, "data": {"name": "", "count": 1000}}, "data.name", "INVALID_JOB_DATA"),
        ({**NIGHTLY, "cron": "0 25 * * *"}, "cron", "INVALID_SCHEDULE"),
        ({**NIGHTLY, "cron": "* * *"}, "cron", "INVALID_SCHEDULE"),
        ({**NIGHTLY, "timezone": "Europe/Atlantis"}, "timezone", "INVALID_SCHEDULE"),
        ({**NIGHTLY, "timezone": "Europe"}, "timezone", "INVALID_SCHEDULE"),
        ({**NIGHTLY, "cron": None, "interval_seconds": 0.5}, "interval_seconds", "INVALID_SCHEDULE"),
        ({**NIGHTLY, "interval_seconds": 60}, "cron", "INVALID_SCHEDULE"),  # both
        ({k: v for k, v in NIGHTLY.items() if k != "cron"}, "cron", "INVALID_SCHEDULE"),  # neither
        ({**NIGHTLY, "missed_policy": "sometimes"}, "missed_policy", "INVALID_REQUEST"),
        ({**NIGHTLY, "priority": "urgent"}, "priority", "INVALID_JOB_OPTIONS"),
        ({**NIGHTLY, "queue": "no spaces"}, "queue", "INVALID_REQUEST"),
        ({**NIGHTLY, "name": ""}, "name", "INVALID_SCHEDULE"),
        ({k: v for k, v in NIGHTLY.items() if k != "name"}, "name", "INVALID_REQUEST"),
        ({**NIGHTLY, "colour": "red"}, "colour", "INVALID_REQUEST"),
        ({**NIGHTLY, "data": [1, 2]}, "data", "INVALID_REQUEST"),
        ({**NIGHTLY, "name": "bad\x00name"}, "name", "INVALID_SCHEDULE"),
        ([NIGHTLY], "body", "INVALID_REQUEST"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field_and_store_nothing(
    api: ApiHarness, body: Any, field: str, reason: str
) -> None:
    operator = await api.key("operator", org="org-a")
    response = await api.client.post(BASE, json=body, headers=operator)
    error = assert_monitoring_error(response, 400, field)
    assert error["details"]["reason"] == reason
    if reason == "INVALID_JOB_DATA":
        assert {e["field"] for e in error["details"]["errors"]} == {"data.name", "data.count"}
    assert (await api.client.get(BASE, headers=operator)).json()["pagination"]["total"] == 0


async def test_bad_changes_are_400_naming_the_field_and_change_nothing(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    schedule = await create(api, operator)
    path = f"{BASE}/{schedule['id']}"
    for body, field in [
        ({"name": None}, "name"),
        ({"timezone": "Nowhere"}, "timezone"),
        ({"cron": "not cron"}, "cron"),
        ({"data": {"name": "x", "count": "many"}}, "data.count"),  # data is replaced whole
        ({"job_type": "t.echo", "data": None}, "data"),
        ({"enabled": None}, "enabled"),
        ({"speed": 3}, "speed"),
    ]:
        assert_monitoring_error(await api.client.patch(path, json=body, headers=operator), 400, field)
    bad_json = await api.client.patch(
        path, content=b"{not json", headers={**operator, "content-type": "application/json"}
    )
    assert assert_monitoring_error(bad_json, 400, "body")["details"]["reason"] == "INVALID_JSON"
    assert (await api.client.get(path, headers=operator)).json()["schedule"] == schedule
    assert (await api.client.patch(path, json={}, headers=operator)).json()["schedule"] == schedule  # no change


@pytest.mark.parametrize("schedule_id", ["not-a-uuid", "%00", "00000000-0000-0000-0000-000000000000"])
async def test_an_unknown_or_malformed_id_is_404(api: ApiHarness, schedule_id: str) -> None:
    operator = await api.key("operator", org="org-a")
    for method in ("GET", "DELETE"):
        response = await api.client.request(method, f"{BASE}/{schedule_id}", headers=operator)
        assert_monitoring_error(response, 404, None)
    assert_monitoring_error(await api.client.post(f"{BASE}/{schedule_id}/resume", headers=operator), 404, None)


async def test_an_api_only_process_runs_the_scheduler(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    schedule = await create(api, operator, {"name": "often", "job_type": "t.echo", "interval_seconds": 1})

    async def made() -> list[Any]:
        jobs, _ = await api.conveyor.engine.list(JobFilter(owner_org_id="org-a"))
        return [j for j in jobs if j.schedule_id == schedule["id"]]

    job = (await eventually(made, timeout=10))[0]
    assert job.idempotency_key.startswith(f"schedule:{schedule['id']}:")
    monitored = (await api.client.get(f"/api/v1/jobs/jobs/{job.id}", headers=operator)).json()["job"]
    assert monitored["owner"]["org_id"] == "org-a"
    again = (await api.client.get(f"{BASE}/{schedule['id']}", headers=operator)).json()["schedule"]
    assert again["last_run_at"] is not None


async def test_openapi_shows_the_create_body_with_examples(api: ApiHarness) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    body = spec["paths"][BASE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert schema["examples"][0]["cron"] == "0 2 * * *" and "interval_seconds" in schema["examples"][1]
