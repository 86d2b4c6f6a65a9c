"""The calibration family (seed 003) over HTTP, on SQLite and PostgreSQL, with a real worker
running calibrations in its process pool: seed 003's own example requests, step progress and
leveled logs (filter and paging), results, the cache (hit, stats, clear), the job list's
filters, cancel, timeout, batches (parallel_limit, fail_fast), and the errors' shape.

The sampler runs a few hundred draws here (the agreement with the package is
tests/test_calibration_model.py's subject); the data are read from CONVEYOR_VACALIBRATION_DATA.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

import pytest
from conftest import ApiHarness, eventually, running_worker

from conveyor.packs.calibration import SETTING

pytestmark = pytest.mark.skipif(
    not os.environ.get(SETTING), reason=f"VA calibration data not configured ({SETTING} unset)"
)
QUICK = {"n_mcmc": 200, "n_burn": 100}  # every test job: one compiled sampler shape per mode
SEED_EXAMPLE = {
    "va_data": {"insilicova": "use_example"},
    "age_group": "neonate",
    "country": "Mozambique",
    "mmat_type": "prior",
    "ensemble": True,
    "priority": 5,
    "timeout_minutes": 30,
    "use_cache": True,
}
LONG = {"n_mcmc": 100_000, "n_burn": 100}  # runs for minutes unless stopped


def admin(api: ApiHarness) -> dict[str, str]:
    return api.jwt(roles=("admin",))


async def create(api: ApiHarness, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    response = await api.client.post("/api/v1/calibrate/async", json=body, headers=admin(api))
    assert response.status_code == expect, response.text
    return dict(response.json())


async def status_of(api: ApiHarness, job_id: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(f"/api/v1/calibrate/{job_id}/status", params=params, headers=admin(api))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def finished(api: ApiHarness, job_id: str, timeout: float = 180) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        s = await status_of(api, job_id)
        return s if s["status"] not in ("pending", "running") else None

    return dict(await eventually(done, timeout=timeout, interval=0.2))


def assert_seed_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert set(body) == {"detail", "status_code", "timestamp"}
    assert body["status_code"] == status
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    return body


async def test_seed_example_runs_with_steps_logs_result_and_cache(api: ApiHarness) -> None:
    async with running_worker(api.conveyor, process_pool_size=1):
        created = await create(api, {**SEED_EXAMPLE, **QUICK})
        assert re.fullmatch(r"job_[0-9a-f]{32}", created["job_id"]) and created["status"] == "created"
        job_id = created["job_id"]
        done = await finished(api, job_id)
        assert done["status"] == "success", done["error_details"]
        progress = done["progress"]
        assert progress["current_step"] == progress["total_steps"] == 4
        assert progress["progress_percentage"] == 100.0 and progress["step_name"] == "Summarising results"
        assert done["metadata"]["job_type"] == "calibration" and done["metadata"]["priority"] == 5
        assert done["metadata"]["age_group"] == "neonate" and done["metadata"]["country"] == "Mozambique"
        assert done["result_summary"]["algorithms"] == ["insilicova"] and done["result_summary"]["ensemble"] is False

        # One algorithm with ensemble: true runs without it, and a warning says so.
        warnings = await status_of(api, job_id, log_level="warning")
        assert any("ensemble needs two or more" in e["message"] for e in warnings["logs"])
        assert all(e["level"] in ("warning", "error", "critical") for e in warnings["logs"])
        every = await status_of(api, job_id, log_level="debug", log_limit=1000)
        assert every["log_count"] == len(every["logs"]) >= 4
        page = await status_of(api, job_id, log_level="debug", log_limit=2, log_offset=1)
        assert [e["message"] for e in page["logs"]] == [e["message"] for e in every["logs"][1:3]]
        assert {"timestamp", "level", "message", "component"} <= set(every["logs"][0])

        got = await api.client.get(f"/api/v1/calibrate/{job_id}/result", headers=admin(api))
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["status"] == "success" and body["cache_info"]["source_job_id"] == job_id
        result = body["result"]
        assert result["status"] == "success" and result["age_group"] == "neonate" and result["completed_at"]
        assert result["uncalibrated"]["insilicova"][1] == pytest.approx(148 / 1190)
        calibrated = result["calibrated"]["insilicova"]
        assert len(calibrated["mean"]) == 6 and sum(calibrated["mean"]) == pytest.approx(1.0)
        assert all(lo <= m <= hi for lo, m, hi in zip(calibrated["lower_ci"], calibrated["mean"],
                                                      calibrated["upper_ci"], strict=True))  # fmt: skip
        assert result["causes_not_calibrated"]["insilicova"] == ["congenital_malformation", "other"]
        assert set(result["diagnostics"]["insilicova"]) == {"max_rhat", "min_ess_bulk_ratio", "divergences",
                                                           "max_treedepth_hits"}  # fmt: skip

        # The same deaths as counts, with use_cache: the first job's result, at once.
        counts = dict(zip(["congenital_malformation", "pneumonia", "sepsis_meningitis_inf", "ipre", "other",
                           "prematurity"], [1, 148, 363, 327, 62, 289], strict=True))  # fmt: skip
        again = await create(api, {**SEED_EXAMPLE, **QUICK, "va_data": {"insilicova": counts}})
        assert again["job_id"] == job_id and again["status"] == "success"
        assert again["cache_info"]["source_job_id"] == job_id and again["cache_info"]["cached_at"]
        fresh = await create(api, {**SEED_EXAMPLE, **QUICK, "use_cache": False})
        assert fresh["job_id"] != job_id
        await api.client.delete(f"/api/v1/calibrate/{fresh['job_id']}", headers=admin(api))

        stats = (await api.client.get("/api/v1/cache/stats", headers=admin(api))).json()
        assert stats["total_cached_results"] == 1 and stats["cache_hit_rate"] > 0

        listed = await api.client.get(
            "/api/v1/jobs",
            params={"job_type": "calibration", "age_group": "neonate", "country": "Mozambique", "page_size": 50},
            headers=admin(api),
        )
        assert listed.status_code == 200, listed.text
        assert listed.json()["total_count"] == 2
        kenya = await api.client.get("/api/v1/jobs", params={"country": "Kenya"}, headers=admin(api))
        assert kenya.json()["total_count"] == 0

        cleared = await api.client.delete("/api/v1/cache/clear", params={"confirm": "true", "age_group": "neonate"},
                                          headers=admin(api))  # fmt: skip
        assert cleared.json()["cleared_results"] == 1
        third = await create(api, {**SEED_EXAMPLE, **QUICK})
        assert third["job_id"] != job_id and third["status"] == "created"
        assert (await finished(api, third["job_id"]))["status"] == "success"


async def test_cancel_and_timeout_stop_a_running_calibration(api: ApiHarness) -> None:
    async with running_worker(api.conveyor, process_pool_size=1):
        job_id = (await create(api, {**SEED_EXAMPLE, **LONG, "use_cache": False}))["job_id"]

        async def sampling() -> bool:
            s = await status_of(api, job_id)
            return s["status"] == "running" and (s["progress"]["step_name"] or "").startswith("Sampling")

        await eventually(sampling, timeout=180, interval=0.2)
        cancelled = await api.client.delete(f"/api/v1/calibrate/{job_id}", headers=admin(api))
        assert cancelled.json() == {"job_id": job_id, "status": "cancelled"}
        again = await api.client.delete(f"/api/v1/calibrate/{job_id}", headers=admin(api))
        assert "cannot be cancelled" in assert_seed_error(again, 400)["detail"]
        no_result = (await api.client.get(f"/api/v1/calibrate/{job_id}/result", headers=admin(api))).json()
        assert no_result["status"] == "cancelled" and no_result["result"] is None

        timed = (await create(api, {**SEED_EXAMPLE, **LONG, "use_cache": False, "timeout_minutes": 0.05}))["job_id"]
        assert (await finished(api, timed, timeout=60))["status"] == "timeout"


async def test_batch_runs_at_most_parallel_limit_at_once(api: ApiHarness) -> None:
    jobs = [{**SEED_EXAMPLE, **QUICK, "seed": n, "priority": 1 + n % 10} for n in range(10)]
    for job in jobs:
        job.pop("use_cache")
    response = await api.client.post(
        "/api/v1/calibrate/batch",
        json={"jobs": jobs, "batch_name": "Multi-country comparison", "parallel_limit": 3, "fail_fast": False},
        headers=admin(api),
    )
    assert response.status_code == 200, response.text
    created = response.json()
    batch_id = created["batch_id"]
    assert re.fullmatch(r"batch_[0-9a-f]{32}", batch_id) and len(created["job_ids"]) == 10
    assert created["batch_metadata"]["parallel_limit"] == 3 and created["batch_metadata"]["total_jobs"] == 10
    peak = 0
    async with running_worker(api.conveyor, process_pool_size=4, concurrency=10):

        async def all_done() -> dict[str, Any] | None:
            nonlocal peak
            s = (await api.client.get(f"/api/v1/calibrate/batch/{batch_id}/status", headers=admin(api))).json()
            peak = max(peak, s["running_jobs"])
            return s if s["batch_status"] not in ("pending", "running") else None

        final = await eventually(all_done, timeout=300, interval=0.1)
    assert final["batch_status"] == "success" and final["completed_jobs"] == 10
    assert [j["job_id"] for j in final["job_statuses"]] == created["job_ids"]
    assert 1 <= peak <= 3
    # Checked on the jobs' own start and end times too: never more than 3 ran at once.
    spans = []
    for job_id in created["job_ids"]:
        meta = (await status_of(api, job_id))["metadata"]
        spans.append((meta["started_at"], meta["completed_at"]))
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 3


async def test_fail_fast_cancels_the_rest_of_a_batch(api: ApiHarness) -> None:
    doomed = {**SEED_EXAMPLE, **LONG, "priority": 10, "timeout_minutes": 0.05}
    rest = [{**SEED_EXAMPLE, **QUICK, "priority": 1, "seed": n} for n in range(3)]
    for job in (doomed, *rest):
        job.pop("use_cache")
    body = {"jobs": [doomed, *rest], "parallel_limit": 1, "fail_fast": True}
    created = (await api.client.post("/api/v1/calibrate/batch", json=body, headers=admin(api))).json()
    async with running_worker(api.conveyor, process_pool_size=1):

        async def settled() -> dict[str, Any] | None:
            url = f"/api/v1/calibrate/batch/{created['batch_id']}/status"
            s = (await api.client.get(url, headers=admin(api))).json()
            return s if s["batch_status"] not in ("pending", "running") else None

        final = await eventually(settled, timeout=180, interval=0.2)
    assert final["batch_status"] == "failed" and final["failed_jobs"] == 1 and final["cancelled_jobs"] == 3
    assert final["job_statuses"][0]["status"] == "timeout"


async def test_bad_requests_are_refused_in_seed_003s_error_shape(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_data = {**SEED_EXAMPLE, "va_data": {"insilicova": [{"ID": "a", "cause": "Heartbreak"}, {"ID": "b"}]}}
    body = assert_seed_error(await api.client.post("/api/v1/calibrate/async", json=bad_data, headers=admin(api)), 400)
    assert "'Heartbreak'" in body["detail"] and "death 1 (ID b): cause is missing" in body["detail"]
    unknown = {**SEED_EXAMPLE, "va_data": {"openva": "use_example"}}
    body = assert_seed_error(await api.client.post("/api/v1/calibrate/async", json=unknown, headers=admin(api)), 400)
    assert "'openva'" in body["detail"]
    too_long = {**SEED_EXAMPLE, "timeout_minutes": 121}
    body = assert_seed_error(await api.client.post("/api/v1/calibrate/async", json=too_long, headers=admin(api)), 400)
    assert "MAX_TIMEOUT_MINUTES" in body["detail"]
    assert_seed_error(await api.client.post("/api/v1/calibrate/async", json={**SEED_EXAMPLE, "priority": 11},
                                            headers=admin(api)), 400)  # fmt: skip
    missing = await api.client.get(f"/api/v1/calibrate/job_{'0' * 32}/status", headers=admin(api))
    assert assert_seed_error(missing, 404)["detail"] == f"Job job_{'0' * 32} not found"
    assert_seed_error(await api.client.get("/api/v1/calibrate/batch/batch_nope/status", headers=admin(api)), 404)
    oversized = {"jobs": [{k: v for k, v in SEED_EXAMPLE.items() if k != "use_cache"}] * 51}
    body = assert_seed_error(await api.client.post("/api/v1/calibrate/batch", json=oversized, headers=admin(api)), 400)
    assert "BATCH_MAX_SIZE" in body["detail"]

    monkeypatch.setenv(SETTING, "/nonexistent/vacalibration-data")
    refused = await api.client.post("/api/v1/calibrate/async", json=SEED_EXAMPLE, headers=admin(api))
    assert SETTING in assert_seed_error(refused, 503)["detail"]
    assert (await api.client.get("/api/v1/jobs", params={"job_type": "calibration"}, headers=admin(api))).json()[
        "total_count"
    ] == 0


async def test_another_organisations_calibration_answers_404(api: ApiHarness) -> None:
    job_id = (await create(api, {**SEED_EXAMPLE, **QUICK}))["job_id"]
    stranger = api.jwt(sub="eve", roles=("admin",), org="org-b")
    for method, path in [("GET", f"/{job_id}/status"), ("GET", f"/{job_id}/result"), ("DELETE", f"/{job_id}")]:
        response = await api.client.request(method, f"/api/v1/calibrate{path}", headers=stranger)
        assert_seed_error(response, 404)
