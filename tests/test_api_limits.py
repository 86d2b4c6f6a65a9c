"""Job-creation limits over HTTP on both databases: per-principal rate (per minute, per hour,
per role) answered 429 with Retry-After, full queues answered 503, counts shared by two API
apps on one database, and the sliding window's arithmetic stepped through time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import ApiHarness, api_harness

from conveyor.limits import JobLimits
from conveyor.model import JobFilter

ECHO = {"type": "t.echo", "data": {"value": 1}}


@contextlib.asynccontextmanager
async def limited(database_url: str, **limits: Any) -> AsyncIterator[ApiHarness]:
    settings = {"jobs_per_minute": 0, "jobs_per_hour": 0, "max_queue_size": 0, **limits}
    async with api_harness(database_url, **settings) as harness:
        yield harness


async def create(api: ApiHarness, headers: dict[str, str], body: dict[str, Any] = ECHO) -> Any:
    return await api.client.post("/api/v1/jobs", json=body, headers=headers)


async def test_a_principal_past_its_rate_gets_429_with_retry_after(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=3) as api:
        alice, bob = api.jwt("alice"), api.jwt("bob")
        assert [(await create(api, alice)).status_code for _ in range(3)] == [201, 201, 201]
        refused = await create(api, alice)
        assert refused.status_code == 429
        assert refused.json()["details"]["code"] == "RATE_LIMITED" and refused.json()["success"] is False
        assert "3 per minute" in refused.json()["error"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 120
        assert (await create(api, bob)).status_code == 201  # the limit is each principal's own
        _jobs, total = await api.conveyor.store.list_jobs(JobFilter(), limit=10, offset=0)
        assert total == 4  # the refused request made nothing


async def test_a_refused_request_does_not_use_up_the_quota(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=2) as api:
        alice = api.jwt("alice")
        for _ in range(2):
            await create(api, alice)
        for _ in range(5):
            assert (await create(api, alice)).status_code == 429
        # Only the two admitted jobs were counted: a limit of 2 leaves no room, one of 7 has 5.
        limits = JobLimits(api.conveyor.store, api.conveyor.settings.model_copy(update={"jobs_per_minute": 7}))
        key = "jwt:org-a:alice"
        assert await limits.admit(key, "user", 5, []) is None
        assert (await limits.admit(key, "user", 1, [])) is not None


async def test_two_api_apps_on_one_database_share_the_counts(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=4) as one, limited(database_url, jobs_per_minute=4) as two:
        alice = one.jwt("alice")
        answers = [(await create(app, alice)).status_code for app in (one, two, one, two, one, two)]
        assert answers == [201, 201, 201, 201, 429, 429]


async def test_concurrent_requests_never_pass_the_limit(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=10) as one, limited(database_url, jobs_per_minute=10) as two:
        alice = one.jwt("alice")
        answers = await asyncio.gather(*(create(one if i % 2 else two, alice) for i in range(30)))
        assert sorted(a.status_code for a in answers) == [201] * 10 + [429] * 20


async def test_the_hourly_limit_and_per_role_limits(database_url: str) -> None:
    limits = {"jobs_per_minute": 100, "jobs_per_hour": 2, "role_rate_limits": {"operator": (100, 5)}}
    async with limited(database_url, **limits) as api:
        user = api.jwt("u1", roles=("user",))
        operator = api.jwt("o1", roles=("operator",))
        assert [(await create(api, user)).status_code for _ in range(3)] == [201, 201, 429]
        refused = await create(api, user)
        assert "2 per hour" in refused.json()["error"] and int(refused.headers["Retry-After"]) > 60
        assert [(await create(api, operator)).status_code for _ in range(6)] == [201] * 5 + [429]


async def test_a_batch_counts_each_of_its_jobs(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=5) as api:
        alice = api.jwt("alice")
        batch = {"name": "b", "jobs": [ECHO] * 4}
        assert (await api.client.post("/api/v1/batches", json=batch, headers=alice)).status_code == 201
        again = await api.client.post("/api/v1/batches", json=batch, headers=alice)
        assert again.status_code == 429  # 4 + 4 > 5
        too_big = await api.client.post("/api/v1/batches", json={"name": "b", "jobs": [ECHO] * 6}, headers=alice)
        # More than the limit at once: waiting would not help, so no Retry-After.
        assert too_big.status_code == 429 and "Retry-After" not in too_big.headers
        assert "6 jobs at once" in too_big.json()["error"]


async def test_a_full_queue_answers_503_until_it_drains(database_url: str) -> None:
    async with limited(database_url, max_queue_size=2) as api:
        alice = api.jwt("alice")
        made = [(await create(api, alice)).json()["data"]["jobId"] for _ in range(2)]
        full = await create(api, alice)
        assert full.status_code == 503 and full.json()["details"]["code"] == "QUEUE_FULL"
        assert full.headers["Retry-After"] == "5" and "'default'" in full.json()["error"]
        other = await create(api, alice, {**ECHO, "queue": "reports"})
        assert other.status_code == 201  # another queue has room
        await api.client.post(f"/api/v1/jobs/{made[0]}/cancel", headers=alice)
        assert (await create(api, alice)).status_code == 201


async def test_an_upload_is_refused_before_it_is_read(database_url: str) -> None:
    async with limited(database_url, jobs_per_minute=1) as api:
        alice = api.jwt("alice")
        upload = {"file": ("f.csv", b"company_symbol\nX\n", "text/csv")}
        url = "/api/v1/predictions/annual/bulk-upload-async"
        assert (await api.client.post(url, files=upload, headers=alice)).status_code in (200, 201, 202)
        refused = await api.client.post(url, files=upload, headers=alice)
        assert refused.status_code == 429 and set(refused.json()) == {"detail"}
        assert "Retry-After" in refused.headers


async def test_the_sliding_window_lets_jobs_back_in_as_the_last_minute_slides_out(database_url: str) -> None:
    async with limited(database_url) as api:
        store = api.conveyor.store
        # The start of a window, and recent: the scheduler's leader prunes windows two hours old.
        t0 = datetime.now(UTC).replace(second=0, microsecond=0)
        for _ in range(10):
            assert await store.take_rate("p", 1, [(60, 10)], t0) is None
        wait = await store.take_rate("p", 1, [(60, 10)], t0)
        # The next window weighs this one's 10 by (1 - elapsed/60): 9 + 1 fits after 6 s of it.
        assert wait == pytest.approx(66)
        assert await store.take_rate("p", 1, [(60, 10)], t0 + timedelta(seconds=65)) is not None
        assert await store.take_rate("p", 1, [(60, 10)], t0 + timedelta(seconds=66)) is None
        # Half-way through that window half of the previous 10 still counts: 5 + 1 leaves room for 4.
        half = t0 + timedelta(seconds=90)
        assert [await store.take_rate("p", 1, [(60, 10)], half) for _ in range(4)] == [None] * 4
        assert await store.take_rate("p", 1, [(60, 10)], half) is not None
