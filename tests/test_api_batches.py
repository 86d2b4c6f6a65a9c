"""Batches over HTTP (`/api/v1/batches`), on both databases: the canonical envelope, errors
naming the field at fault, status, cancel. Who may do what, and that another organisation's
batch is 404, is in test_api_authz.py (generated from the route table)."""

from __future__ import annotations

from typing import Any

from conftest import ApiHarness, eventually, running_worker

ECHO = {"type": "t.echo", "data": {"value": 1}}


def batch_body(n: int = 3, **extra: Any) -> dict[str, Any]:
    return {"name": "nightly", "jobs": [{"type": "t.echo", "data": {"value": i}} for i in range(n)], **extra}


async def test_create_answers_201_with_the_batch_and_its_jobs(api: ApiHarness) -> None:
    headers = await api.key("user", org="org-a")
    created = await api.client.post("/api/v1/batches", json=batch_body(3, parallelLimit=2), headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["success"] is True and "timestamp" in body
    data = body["data"]
    assert data["batchId"] == data["id"] and len(data["jobIds"]) == 3
    assert (data["name"], data["status"], data["parallelLimit"], data["failFast"], data["total"]) == (
        "nightly", "pending", 2, False, 3,
    )  # fmt: skip
    assert data["counts"]["pending"] == 2 and data["counts"]["scheduled"] == 1 and data["counts"]["waitingForSlot"] == 1
    assert [j["id"] for j in data["jobs"]] == data["jobIds"]
    assert [j["waitingForSlot"] for j in data["jobs"]] == [False, False, True]

    shown = (await api.client.get(f"/api/v1/batches/{data['id']}", headers=headers)).json()["data"]
    assert shown["jobs"] == data["jobs"] and shown["counts"] == data["counts"]
    listed = (await api.client.get("/api/v1/jobs", params={"batch_id": data["id"]}, headers=headers)).json()
    assert sorted(j["id"] for j in listed["data"]["jobs"]) == sorted(data["jobIds"])
    job = (await api.client.get(f"/api/v1/jobs/{data['jobIds'][0]}", headers=headers)).json()["data"]
    assert job["batchId"] == data["id"]


async def test_a_batch_runs_to_its_overall_status(api: ApiHarness) -> None:
    headers = await api.key("user", org="org-a")
    body = {
        "name": "fragile",
        "jobs": [{"type": "t.fail", "data": {"permanent": True}, "priority": "critical"}]
        + [{"type": "t.loop_spin", "data": {"seconds": 30}} for _ in range(3)],
        "parallelLimit": 2,
        "failFast": True,
    }
    batch_id = (await api.client.post("/api/v1/batches", json=body, headers=headers)).json()["data"]["id"]

    async def finished() -> dict[str, Any] | None:
        data = (await api.client.get(f"/api/v1/batches/{batch_id}", headers=headers)).json()["data"]
        return data if data["status"] in ("completed", "failed", "cancelled") else None

    async with running_worker(api.conveyor, concurrency=4):
        data = await eventually(finished, timeout=20)
    assert (data["status"], data["cancelReason"]) == ("failed", "fail_fast")
    assert (data["counts"]["failed"], data["counts"]["cancelled"], data["counts"]["completed"]) == (1, 3, 0)


async def test_the_size_limit_and_bad_jobs_are_400_naming_the_field(api: ApiHarness) -> None:
    headers = await api.key("user", org="org-a")
    too_big = await api.client.post("/api/v1/batches", json=batch_body(51), headers=headers)
    assert too_big.status_code == 400
    error = too_big.json()
    assert error["details"]["code"] == "INVALID_BATCH" and error["details"]["field"] == "jobs"
    assert "at most 50 jobs" in error["error"]

    bad_data = batch_body(2)
    bad_data["jobs"].append({"type": "t.report", "data": {"name": "x", "count": 1000}})
    answer = (await api.client.post("/api/v1/batches", json=bad_data, headers=headers)).json()
    assert answer["details"]["code"] == "INVALID_JOB_DATA" and answer["details"]["field"] == "jobs.2.data.count"

    unknown = (await api.client.post("/api/v1/batches", json={"jobs": [{"type": "nope"}]}, headers=headers)).json()
    assert unknown["details"]["code"] == "INVALID_JOB_TYPE" and unknown["details"]["field"] == "jobs.0.type"

    for body, field in [
        ({"jobs": []}, "jobs"),
        ({"jobs": [ECHO], "parallelLimit": 0}, "parallelLimit"),
        ({"jobs": [{**ECHO, "runAt": "2030-01-01T00:00:00Z"}]}, "jobs.0.runAt"),
        ({"jobs": [{**ECHO, "timeoutMinutes": -1}]}, "jobs.0.timeoutMinutes"),
    ]:
        refused = await api.client.post("/api/v1/batches", json=body, headers=headers)
        assert refused.status_code == 400, refused.text
        assert refused.json()["details"]["field"] == field, refused.text
    assert (await api.client.get("/api/v1/batches", headers=headers)).json()["data"]["total"] == 0
    assert (await api.client.get("/api/v1/jobs", headers=headers)).json()["data"]["total"] == 0


async def test_cancel_then_409_once_every_job_has_finished(api: ApiHarness) -> None:
    headers = await api.key("operator", org="org-a")
    batch_id = (await api.client.post("/api/v1/batches", json=batch_body(3), headers=headers)).json()["data"]["id"]
    cancelled = await api.client.post(f"/api/v1/batches/{batch_id}/cancel", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    data = cancelled.json()["data"]
    assert (data["status"], data["counts"]["cancelled"], data["cancelReason"]) == ("cancelled", 3, "cancelled")
    again = await api.client.post(f"/api/v1/batches/{batch_id}/cancel", headers=headers)
    assert again.status_code == 409
    assert again.json()["details"] == {
        "code": "BATCH_NOT_CANCELLABLE",
        "batchId": batch_id,
        "currentStatus": "cancelled",
    }
    missing = await api.client.get("/api/v1/batches/not-a-uuid", headers=headers)
    assert missing.status_code == 404 and missing.json()["details"]["code"] == "BATCH_NOT_FOUND"


async def test_list_is_newest_first_and_paginated(api: ApiHarness) -> None:
    headers = await api.key("viewer", org="org-a")
    creator = await api.key("user", org="org-a")
    ids = [
        (await api.client.post("/api/v1/batches", json=batch_body(1, name=f"b{i}"), headers=creator)).json()["data"][
            "id"
        ]
        for i in range(3)
    ]
    other_org = await api.key("user", org="org-b")
    await api.client.post("/api/v1/batches", json=batch_body(1), headers=other_org)
    first = (await api.client.get("/api/v1/batches", params={"limit": 2}, headers=headers)).json()["data"]
    assert (first["total"], first["hasNext"], [b["id"] for b in first["batches"]]) == (3, True, ids[::-1][:2])
    assert "jobs" not in first["batches"][0] and first["batches"][0]["counts"]["pending"] == 1
    second = (await api.client.get("/api/v1/batches", params={"limit": 2, "page": 2}, headers=headers)).json()["data"]
    assert [b["id"] for b in second["batches"]] == [ids[0]] and second["hasNext"] is False
