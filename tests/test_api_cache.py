"""The result cache over HTTP, on both databases: `useCache` on `POST /api/v1/jobs`, and seed
003's `GET /api/v1/cache/stats` and `DELETE /api/v1/cache/clear` in its shapes."""

from __future__ import annotations

import secrets
from typing import Any

from conftest import ApiHarness, eventually, running_worker
from jobtypes_for_tests import tracked


def cached(name: str, value: int = 1, **extra: Any) -> dict[str, Any]:
    return {"type": "t.cached_sum", "data": {"group": name, "seconds": 0, "value": value}, "useCache": True, **extra}


async def finished(api: ApiHarness, headers: dict[str, str], job_id: str) -> bool:
    data = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()["data"]
    return data["status"] == "completed"


async def test_use_cache_answers_with_the_source_job_and_where_it_came_from(api: ApiHarness) -> None:
    headers = await api.key("user", org="org-a")
    name = f"api-{secrets.token_hex(4)}"
    first = await api.client.post("/api/v1/jobs", json=cached(name), headers=headers)
    assert first.status_code == 201, first.text
    job_id = first.json()["data"]["jobId"]
    assert first.json()["data"]["cacheInfo"] is None  # a miss: this job runs

    attached = await api.client.post("/api/v1/jobs", json=cached(name), headers=headers)
    assert attached.status_code == 200
    assert attached.json()["data"]["cacheInfo"] == {"source": "attached", "sourceJobId": job_id, "cachedAt": None}

    async with running_worker(api.conveyor):
        await eventually(lambda: finished(api, headers, job_id))
    hit = await api.client.post("/api/v1/jobs", json=cached(name), headers=headers)
    data = hit.json()["data"]
    assert hit.status_code == 200 and data["jobId"] == job_id and data["status"] == "completed"
    assert data["result"] == {"group": name, "value": 1}
    assert data["cacheInfo"]["source"] == "hit" and data["cacheInfo"]["cachedAt"] == data["completedAt"]
    assert tracked(name)["runs"] == 1

    plain = (await api.client.post("/api/v1/jobs", json={**cached(name), "useCache": False}, headers=headers)).json()
    assert plain["data"]["jobId"] != job_id and "cacheInfo" not in plain["data"]
    other_org = await api.key("user", org="org-b")
    theirs = (await api.client.post("/api/v1/jobs", json=cached(name), headers=other_org)).json()["data"]
    assert theirs["jobId"] != job_id and theirs["cacheInfo"] is None


async def test_stats_and_clear_in_seed_003s_shapes(api: ApiHarness) -> None:
    operator = await api.key("operator", org="org-a")
    viewer = await api.key("viewer", org="org-a")
    name = f"api-{secrets.token_hex(4)}"
    empty = (await api.client.get("/api/v1/cache/stats", headers=viewer)).json()
    assert empty == {
        "total_cached_results": 0,
        "cache_hit_rate": 0.0,
        "total_cache_size_mb": 0.0,
        "oldest_cached_result": None,
        "newest_cached_result": None,
    }
    ids = []
    for value, country in ((1, "Kenya"), (2, "Mozambique")):
        body = cached(name, value, labels={"country": country, "age_group": "neonate"})
        ids.append((await api.client.post("/api/v1/jobs", json=body, headers=operator)).json()["data"]["jobId"])
    async with running_worker(api.conveyor):
        for job_id in ids:
            await eventually(lambda job_id=job_id: finished(api, operator, job_id))
    await api.client.post("/api/v1/jobs", json=cached(name, 1), headers=operator)  # a hit

    stats = (await api.client.get("/api/v1/cache/stats", headers=viewer)).json()
    assert set(stats) == set(empty)
    assert (stats["total_cached_results"], stats["cache_hit_rate"]) == (2, 33.3)
    assert stats["oldest_cached_result"] <= stats["newest_cached_result"]
    assert isinstance(stats["total_cache_size_mb"], float)
    metrics = (await api.client.get("/api/v1/jobs/metrics", headers=viewer)).json()
    assert metrics["cache_hit_rate"] == 33.3

    refused = await api.client.delete("/api/v1/cache/clear", headers=operator)
    assert refused.status_code == 400
    assert set(refused.json()) == {"detail", "status_code", "timestamp"} and "confirm=true" in refused.json()["detail"]
    forbidden = await api.client.delete("/api/v1/cache/clear", params={"confirm": "true"}, headers=viewer)
    assert forbidden.status_code == 403 and set(forbidden.json()) == {"detail", "status_code", "timestamp"}

    other_org = await api.key("operator", org="org-b")
    nothing = await api.client.delete("/api/v1/cache/clear", params={"confirm": "true"}, headers=other_org)
    assert nothing.json() == {"cleared_results": 0, "message": "Cleared 0 cached results"}
    kenya = await api.client.delete(
        "/api/v1/cache/clear", params={"confirm": "true", "country": "Kenya", "age_group": "neonate"}, headers=operator
    )
    assert kenya.status_code == 200 and kenya.json() == {"cleared_results": 1, "message": "Cleared 1 cached result"}
    assert (await api.client.get("/api/v1/cache/stats", headers=viewer)).json()["total_cached_results"] == 1
    rest = await api.client.delete("/api/v1/cache/clear", params={"confirm": "true"}, headers=operator)
    assert rest.json()["cleared_results"] == 1
    again = (await api.client.post("/api/v1/jobs", json=cached(name, 1), headers=operator)).json()["data"]
    assert again["cacheInfo"] is None and again["jobId"] not in ids  # cleared: it runs again
