"""conveyor.client against the real API app on both databases, with both clients.

The asyncio client talks to the app over `httpx.ASGITransport`; the blocking client runs in a
thread and reaches the same app through `LoopBridge`, a transport that hands each request to
the test's event loop. `connect` gives either behind one awaitable interface, so every test
here runs four times: {async, sync} x {sqlite, postgres}. One test drives a real
`conveyor serve` process over TCP.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from conftest import ApiHarness, own_database_url, refusing_connections, running_worker
from pydantic import BaseModel
from served import conveyor_serve

from conveyor.client import (
    ApiKeys,
    AsyncApiKeys,
    AsyncAudit,
    AsyncBatches,
    AsyncClient,
    AsyncSchedules,
    AsyncUsers,
    Audit,
    Batches,
    Client,
    Conflict,
    ConveyorError,
    Forbidden,
    Health,
    InvalidRequest,
    Job,
    NotFound,
    Schedules,
    ServerError,
    Status,
    TransportError,
    Unauthorized,
    Users,
    WaitTimeout,
    calls,
)
from conveyor.client.errors import error_from_response

BASE_URL = "http://conveyor.test"


# --- plumbing: one interface over both clients ------------------------------------------------


class LoopBridge(httpx.BaseTransport):
    """A blocking transport that sends each request through an async one on `loop` (where
    the ASGI app lives) and waits for the answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def round_trip() -> httpx.Response:
            response: httpx.Response = await self.inner.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

        return asyncio.run_coroutine_threadsafe(round_trip(), self.loop).result(timeout=60)


class InThread:
    """A blocking `Client` (or its `schedules`) seen through awaitables: each call runs in a
    thread, so the event loop keeps serving the app it calls."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name in ("schedules", "batches", "audit", "api_keys"):
            return InThread(value)
        if name == "iter_jobs":
            return functools.partial(self._iter_jobs, value)
        return functools.partial(asyncio.to_thread, value)

    @staticmethod
    async def _iter_jobs(method: Callable[..., Iterator[Job]], **filters: Any) -> AsyncIterator[Job]:
        for job in await asyncio.to_thread(lambda: list(method(**filters))):
            yield job


class Flaky(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Fails the first `failures` requests with `error`: before they reach the app
    (`reached=False`, a refused connection) or after it answered (`reached=True`, an answer
    lost on the way back). Counts what it was asked to send."""

    def __init__(self, failures: int = 1, *, reached: bool = False) -> None:
        self.inner: Any = None
        self.failures = failures
        self.reached = reached
        self.error: type[httpx.TransportError] = httpx.ReadError if reached else httpx.ConnectError
        self.sent: list[str] = []

    def around(self, inner: Any) -> Flaky:
        """Wraps the transport a client would have used (`connect(wrap=flaky.around)`)."""
        self.inner = inner
        return self

    def _fail(self, request: httpx.Request) -> bool:
        self.sent.append(f"{request.method} {request.url.path}")
        return len(self.sent) <= self.failures

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fail = self._fail(request)
        if fail and not self.reached:
            raise self.error("connection refused", request=request)
        response: httpx.Response = self.inner.handle_request(request)
        if fail:
            raise self.error("connection reset", request=request)
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        fail = self._fail(request)
        if fail and not self.reached:
            raise self.error("connection refused", request=request)
        response: httpx.Response = await self.inner.handle_async_request(request)
        if fail:
            await response.aread()
            raise self.error("connection reset", request=request)
        return response


Connect = Callable[..., Any]

# For behaviour of the client alone (retries, paging on demand), one database is enough.
CLIENT_SIDE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture(params=["async", "sync"])
async def connect(request: pytest.FixtureRequest, api: ApiHarness) -> AsyncIterator[Connect]:
    """`connect(api_key=…, token=…, wrap=…, **options)`: a client of the parametrised kind
    on the test's app; `wrap` wraps its transport (as `Flaky` does)."""
    kind: str = request.param
    opened: list[Any] = []
    loop = asyncio.get_running_loop()

    def make(api_key: str | None = None, *, wrap: Callable[[Any], Any] = lambda t: t, **options: Any) -> Any:
        asgi = httpx.ASGITransport(app=api.fastapi)
        if kind == "async":
            client: Any = AsyncClient(BASE_URL, api_key=api_key, transport=wrap(asgi), **options)
            opened.append(client)
            return client
        blocking = Client(BASE_URL, api_key=api_key, transport=wrap(LoopBridge(asgi, loop)), **options)
        opened.append(blocking)
        return InThread(blocking)

    yield make
    for client in opened:
        if isinstance(client, AsyncClient):
            await client.aclose()
        else:
            client.close()


async def key(api: ApiHarness, role: str, org: str | None = None) -> str:
    return str((await api.key(role, org))["Authorization"]).removeprefix("Bearer ")


async def status_is(client: Any, job_id: UUID, status: str) -> bool:
    return bool((await client.get(job_id)).status == status)


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
    return value


# --- jobs ---------------------------------------------------------------------------------------------


class Report(BaseModel):
    name: str
    count: int


async def test_submit_get_and_list(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator", org="org-a"))
    job = await client.submit("t.echo", {"value": [1, 2]}, priority="high", labels={"country": "Kenya"})
    assert isinstance(job, Job) and isinstance(job.id, UUID)
    assert (job.type, job.status, job.priority, job.priority_level) == ("t.echo", Status.PENDING, "high", 8)
    assert job.labels == {"country": "Kenya"} and job.owner is not None and job.owner.org_id == "org-a"
    assert job.created_at is not None and job.created_at.tzinfo is not None and not job.finished

    # a pydantic model as data; run_at in the future makes it scheduled
    later = await client.submit("t.report", Report(name="r", count=2), run_at=datetime.now(UTC) + timedelta(hours=1))
    assert later.status == Status.SCHEDULED and later.queue == "reports"

    got = await client.get(job.id)
    assert got.id == job.id and got.progress == 0 and got.result is None
    assert (await client.get(str(job.id))).id == job.id  # ids as text too

    page = await client.list()
    assert page.total == 2 and [j.id for j in page.items] == [later.id, job.id] and not page.has_next
    assert (await client.list(type="t.echo")).total == 1
    assert (await client.list(status=["scheduled", "running"])).items[0].id == later.id
    assert (await client.list(labels={"country": "Kenya"}, priority="high")).total == 1
    assert (await client.list(labels={"country": "Chad"})).total == 0
    assert (await client.list(created_after=job.created_at)).items[0].id == later.id
    assert (await client.list(page=2, page_size=1)).items[0].id == job.id


async def test_submit_with_an_idempotency_key_gives_back_the_first_job(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    first = await client.submit("t.echo", {}, idempotency_key="order-42")
    again = await client.submit("t.echo", {"value": "other"}, idempotency_key="order-42")
    assert again.id == first.id and (await client.list()).total == 1


async def test_iter_jobs_walks_every_page(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    submitted = [(await client.submit("t.echo", {"value": i})).id for i in range(7)]
    await client.submit("t.report", {"name": "x", "count": 1})  # filtered out
    seen = [job.id async for job in client.iter_jobs(page_size=3, type="t.echo")]
    assert seen == submitted[::-1]  # newest first, each once
    assert [job async for job in client.iter_jobs(type="nothing")] == []


async def test_list_sorts_and_pages_by_cursor_and_iter_jobs_skips_nothing(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    submitted = [await client.submit("t.echo", {"value": i}, priority=i % 10 + 1) for i in range(7)]
    by_priority = await client.list(sort="-priority", page_size=3)
    assert [j.priority_level for j in by_priority.items] == [7, 6, 5] and by_priority.next_cursor
    after = await client.list(sort="-priority", page_size=3, cursor=by_priority.next_cursor)
    assert [j.priority_level for j in after.items] == [4, 3, 2]
    oldest = [job.id async for job in client.iter_jobs(page_size=2, sort="oldest")]
    assert oldest == [j.id for j in submitted]
    walked = []
    async for job in client.iter_jobs(page_size=2):  # newest first: one created meanwhile is not met
        walked.append(job.id)
        if len(walked) == 1:
            await client.submit("t.echo", {"value": "late"})
    assert walked == [j.id for j in reversed(submitted)]


async def test_get_with_its_input_data(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    job = await client.submit("t.report", {"name": "q3", "count": 2})
    assert (await client.get(job.id)).data is None
    assert (await client.get(job.id, include_data=True)).data == {"name": "q3", "count": 2, "tags": []}


@CLIENT_SIDE
async def test_iter_jobs_fetches_pages_only_as_needed(api: ApiHarness) -> None:
    counted = Flaky(failures=0).around(httpx.ASGITransport(app=api.fastapi))
    async with AsyncClient(BASE_URL, api_key=await key(api, "user"), transport=counted) as client:
        for i in range(5):
            await client.submit("t.echo", {"value": i})
        counted.sent.clear()
        jobs = client.iter_jobs(page_size=2)
        first = await anext(jobs)
        assert counted.sent == ["GET /api/v1/jobs"]
        rest = [job async for job in jobs]
        assert len(rest) == 4 and first.id not in {j.id for j in rest}
        assert len(counted.sent) == 3


class WithoutCursors(httpx.AsyncBaseTransport):
    """A server from before cursors: its job lists carry no nextCursor."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path != "/api/v1/jobs" or request.method != "GET":
            return response
        body = json.loads(await response.aread())
        body["data"].pop("nextCursor", None)
        return httpx.Response(response.status_code, json=body)


@CLIENT_SIDE
async def test_iter_jobs_pages_by_number_where_the_server_sends_no_cursor(api: ApiHarness) -> None:
    transport = WithoutCursors(httpx.ASGITransport(app=api.fastapi))
    async with AsyncClient(BASE_URL, api_key=await key(api, "user"), transport=transport) as client:
        submitted = [(await client.submit("t.echo", {"value": i})).id for i in range(5)]
        assert [job.id async for job in client.iter_jobs(page_size=2)] == submitted[::-1]


async def test_cancel_then_conflict_when_finished(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    job = await client.submit("t.echo", {})
    cancelled = await client.cancel(job.id)
    assert cancelled.status == Status.CANCELLED and cancelled.finished and not cancelled.succeeded
    with pytest.raises(Conflict) as refused:
        await client.cancel(job.id)
    error = refused.value
    assert (error.status_code, error.code, error.current_status) == (409, "JOB_NOT_CANCELLABLE", "cancelled")
    assert error.request_id and error.request_id.startswith("req_")


async def test_cancel_and_delete_are_told_apart_in_the_audit_trail(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "admin", org="org-a"))
    cancelled, deleted = await client.submit("t.echo", {}), await client.submit("t.echo", {})
    assert (await client.cancel(cancelled.id)).status == Status.CANCELLED
    assert (await client.delete(deleted.id)).status == Status.CANCELLED
    with pytest.raises(Conflict) as again:
        await client.delete(deleted.id)
    assert (again.value.code, again.value.current_status) == ("JOB_NOT_CANCELLABLE", "cancelled")
    with pytest.raises(NotFound):
        await client.delete(uuid4())
    actions = {
        r.object_id: r.action for r in (await client.audit.list(object_type="job")).items if r.action != "job.created"
    }
    assert actions == {str(cancelled.id): "job.cancelled", str(deleted.id): "job.deleted"}


async def test_wait_returns_the_finished_job_or_raises_wait_timeout(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    job = await client.submit("t.items", {"items": [1, 2, 3], "bad": [2]})
    async with running_worker(api.conveyor):
        done = await client.wait(job.id, timeout=10)
    assert done.status == Status.COMPLETED and done.succeeded and done.result == {"ok": 2, "bad": 1}
    assert done.progress == 100 and done.completed_at is not None
    assert done.processing_stats is not None and done.processing_stats.failed_items == 1
    assert done.item_errors and done.item_errors[0]["code"] == "BAD_ITEM"

    waiting = await client.submit("t.echo", {})  # no worker now: it stays pending
    with pytest.raises(WaitTimeout) as timed_out:
        await client.wait(waiting.id, timeout=0.2)
    error = timed_out.value
    assert isinstance(error, TimeoutError) and error.status_code == 408 and error.code == "JOB_TIMEOUT"
    assert (error.current_status, error.current_progress, error.job_id) == ("pending", 0, str(waiting.id))


async def test_retry_a_failed_job_and_read_its_logs(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    failing = await client.submit("t.fail", {"permanent": True, "message": "bad input"})
    with pytest.raises(Conflict) as early:
        await client.retry(failing.id)
    assert early.value.code == "JOB_NOT_RETRYABLE" and early.value.current_status == "pending"
    items = await client.submit("t.items", {"items": [1, 2], "bad": [2]})
    async with running_worker(api.conveyor):
        failed = await client.wait(failing.id, timeout=10)
        await client.wait(items.id, timeout=10)
    assert failed.status == Status.FAILED and not isinstance(failed.error, str) and failed.error is not None
    assert (failed.error.message, failed.error.code, failed.error.retryable) == ("bad input", "BAD_INPUT", False)

    again = await client.retry(failed.id)
    assert again.id != failed.id and again.retry_of == failed.id and again.status == Status.PENDING

    logs = await client.logs(items.id)
    assert logs.total == len(logs.entries) >= 3 and logs.offset == 0 and logs.limit == 100
    assert {e.level for e in logs.entries} >= {"debug", "info", "warning"}
    assert all(e.timestamp.tzinfo is not None for e in logs.entries)
    warnings = await client.logs(items.id, level="warning")
    assert [e.message for e in warnings.entries] == ["some items failed"] and warnings.entries[0].component == "summary"
    second = await client.logs(items.id, limit=1, offset=1)
    assert second.entries == logs.entries[1:2] and second.total == logs.total
    with pytest.raises(InvalidRequest) as bad_level:
        await client.logs(items.id, level="loud")
    assert bad_level.value.fields[0]["field"] == "level"


async def test_stats_queues_and_pausing_a_queue(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator"))
    for _ in range(2):
        await client.submit("t.echo", {}, priority="low")
    await client.cancel((await client.submit("t.report", {"name": "x", "count": 1})).id)
    stats = await client.stats()
    assert (stats.total, stats.pending, stats.cancelled, stats.running) == (3, 2, 1, 0)
    assert stats.by_type["t.echo"]["total"] == 2 and stats.by_priority["low"] == 2
    assert stats.performance.throughput is not None and stats.performance.throughput.endswith("jobs/minute")

    queues = {q.name: q for q in await client.queues()}
    assert queues["default"].pending == 2 and not queues["default"].paused
    assert queues["default"].oldest_pending_age_seconds is not None

    paused = await client.pause_queue("default")
    assert (paused.name, paused.paused) == ("default", True) and paused.changed_at is not None
    assert {q.name: q for q in await client.queues()}["default"].paused
    assert (await client.resume_queue("default")).paused is False


async def test_health_needs_no_credentials(connect: Connect) -> None:
    health = await connect().health()
    assert isinstance(health, Health) and health.status == "degraded" and not health.ok
    assert health.database == "healthy" and health.live_workers == 0 and "pending_jobs" in health.queue_stats


@CLIENT_SIDE
async def test_health_reports_an_unreachable_database_instead_of_raising(api: ApiHarness, connect: Connect) -> None:
    from conveyor.store import open_store

    broken = open_store("postgresql://nobody:wrong@127.0.0.1:1/none")
    services = api.fastapi.state.services
    working, services.insights.store = services.insights.store, broken
    try:
        health = await connect().health()
    finally:
        services.insights.store = working
        await broken.close()
    assert health.status == "unhealthy" and health.database and health.database.startswith("unhealthy")


# --- schedules ---------------------------------------------------------------------------------------


async def test_schedules_create_list_get_update_pause_resume_delete(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator", org="org-a"))
    nightly = await client.schedules.create(
        "nightly report", "t.report", {"name": "n", "count": 5}, cron="0 2 * * *", timezone="Europe/Berlin"
    )
    assert (nightly.job_type, nightly.cron, nightly.timezone, nightly.enabled) == (
        "t.report", "0 2 * * *", "Europe/Berlin", True,
    )  # fmt: skip
    assert nightly.next_run_at is not None and nightly.next_run_at.hour in (0, 1)  # 02:00 in Berlin, in UTC
    pulse = await client.schedules.create("pulse", "t.echo", interval=timedelta(seconds=30), priority="high")
    assert (pulse.interval_seconds, pulse.cron, pulse.priority) == (30.0, None, "high")

    page = await client.schedules.list(page_size=1)
    assert (page.total, page.page_size, len(page.items), page.has_next) == (2, 1, 1, True)
    assert (await client.schedules.get(nightly.id)).name == "nightly report"

    changed = await client.schedules.update(nightly.id, interval_seconds=90, name="every 90 s")
    assert (changed.name, changed.cron, changed.interval_seconds) == ("every 90 s", None, 90.0)
    paused = await client.schedules.pause(nightly.id)
    assert not paused.enabled and paused.next_run_at is None
    ran = await client.schedules.run(nightly.id)  # paused or not: one job now
    assert (ran.type, ran.status, ran.priority) == ("t.report", "pending", "medium")
    await client.cancel(ran.id)
    purged = await client.purge(ran.id)
    assert (purged.id, purged.status) == (ran.id, "cancelled")
    with pytest.raises(NotFound):
        await client.get(ran.id)
    assert (await client.schedules.resume(nightly.id)).next_run_at is not None
    deleted = await client.schedules.delete(nightly.id)
    assert deleted.id == nightly.id
    with pytest.raises(NotFound) as gone:
        await client.schedules.get(nightly.id)
    assert (gone.value.code, gone.value.family_code, gone.value.status_code) == ("SCHEDULE_NOT_FOUND", "JOB001", 404)


async def test_schedule_errors_name_the_field(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator"))
    with pytest.raises(InvalidRequest) as bad_cron:
        await client.schedules.create("bad", "t.echo", cron="0 25 * * *")
    assert bad_cron.value.family_code == "JOB002" and bad_cron.value.fields[0]["field"] == "cron"
    with pytest.raises(InvalidRequest) as bad_data:
        await client.schedules.create("bad", "t.report", {"name": "", "count": 0}, interval=60)
    assert {f["field"] for f in bad_data.value.fields} == {"data.name", "data.count"}
    viewer = connect(await key(api, "viewer"))
    with pytest.raises(Forbidden) as refused:
        await viewer.schedules.create("x", "t.echo", interval=60)
    assert refused.value.family_code == "JOB003" and refused.value.request_id


# --- batches and the result cache --------------------------------------------------------------------


async def test_batches_create_list_get_cancel(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator", org="org-a"))
    jobs = [{"type": "t.echo", "data": {"value": n}, "labels": {"country": "Kenya"}} for n in range(3)]
    batch = await client.batches.create("nightly", jobs, parallel_limit=1, fail_fast=True)
    assert (batch.name, batch.status, batch.parallel_limit, batch.fail_fast, batch.total) == (
        "nightly", "pending", 1, True, 3,
    )  # fmt: skip
    assert [m.waiting_for_slot for m in batch.jobs] == [False, True, True]
    assert (batch.counts["pending"], batch.counts["waitingForSlot"]) == (1, 2)
    assert (await client.get(batch.jobs[0].id)).batch_id == batch.id
    page = await client.batches.list(page_size=10)
    assert (page.total, [b.id for b in page.items], page.items[0].jobs) == (1, [batch.id], [])
    assert (await client.batches.get(batch.id)).jobs == batch.jobs

    async with running_worker(api.conveyor):
        done = await until(lambda: _finished_batch(client, batch.id))
    assert (done.status, done.counts["completed"], done.finished) == ("completed", 3, True)
    with pytest.raises(Conflict) as refused:
        await client.batches.cancel(batch.id)
    assert (refused.value.code, refused.value.current_status) == ("BATCH_NOT_CANCELLABLE", "completed")

    waiting = await client.batches.create("to cancel", jobs)
    cancelled = await client.batches.cancel(waiting.id)
    assert (cancelled.status, cancelled.cancel_reason, cancelled.counts["cancelled"]) == ("cancelled", "cancelled", 3)
    with pytest.raises(InvalidRequest) as too_big:
        await client.batches.create("too big", [{"type": "t.echo"}] * 51)
    assert too_big.value.code == "INVALID_BATCH" and "at most 50" in too_big.value.message
    with pytest.raises(NotFound):
        await connect(await key(api, "operator", org="org-b")).batches.get(batch.id)


async def _finished_batch(client: Any, batch_id: UUID) -> Any:
    batch = await client.batches.get(batch_id)
    return batch if batch.finished else None


async def test_use_cache_stats_and_clear(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "operator", org="org-a"))
    data = {"group": f"client-{uuid4().hex[:8]}", "seconds": 0, "value": 7}
    first = await client.submit("t.cached_sum", data, use_cache=True)
    attached = await client.submit("t.cached_sum", data, use_cache=True)
    assert first.cache_info is None
    assert attached.cache_info is not None and attached.cache_info.source == "attached"
    assert (attached.id, attached.cache_info.source_job_id) == (first.id, first.id)
    async with running_worker(api.conveyor):
        await until(lambda: status_is(client, first.id, "completed"))
    hit = await client.submit("t.cached_sum", data, use_cache=True)
    assert hit.cache_info is not None and hit.cache_info.source == "hit"
    assert (hit.id, hit.result, hit.cache_info.cached_at) == (
        first.id,
        {"group": data["group"], "value": 7},
        hit.completed_at,
    )
    stats = await client.cache_stats()
    assert (stats.total_cached_results, stats.cache_hit_rate) == (1, 66.7)
    assert stats.oldest_cached_result == stats.newest_cached_result == hit.completed_at
    assert await client.clear_cache(labels={"country": "Kenya"}) == 0
    assert await client.clear_cache() == 1
    assert (await client.cache_stats()).total_cached_results == 0
    with pytest.raises(Forbidden):
        await connect(await key(api, "viewer", org="org-a")).clear_cache()


# --- the audit trail and API keys ------------------------------------------------------------------


async def test_audit_list_export_and_verify(api: ApiHarness, connect: Connect) -> None:
    admin = connect(await key(api, "admin", org="org-a"))
    job = await admin.submit("t.echo", {}, labels={"country": "Kenya"})
    await admin.cancel(job.id)
    page = await admin.audit.list(object_id=str(job.id))
    assert [r.action for r in page.items] == ["job.created", "job.cancelled"] and page.total == 2
    first = page.items[0]
    assert first.org_id == "org-a" and first.recorded_at.tzinfo is not None and first.hash and first.seq > 0
    assert page.items[1].prev_hash is not None and page.items[1].before is not None
    assert (await admin.audit.list(action="job.cancelled", page_size=1)).items[0].object_id == str(job.id)
    assert (await admin.audit.list(since=datetime.now(UTC) + timedelta(hours=1))).total == 0

    from conveyor.engine import JobRequest
    from conveyor.model import Owner

    bulk = await api.conveyor.engine.enqueue_many([JobRequest("t.echo", {}, owner=Owner(org_id="org-a"))] * 2)
    listed = await admin.audit.list(job_id=str(bulk[1].id))  # named in the bulk's record, not its object
    assert [(r.action, r.object_id) for r in listed.items] == [("job.created", None)]

    exported = json.loads(await admin.audit.export(object_id=str(job.id)))
    assert [r["action"] for r in exported] == ["job.created", "job.cancelled"]
    csv_text = await admin.audit.export(format="csv", action="job.cancelled")
    header, row = csv_text.splitlines()[:2]
    assert header.startswith("seq,recordedAt,actorId") and str(job.id) in row
    assert (await admin.audit.list(action="audit.exported")).total == 2  # each export is recorded

    verdict = await admin.audit.verify()
    assert verdict.ok and verdict.records >= 4 and verdict.broken_seq is None and verdict.head_hash
    with pytest.raises(ValueError, match="csv or json"):
        await admin.audit.export(format="xml")
    with pytest.raises(Forbidden):
        await connect(await key(api, "operator", org="org-a")).audit.verify()


async def test_api_keys_create_list_revoke(api: ApiHarness, connect: Connect) -> None:
    admin = connect(await key(api, "admin", org="org-a"))
    new = await admin.api_keys.create("ci", "user")
    assert (new.name, new.role, new.org_id, new.active) == ("ci", "user", "org-a", True)
    assert new.key.startswith(f"cvk_{new.id}_")
    made = connect(new.key)
    assert (await made.submit("t.echo", {})).owner.org_id == "org-a"  # type: ignore[union-attr]
    listed = {k.id: k for k in await admin.api_keys.list()}
    assert new.id in listed and listed[new.id].created_at is not None and not hasattr(listed[new.id], "key")
    revoked = await admin.api_keys.revoke(new.id)
    assert revoked.revoked_at is not None and not revoked.active
    with pytest.raises(NotFound) as missing:
        await admin.api_keys.revoke("0123456789abcdef")
    assert missing.value.code == "API_KEY_NOT_FOUND"
    with pytest.raises(Forbidden) as not_super:
        await admin.api_keys.create("x", "user", org_id="org-b")
    assert not_super.value.fields[0]["field"] == "orgId"
    with pytest.raises(InvalidRequest):
        await admin.api_keys.create("x", "wizard")


# --- errors ---------------------------------------------------------------------------------------------


async def test_errors_map_to_their_classes(api: ApiHarness, connect: Connect) -> None:
    client = connect(await key(api, "user"))
    with pytest.raises(NotFound) as missing:
        await client.get(uuid4())
    assert (missing.value.status_code, missing.value.code) == (404, "JOB_NOT_FOUND")
    with pytest.raises(NotFound):
        await client.cancel("../stats/summary")  # not a UUID, and kept inside the job's path

    with pytest.raises(InvalidRequest) as unknown_type:
        await client.submit("t.nope", {})
    error = unknown_type.value
    assert error.code == "INVALID_JOB_TYPE" and "t.echo" in error.allowed_types
    assert [f["field"] for f in error.fields] == ["type"]
    with pytest.raises(InvalidRequest) as bad_data:
        await client.submit("t.report", {"name": "", "count": 1000})
    assert bad_data.value.code == "INVALID_JOB_DATA"
    assert {f["field"] for f in bad_data.value.fields} == {"name", "count"}
    assert "count" in str(bad_data.value)
    with pytest.raises(InvalidRequest) as bad_filter:
        await client.list(status="sleeping")
    assert bad_filter.value.code == "INVALID_QUERY" and bad_filter.value.fields[0]["field"] == "status"

    with pytest.raises(Unauthorized) as anonymous:
        await connect().list()
    assert anonymous.value.code == "UNAUTHORIZED"
    with pytest.raises(Unauthorized):
        await connect("cvk_0123456789abcdef_not-a-real-secret-not-a-real-secret-000").get(uuid4())
    viewer = connect(await key(api, "viewer"))
    with pytest.raises(Forbidden) as read_only:
        await viewer.submit("t.echo", {})
    assert (read_only.value.status_code, read_only.value.code) == (403, "FORBIDDEN")
    with pytest.raises(Forbidden) as not_operator:
        await client.pause_queue("default")
    assert not_operator.value.family_code == "JOB003"


async def test_a_jwt_authenticates_as_its_subject(api: ApiHarness, connect: Connect) -> None:
    token = ApiHarness.jwt(sub="ana", roles=["user"], org="org-j")["Authorization"].removeprefix("Bearer ")
    client = connect(token=token)
    job = await client.submit("t.echo", {})
    assert job.owner is not None and (job.owner.user_id, job.owner.org_id) == ("ana", "org-j")
    with pytest.raises(ValueError, match="not both"):
        connect("cvk_x", token=token)


def test_errors_read_without_an_envelope() -> None:
    plain = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(plain, ServerError) and plain.code == "HTTP_502" and "bad gateway" in plain.message
    detail = error_from_response(httpx.Response(503, json={"detail": "down", "status_code": 503}))
    assert isinstance(detail, ServerError) and detail.message == "down"
    teapot = error_from_response(httpx.Response(418, json=[1]))
    assert type(teapot) is ConveyorError and teapot.status_code == 418


# --- retries ----------------------------------------------------------------------------------------------


@CLIENT_SIDE
async def test_a_read_is_retried_after_a_connection_failure(api: ApiHarness, connect: Connect) -> None:
    api_key = await key(api, "user")
    job = await connect(api_key).submit("t.echo", {})
    flaky = Flaky(failures=2)
    client = connect(api_key, wrap=flaky.around)
    assert (await client.get(job.id)).id == job.id
    assert flaky.sent == [f"GET /api/v1/jobs/{job.id}"] * 3


@CLIENT_SIDE
async def test_a_create_without_idempotency_key_is_not_retried(api: ApiHarness, connect: Connect) -> None:
    api_key = await key(api, "user")
    flaky = Flaky(failures=1)
    client = connect(api_key, wrap=flaky.around)
    with pytest.raises(TransportError) as failed:
        await client.submit("t.echo", {})
    assert isinstance(failed.value.__cause__, httpx.ConnectError) and failed.value.status_code is None
    assert flaky.sent == ["POST /api/v1/jobs"]
    assert (await connect(api_key).list()).total == 0


@CLIENT_SIDE
async def test_a_create_with_idempotency_key_is_retried_into_one_job(api: ApiHarness, connect: Connect) -> None:
    api_key = await key(api, "user")
    lost = Flaky(failures=1, reached=True)
    client = connect(api_key, wrap=lost.around)
    job = await client.submit("t.echo", {}, idempotency_key="k-1")  # the first answer was lost
    assert lost.sent == ["POST /api/v1/jobs"] * 2
    listed = await connect(api_key).list()
    assert listed.total == 1 and listed.items[0].id == job.id


@CLIENT_SIDE
async def test_a_cancel_whose_answer_was_lost_reports_the_cancelled_job(api: ApiHarness, connect: Connect) -> None:
    api_key = await key(api, "user")
    job = await connect(api_key).submit("t.echo", {})
    lost = Flaky(failures=1, reached=True)
    client = connect(api_key, wrap=lost.around)
    cancelled = await client.cancel(job.id)
    assert cancelled.id == job.id and cancelled.status == Status.CANCELLED
    path = f"/api/v1/jobs/{job.id}"
    assert lost.sent == [f"POST {path}/cancel", f"POST {path}/cancel", f"GET {path}"]


@CLIENT_SIDE
async def test_retries_give_up_with_a_transport_error(api: ApiHarness, connect: Connect) -> None:
    flaky = Flaky(failures=5)
    client = connect(None, retries=1, wrap=flaky.around)
    with pytest.raises(TransportError, match="after 2 attempts"):
        await client.health()
    assert len(flaky.sent) == 2


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_read_waits_out_a_database_that_is_briefly_unavailable(
    api: ApiHarness, connect: Connect, database_url: str
) -> None:
    # The server answers 503 DATABASE_UNAVAILABLE with Retry-After while its database refuses
    # connections; a call that is safe to repeat waits that long and asks again.
    api_key = await key(api, "user")
    client = connect(api_key)
    job = await client.submit("t.echo", {})
    with refusing_connections(database_url):
        listing = asyncio.ensure_future(client.list())
        await asyncio.sleep(0.5)  # its first answer: 503, Retry-After: 2
        assert not listing.done()
    listed = await asyncio.wait_for(listing, timeout=10)
    assert [j.id for j in listed.items] == [job.id]


@CLIENT_SIDE
async def test_a_database_unavailable_answer_is_retried_only_where_repeating_is_safe(
    api: ApiHarness, connect: Connect
) -> None:
    api_key = await key(api, "user")
    unavailable = Unavailable()
    client = connect(api_key, wrap=unavailable.around)
    unavailable.remaining = 1
    with pytest.raises(ServerError) as refused:
        await client.submit("t.echo", {})  # it may have been stored after all: not sent again
    assert refused.value.status_code == 503 and refused.value.code == "DATABASE_UNAVAILABLE"
    assert unavailable.sent == ["POST /api/v1/jobs"]
    unavailable.remaining = 2
    assert (await client.list()).total == 0
    assert unavailable.sent[1:] == ["GET /api/v1/jobs"] * 3
    unavailable.remaining = 10
    with pytest.raises(ServerError):  # retries=2: three such answers, then the error
        await client.list()
    assert unavailable.sent[4:] == ["GET /api/v1/jobs"] * 3


class Unavailable(Flaky):
    """Answers the next `remaining` requests as a server whose database is unavailable does
    (Retry-After: 0, so that the test does not wait); the rest reach the app."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.remaining = 0

    def _refusal(self, request: httpx.Request) -> httpx.Response | None:
        self.sent.append(f"{request.method} {request.url.path}")
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        body = {"success": False, "error": "database unavailable", "details": {"code": "DATABASE_UNAVAILABLE"}}
        headers = {"Retry-After": "0", "X-Error-Code": "DATABASE_UNAVAILABLE"}
        return httpx.Response(503, json=body, headers=headers, request=request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        refusal = self._refusal(request)
        return refusal if refusal is not None else self.inner.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        refusal = self._refusal(request)
        return refusal if refusal is not None else await self.inner.handle_async_request(request)


# --- pure pieces: long waits, models, the package's surface ---------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _timed_out() -> WaitTimeout:
    return WaitTimeout("Job timeout", status_code=408, code="JOB_TIMEOUT", details={"currentStatus": "running"})


def test_a_wait_past_the_servers_limit_is_chained() -> None:
    clock = FakeClock()
    call = calls.wait("j", timeout=700, clock=clock)
    assert call.json == {"timeout": 300_000} and call.idempotent
    assert call.timeout(httpx.Timeout(10)).read == 310
    clock.now += 300
    assert call.recover is not None
    second = call.recover(_timed_out(), False)
    assert second is not None and second.json == {"timeout": 300_000}
    clock.now += 300
    assert second.recover is not None
    third = second.recover(_timed_out(), False)
    assert third is not None and third.json == {"timeout": 100_000}
    assert third.recover is not None and third.recover(_timed_out(), False) is None  # the caller's time is up

    forever = calls.wait("j", timeout=None, clock=clock)
    assert forever.json == {"timeout": 300_000} and forever.recover is not None
    assert forever.recover(_timed_out(), False) is not None
    assert calls.wait("j", timeout=timedelta(milliseconds=1500)).json == {"timeout": 1500}
    with pytest.raises(ValueError, match="zero or more"):
        calls.wait("j", timeout=-1)


def test_job_model_tolerates_what_it_does_not_know() -> None:
    job = Job.model_validate(
        {"id": str(uuid4()), "type": "t", "status": "archived", "progress": 5, "newField": {"x": 1}, "error": "boom"}
    )
    assert job.status == "archived" and not isinstance(job.status, Status) and not job.finished
    assert job.model_extra == {"newField": {"x": 1}} and job.error == "boom"
    known = Job.model_validate({"id": str(uuid4()), "type": "t", "status": "timeout"})
    assert known.status is Status.TIMEOUT and known.finished


def test_submit_refuses_naive_datetimes_before_sending() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calls.submit("t", {}, {"run_at": datetime(2030, 1, 1)})  # noqa: DTZ001


def test_importing_the_client_loads_nothing_else_of_conveyor() -> None:
    code = "import sys, conveyor.client; print('\\n'.join(sorted(m for m in sys.modules if m.startswith('conveyor'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "conveyor.client" in loaded
    assert [m for m in loaded if m != "conveyor" and not m.startswith("conveyor.client")] == []


def test_the_package_still_offers_its_public_names() -> None:
    import conveyor

    assert all(getattr(conveyor, name) is not None for name in conveyor.__all__)
    assert conveyor.Conveyor.__name__ == "Conveyor"
    with pytest.raises(AttributeError):
        _ = conveyor.Nothing


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(cls).items()
        if inspect.isfunction(member) and not name.startswith("_") and name not in ("close", "aclose")
    }


@pytest.mark.parametrize(
    ("blocking", "asynchronous"),
    [(Client, AsyncClient), (Schedules, AsyncSchedules), (Batches, AsyncBatches), (Audit, AsyncAudit),
     (ApiKeys, AsyncApiKeys), (Users, AsyncUsers)],
)  # fmt: skip
def test_both_clients_offer_the_same_methods(blocking: type, asynchronous: type) -> None:
    sync_methods, async_methods = _public_methods(blocking), _public_methods(asynchronous)
    assert sync_methods.keys() == async_methods.keys()
    for name, signature in sync_methods.items():
        assert list(signature.parameters.values()) == list(async_methods[name].parameters.values()), name
        expected = inspect.isasyncgenfunction if name == "iter_jobs" else inspect.iscoroutinefunction
        assert expected(getattr(asynchronous, name)), name


# --- end to end: a real `conveyor serve` ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, str]]:
    """`conveyor serve` (API and a worker) on a database of its own; its URL and an operator key."""
    with (
        own_database_url(request.param, "conveyor_client", tmp_path, sqlite_template) as url,
        conveyor_serve(url, tmp_path) as server,
    ):
        yield server.url, server.key("operator")


def test_seed003_workflow_against_conveyor_serve(served: tuple[str, str]) -> None:
    base_url, api_key = served
    with Client(base_url, api_key=api_key, retries=0) as client:
        assert client.health().live_workers is not None

        # 1. create; 2. monitor with progress; 3. fetch the result
        job = client.submit("sleep", {"seconds": 1.5}, labels={"country": "Mozambique"})
        reports = []
        while True:
            try:
                job = client.wait(job.id, timeout=0.5)
                break
            except WaitTimeout as pending:
                reports.append((pending.current_status, pending.current_progress))
        assert reports and all(status in ("pending", "running") for status, _ in reports)
        assert job.status == Status.COMPLETED and job.result == {"slept": 1.5} and job.progress == 100
        assert client.get(job.id).result == {"slept": 1.5}
        assert [j.id for j in client.iter_jobs(labels={"country": "Mozambique"})] == [job.id]

        async def from_asyncio() -> None:
            async with AsyncClient(base_url, api_key=api_key) as aclient:
                assert (await aclient.get(job.id)).succeeded
                with pytest.raises(NotFound):
                    await aclient.get(uuid4())

        asyncio.run(from_asyncio())
