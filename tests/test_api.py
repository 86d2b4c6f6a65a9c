"""The HTTP API over both databases: seed 002's and seed 000's documented paths, with the
seeds' own example requests, health, metrics, keys, and the wait endpoint's wake-up."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from conftest import ApiHarness, eventually, running_worker

SEED002_CREATE = {
    "type": "t.echo",
    "data": {"value": ["I love this product!", "This is terrible quality.", "Average experience, nothing special."]},
    "priority": "high",
}


async def create(api: ApiHarness, headers: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await api.client.post("/api/v1/jobs", json=body or SEED002_CREATE, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def assert_canonical_envelope(body: dict[str, Any], success: bool = True) -> None:
    assert body["success"] is success
    assert body["timestamp"].endswith("Z")


# --- create, get ---------------------------------------------------------------------------


async def test_create_answers_seed002_shape_and_get_shows_it(api: ApiHarness) -> None:
    admin = await api.key("admin", org="org-a")
    response = await api.client.post("/api/v1/jobs", json=SEED002_CREATE, headers=admin)
    assert response.status_code == 201
    body = response.json()
    assert_canonical_envelope(body)
    data = body["data"]
    assert {"jobId", "type", "status", "priority", "createdAt"} <= data.keys()
    assert data["type"] == "t.echo" and data["status"] == "pending" and data["priority"] == "high"
    assert response.headers["Location"] == f"/api/v1/jobs/{data['jobId']}"

    got = await api.client.get(f"/api/v1/jobs/{data['jobId']}", headers=admin)
    assert got.status_code == 200
    job = got.json()["data"]
    assert job["id"] == data["jobId"] and job["progress"] == 0 and "startedAt" not in job
    assert job["owner"]["orgId"] == "org-a"


async def test_priority_defaults_to_medium_and_accepts_levels(api: ApiHarness) -> None:
    user = await api.key("user")
    default = await create(api, user, {"type": "t.echo", "data": {}})
    assert default["priority"] == "medium" and default["priorityLevel"] == 6
    numeric = await create(api, user, {"type": "t.echo", "data": {}, "priority": 9})
    assert numeric["priority"] == "critical" and numeric["priorityLevel"] == 9


async def test_invalid_type_lists_allowed_types(api: ApiHarness) -> None:
    user = await api.key("user")
    response = await api.client.post("/api/v1/jobs", json={"type": "nope", "data": {}}, headers=user)
    assert response.status_code == 400
    body = response.json()
    assert_canonical_envelope(body, success=False)
    assert body["details"]["code"] == "INVALID_JOB_TYPE"
    assert "t.echo" in body["details"]["allowedTypes"] and "sleep" in body["details"]["allowedTypes"]


async def test_invalid_data_names_every_field(api: ApiHarness) -> None:
    user = await api.key("user")
    body = {"type": "t.report", "data": {"name": "", "count": 1000}}
    response = await api.client.post("/api/v1/jobs", json=body, headers=user)
    assert response.status_code == 400
    details = response.json()["details"]
    assert details["code"] == "INVALID_JOB_DATA"
    assert {e["field"] for e in details["errors"]} == {"name", "count"}


async def test_idempotency_key_gives_back_the_first_job(api: ApiHarness) -> None:
    user = await api.key("user", org="org-a")
    body = {**SEED002_CREATE, "idempotencyKey": "order-42"}
    first = await api.client.post("/api/v1/jobs", json=body, headers=user)
    again = await api.client.post("/api/v1/jobs", json=SEED002_CREATE, headers={**user, "Idempotency-Key": "order-42"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    # another organisation's identical key is another job
    other = await api.key("user", org="org-b")
    theirs = await api.client.post("/api/v1/jobs", json=body, headers=other)
    assert theirs.status_code == 201 and theirs.json()["data"]["id"] != first.json()["data"]["id"]


async def test_the_longest_idempotency_key_works_within_an_organisation(api: ApiHarness) -> None:
    """500 characters is the key's bound; the organisation's scope comes on top of it."""
    user = await api.key("user", org="org-a")
    longest = {**SEED002_CREATE, "idempotencyKey": "k" * 500}
    first = await api.client.post("/api/v1/jobs", json=longest, headers=user)
    again = await api.client.post("/api/v1/jobs", json=longest, headers=user)
    other = await api.client.post("/api/v1/jobs", json={**longest, "idempotencyKey": "k" * 499 + "j"}, headers=user)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 201), first.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"] != other.json()["data"]["id"]
    too_long = await api.client.post("/api/v1/jobs", json={**longest, "idempotencyKey": "k" * 501}, headers=user)
    assert too_long.status_code == 400


# --- list ----------------------------------------------------------------------------------


async def test_list_answers_both_contracts_and_filters(api: ApiHarness) -> None:
    user = await api.key("operator", org="org-a")
    for i in range(3):
        await create(api, user, {"type": "t.echo", "data": {"value": i}, "priority": "high"})
    await create(api, user, {"type": "t.report", "data": {"name": "r", "count": 1}, "labels": {"country": "Kenya"}})
    response = await api.client.get("/api/v1/jobs", headers=user)
    body = response.json()
    assert_canonical_envelope(body)
    assert body["data"]["total"] == 4 == body["total_count"] and len(body["data"]["jobs"]) == 4
    assert body["page"] == 1 and body["page_size"] == 50 and body["has_next"] is False
    item = body["jobs"][0]
    assert item is not None and {"id", "type", "status", "createdAt", "job_id", "job_type", "created_at"} <= item.keys()
    assert item == body["data"]["jobs"][0]

    by_type = (await api.client.get("/api/v1/jobs?type=t.echo&priority=high", headers=user)).json()
    assert by_type["data"]["total"] == 3
    seed003 = (await api.client.get("/api/v1/jobs?job_type=t.report&country=Kenya", headers=user)).json()
    assert seed003["total_count"] == 1 and seed003["jobs"][0]["country"] == "Kenya"
    paged = (await api.client.get("/api/v1/jobs?page=2&page_size=3", headers=user)).json()
    assert paged["page_size"] == 3 and len(paged["jobs"]) == 1 and paged["has_next"] is False
    first_page = (await api.client.get("/api/v1/jobs?page=1&limit=3", headers=user)).json()
    assert first_page["has_next"] is True
    none_yet = (await api.client.get("/api/v1/jobs?status=success", headers=user)).json()
    assert none_yet["total_count"] == 0


async def test_list_newest_first_and_date_filters(api: ApiHarness) -> None:
    user = await api.key("user")
    first = await create(api, user)
    await asyncio.sleep(0.01)
    second = await create(api, user)
    jobs = (await api.client.get("/api/v1/jobs", headers=user)).json()["jobs"]
    assert [j["id"] for j in jobs] == [second["id"], first["id"]]
    after = (await api.client.get("/api/v1/jobs", params={"created_after": second["createdAt"]}, headers=user)).json()
    assert [j["id"] for j in after["jobs"]] == [second["id"]]
    before = (await api.client.get("/api/v1/jobs", params={"created_before": second["createdAt"]}, headers=user)).json()
    assert [j["id"] for j in before["jobs"]] == [first["id"]]


# --- cancel, retry, logs, wait ---------------------------------------------------------------


async def test_cancel_rules_of_seed002(api: ApiHarness) -> None:
    user = await api.key("user")
    pending = await create(api, user)
    response = await api.client.delete(f"/api/v1/jobs/{pending['id']}", headers=user)
    assert response.status_code == 200
    assert response.json()["message"] == "Job cancelled successfully"
    again = await api.client.delete(f"/api/v1/jobs/{pending['id']}", headers=user)
    assert again.status_code == 409
    assert again.json()["details"] == {
        "code": "JOB_NOT_CANCELLABLE",
        "jobId": pending["id"],
        "currentStatus": "cancelled",
    }


async def test_delete_with_purge_removes_a_job_for_good_but_not_a_running_one(api: ApiHarness) -> None:
    user = await api.key("user", org="org-a")
    job = await create(api, user)
    await api.client.delete(f"/api/v1/jobs/{job['id']}", headers=user)  # cancelled: still there
    assert (await api.client.get(f"/api/v1/jobs/{job['id']}", headers=user)).status_code == 200
    # Another organisation's user and a viewer of the same one cannot purge it.
    other = await api.key("user", org="org-b")
    assert (await api.client.delete(f"/api/v1/jobs/{job['id']}?purge=true", headers=other)).status_code == 404
    viewer = await api.key("viewer", org="org-a")
    assert (await api.client.delete(f"/api/v1/jobs/{job['id']}?purge=true", headers=viewer)).status_code == 403
    purged = await api.client.delete(f"/api/v1/jobs/{job['id']}?purge=true", headers=user)
    assert purged.status_code == 200, purged.text
    assert (purged.json()["message"], purged.json()["data"]["status"]) == ("Job deleted", "cancelled")
    assert (await api.client.get(f"/api/v1/jobs/{job['id']}", headers=user)).status_code == 404
    await api.conveyor.audit.seal()
    actions = [r.action for r in await api.conveyor.store.audit_page(0, 100) if r.object_id == job["id"]]
    assert actions == ["job.created", "job.deleted", "job.deleted"]  # the DELETE that cancelled, the purge
    running = await create(api, user, {"type": "t.loop_spin", "data": {"seconds": 30}})
    async with running_worker(api.conveyor):
        await eventually(lambda: _status_is(api, user, running["id"], "running"))
        refused = await api.client.delete(f"/api/v1/jobs/{running['id']}?purge=true", headers=user)
        assert refused.status_code == 409 and refused.json()["details"]["code"] == "JOB_NOT_DELETABLE"
        await api.client.post(f"/api/v1/jobs/{running['id']}/cancel", headers=user)


async def test_cancel_running_job_stops_it_at_a_checkpoint(api: ApiHarness) -> None:
    user = await api.key("user")
    job = await create(api, user, {"type": "t.loop_spin", "data": {"seconds": 30}})
    async with running_worker(api.conveyor):
        await eventually(lambda: _status_is(api, user, job["id"], "running"))
        response = await api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=user)
        assert response.status_code == 200
        assert response.json()["data"]["cancelRequested"] is True
        await eventually(lambda: _status_is(api, user, job["id"], "cancelled"))


async def _status_is(api: ApiHarness, headers: dict[str, str], job_id: str, status: str) -> bool:
    response = await api.client.get(f"/api/v1/jobs/{job_id}", headers=headers)
    return bool(response.json()["data"]["status"] == status)


async def test_retry_runs_a_failed_job_again_as_a_new_job(api: ApiHarness) -> None:
    user = await api.key("user")
    job = await create(api, user, {"type": "t.fail", "data": {"permanent": True}})
    early = await api.client.post(f"/api/v1/jobs/{job['id']}/retry", headers=user)
    assert early.status_code == 409 and early.json()["details"]["currentStatus"] == "pending"
    async with running_worker(api.conveyor):
        await eventually(lambda: _status_is(api, user, job["id"], "failed"))
    response = await api.client.post(f"/api/v1/jobs/{job['id']}/retry", headers=user)
    assert response.status_code == 201
    again = response.json()["data"]
    assert again["id"] != job["id"] and again["retryOf"] == job["id"] and again["status"] == "pending"


async def test_logs_filter_by_level_and_page(api: ApiHarness) -> None:
    user = await api.key("user")
    job = await create(api, user, {"type": "t.items", "data": {"items": [1, 2, 3], "bad": [2]}})
    async with running_worker(api.conveyor):
        await eventually(lambda: _status_is(api, user, job["id"], "completed"))
    everything = (await api.client.get(f"/api/v1/jobs/{job['id']}/logs", headers=user)).json()["data"]
    assert everything["total"] >= 1
    levels = {entry["level"] for entry in everything["logs"]}
    warnings = (await api.client.get(f"/api/v1/jobs/{job['id']}/logs?level=warning", headers=user)).json()["data"]
    assert all(e["level"] in ("warning", "error", "critical") for e in warnings["logs"])
    assert warnings["total"] <= everything["total"]
    assert levels  # the job logs something
    one = (await api.client.get(f"/api/v1/jobs/{job['id']}/logs?limit=1&offset=0", headers=user)).json()["data"]
    assert len(one["logs"]) == 1 and one["total"] == everything["total"]


async def test_wait_answers_on_the_completion_not_at_its_deadline(api: ApiHarness) -> None:
    user = await api.key("user")
    job = await create(api, user, {"type": "sleep", "data": {"seconds": 0.5}})
    async with running_worker(api.conveyor, poll_interval=None):
        response = await api.client.post(f"/api/v1/jobs/{job['id']}/wait", json={"timeout": 10_000}, headers=user)
        answered = time.time()  # the clock completed_at was taken from (same machine)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "completed" and data["result"] == {"slept": 0.5}
    stored = await api.conveyor.engine.get(_uuid(job["id"]))
    assert stored.completed_at is not None
    lag = answered - stored.completed_at.timestamp()
    # Woken by the completion, not by a poll or the 10 s deadline: on a loaded 2-core CI machine
    # the wake-up itself has taken 0.2 s, so the bound is loose; bench.engine measures speed.
    assert lag < 2, f"wait answered {lag * 1000:.0f} ms after the completion was recorded"


def _uuid(text: str) -> Any:
    from uuid import UUID

    return UUID(text)


async def test_wait_times_out_with_current_status(api: ApiHarness) -> None:
    user = await api.key("user")
    job = await create(api, user)
    started = time.monotonic()
    response = await api.client.post(f"/api/v1/jobs/{job['id']}/wait", json={"timeout": 200}, headers=user)
    assert 0.19 < time.monotonic() - started < 2
    assert response.status_code == 408
    details = response.json()["details"]
    assert details["code"] == "JOB_TIMEOUT" and details["currentStatus"] == "pending"
    assert details["currentProgress"] == 0
    too_long = await api.client.post(f"/api/v1/jobs/{job['id']}/wait", json={"timeout": 300_001}, headers=user)
    assert too_long.status_code == 400


# --- stats ------------------------------------------------------------------------------------


async def test_stats_summary_counts_by_status_type_and_priority(api: ApiHarness) -> None:
    user = await api.key("user")
    for _ in range(3):
        await create(api, user, {"type": "t.echo", "data": {}, "priority": "low"})
    failing = await create(api, user, {"type": "t.fail", "data": {"permanent": True}, "priority": "critical"})
    cancelled = await create(api, user, {"type": "t.echo", "data": {}})
    await api.client.delete(f"/api/v1/jobs/{cancelled['id']}", headers=user)
    async with running_worker(api.conveyor):
        await eventually(lambda: _status_is(api, user, failing["id"], "failed"))
        await eventually(lambda: _counts_settled(api, user))
    data = (await api.client.get("/api/v1/jobs/stats/summary", headers=user)).json()["data"]
    assert data["total"] == 5 and data["completed"] == 3 and data["failed"] == 1 and data["cancelled"] == 1
    assert data["pending"] == 0 and data["running"] == 0
    assert data["byType"]["t.echo"] == {"total": 4, "completed": 3, "failed": 0, "cancelled": 1}
    assert data["byPriority"] == {"critical": 1, "high": 0, "medium": 1, "low": 3}
    perf = data["performance"]
    assert perf["successRate"] == 75.0 and perf["peakConcurrency"] >= 1
    assert perf["throughput"].endswith("jobs/minute")


async def _counts_settled(api: ApiHarness, headers: dict[str, str]) -> bool:
    data = (await api.client.get("/api/v1/jobs/stats/summary", headers=headers)).json()["data"]
    return bool(data["pending"] == 0 and data["running"] == 0)


# --- monitoring family (seed 000) -----------------------------------------------------------------


async def test_monitoring_jobs_paginate_20_by_default(api: ApiHarness) -> None:
    operator = await api.key("operator")
    await api.conveyor.engine.enqueue_many([_request(i) for i in range(25)])
    page = (await api.client.get("/api/v1/jobs/jobs", headers=operator)).json()
    assert len(page["jobs"]) == 20
    assert page["pagination"] == {"page": 1, "page_size": 20, "total": 25, "total_pages": 2, "has_next": True}
    second = (await api.client.get("/api/v1/jobs/jobs?page=2", headers=operator)).json()
    assert len(second["jobs"]) == 5
    job_id = page["jobs"][0]["job_id"]
    detail = (await api.client.get(f"/api/v1/jobs/jobs/{job_id}", headers=operator)).json()
    assert detail["job"]["job_id"] == job_id
    too_many = await api.client.get("/api/v1/jobs/jobs?page_size=101", headers=operator)
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "JOB002"
    assert too_many.json()["error"]["field"] == "page_size"


def _request(i: int) -> Any:
    from conveyor.engine import JobRequest

    return JobRequest("t.echo", {"value": i})


async def test_monitoring_errors_carry_codes_and_request_id(api: ApiHarness) -> None:
    operator = await api.key("operator")
    missing = await api.client.get("/api/v1/jobs/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6", headers=operator)
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "JOB001" and error["request_id"] == missing.headers["X-Request-ID"]
    job = await create(api, operator)
    await api.client.post(f"/api/v1/jobs/jobs/{job['id']}/cancel", headers=operator)
    conflict = await api.client.post(f"/api/v1/jobs/jobs/{job['id']}/cancel", headers=operator)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "JOB004"
    retried = await api.client.post(f"/api/v1/jobs/jobs/{job['id']}/retry", headers=operator)
    assert retried.status_code == 201 and retried.json()["job"]["retry_of"] == job["id"]
    unauthenticated = await api.client.get("/api/v1/jobs/queues")
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "JOB003"


async def test_queues_show_depth_age_and_pause_stops_claims(api: ApiHarness) -> None:
    operator = await api.key("operator")
    await create(api, operator, {"type": "t.echo", "data": {}})
    await create(api, operator, {"type": "t.report", "data": {"name": "x", "count": 1}})  # queue "reports"
    queues = {q["name"]: q for q in (await api.client.get("/api/v1/jobs/queues", headers=operator)).json()["queues"]}
    assert queues["default"]["pending"] == 1 and queues["reports"]["pending"] == 1
    assert queues["default"]["oldest_pending_age_seconds"] >= 0 and queues["default"]["paused"] is False

    paused = await api.client.post("/api/v1/jobs/queues/default/pause", headers=operator)
    assert paused.status_code == 200 and paused.json()["queue"]["paused"] is True
    async with running_worker(api.conveyor, queues=["default", "reports"]) as worker:
        await eventually(lambda: _pending_in(api, operator, "reports", 0))
        await asyncio.sleep(0.3)
        assert await _pending_in(api, operator, "default", 1)  # paused: not claimed
        listed = {
            q["name"]: q for q in (await api.client.get("/api/v1/jobs/queues", headers=operator)).json()["queues"]
        }
        assert listed["default"]["paused"] is True
        assert listed["default"]["workers"] == 1 and listed["default"]["concurrency"] == worker.concurrency
        resumed = await api.client.post("/api/v1/jobs/queues/default/resume", headers=operator)
        assert resumed.json()["queue"]["paused"] is False
        await eventually(lambda: _pending_in(api, operator, "default", 0))


async def _pending_in(api: ApiHarness, headers: dict[str, str], queue: str, n: int) -> bool:
    queues = (await api.client.get("/api/v1/jobs/queues", headers=headers)).json()["queues"]
    found = next((q for q in queues if q["name"] == queue), None)
    return found is not None and found["pending"] == n and found["running"] == 0


async def test_statistics_of_seed000(api: ApiHarness) -> None:
    viewer = await api.key("viewer")
    user = await api.key("user")
    await create(api, user)
    stats = (await api.client.get("/api/v1/jobs/statistics", headers=viewer)).json()
    assert stats["total"] == 1 and stats["by_status"]["pending"] == 1
    assert stats["by_type"] == {"t.echo": {"pending": 1}}


# --- health, metrics, keys, docs -----------------------------------------------------------------------


async def test_health_needs_no_credentials_and_reports_workers(api: ApiHarness) -> None:
    response = await api.client.get("/api/v1/jobs/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["database"] == "healthy" and body["live_workers"] == 0
    async with running_worker(api.conveyor):
        body = await eventually(lambda: _healthy(api))
    assert body["workers"] == "healthy" and set(body["queue_stats"]) >= {"pending_jobs", "running_jobs"}


async def _healthy(api: ApiHarness) -> Any:
    body = (await api.client.get("/api/v1/jobs/health")).json()
    return body if body["status"] == "healthy" else None


async def test_health_is_503_when_the_database_is_gone(api: ApiHarness) -> None:
    await api.conveyor.store.close()
    # a store pointed at nothing: the next query fails
    from conveyor.store import open_store

    broken = open_store("postgresql://nobody:wrong@127.0.0.1:1/none")
    api.fastapi.state.services.insights.store = broken
    response = await api.client.get("/api/v1/jobs/health")
    assert response.status_code == 503 and response.json()["status"] == "unhealthy"
    await broken.close()


async def test_metrics_expose_jobs_queues_and_request_latency(api: ApiHarness) -> None:
    operator = await api.key("operator")
    await create(api, operator)
    async with running_worker(api.conveyor, on_finished=api.fastapi.state.services.metrics.observe_job):
        await eventually(lambda: _counts_settled(api, operator))
    text = (await api.client.get("/metrics", headers=operator)).text
    assert 'conveyor_jobs{queue="default",status="completed",type="t.echo"} 1.0' in text
    assert 'conveyor_queue_depth{queue="default"} 0.0' in text
    assert 'conveyor_http_request_duration_seconds_count{method="POST",route="/api/v1/jobs"} 1.0' in text
    assert 'conveyor_job_duration_seconds_count{status="completed",type="t.echo"} 1.0' in text
    user = await api.key("user")
    assert (await api.client.get("/metrics", headers=user)).status_code == 403


async def test_api_keys_created_listed_and_revoked(api: ApiHarness) -> None:
    admin = await api.key("admin", org="org-a")
    created = await api.client.post("/api/v1/api-keys", json={"name": "exports", "role": "user"}, headers=admin)
    assert created.status_code == 201
    new = created.json()["data"]
    assert new["key"].startswith("cvk_") and new["orgId"] == "org-a"
    as_new = {"X-API-Key": new["key"]}
    assert (await api.client.get("/api/v1/jobs", headers=as_new)).status_code == 200
    listed = (await api.client.get("/api/v1/api-keys", headers=admin)).json()["data"]["keys"]
    assert new["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    escalate = await api.client.post("/api/v1/api-keys", json={"name": "x", "role": "super_admin"}, headers=admin)
    assert escalate.status_code == 403
    revoked = await api.client.delete(f"/api/v1/api-keys/{new['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["data"]["active"] is False
    assert (await api.client.get("/api/v1/jobs", headers=as_new)).status_code == 401


async def test_openapi_describes_every_route(api: ApiHarness) -> None:
    from conveyor.api.app import route_table

    spec = (await api.client.get("/openapi.json")).json()
    for route in route_table():
        assert route.method.lower() in spec["paths"][route.path], f"{route.method} {route.path} undocumented"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "example" in json.dumps(operation), f"{method.upper()} {path} has no example"
    create_body = spec["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert create_body  # the create request's model, with its examples
    assert "examples" in spec["components"]["schemas"]["CreateJobRequest"]


@pytest.mark.parametrize("role", ["viewer", "user"])
async def test_read_only_and_user_roles_cannot_pause_queues(api: ApiHarness, role: str) -> None:
    headers = await api.key(role)
    response = await api.client.post("/api/v1/jobs/queues/default/pause", headers=headers)
    assert response.status_code == 403 and response.json()["error"]["code"] == "JOB003"


def test_readme_lists_every_endpoint() -> None:
    from pathlib import Path

    from conveyor.api.app import route_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [f"{r.method} {r.path}" for r in route_table() if f"{r.method} {r.path}" not in readme]
    assert not missing, f"README's endpoint table lacks {missing}"


async def test_rs256_tokens_verified_with_the_configured_public_key(tmp_path: Any, sqlite_template: Any) -> None:
    import base64
    import hashlib
    import hmac
    import json
    import shutil

    import httpx
    import jwt as pyjwt
    from conftest import make_settings
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jobtypes_for_tests import jobtypes

    from conveyor import Conveyor
    from conveyor.api import create_app

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_file = tmp_path / "jwt.pub"
    key_file.write_bytes(pem)
    db = tmp_path / "rs.db"
    shutil.copy(sqlite_template, db)
    settings = make_settings(f"sqlite:///{db}", jwt_public_key=str(key_file))
    app = create_app(Conveyor.from_settings(settings, registries=[jobtypes]), bootstrap_keys=False)
    claims = {"sub": "u-9", "org_id": "org-r", "roles": ["user"], "exp": int(time.time()) + 60}
    good = pyjwt.encode(claims, private, algorithm="RS256")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode(claims, other, algorithm="RS256")
    hs = pyjwt.encode(claims, "guessable-secret-guessable-secret-32b", algorithm="HS256")

    # The classic confusion: HS256 "signed" with the public key's PEM as the HMAC secret (PyJWT
    # will not make one, so it is made by hand), for a verifier that would take the PEM as one.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    confused = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        created = await client.post(
            "/api/v1/jobs", json={"type": "t.echo", "data": {}}, headers={"Authorization": f"Bearer {good}"}
        )
        assert created.status_code == 201 and created.json()["data"]["owner"]["orgId"] == "org-r"
        for token in (forged, hs, confused):  # another key; HS256 when only RS256 is configured
            refused = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code == 401
