"""Crash safety: killed workers, draining workers, racing claimers, stale outcomes."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from uuid import UUID

import pytest
from conftest import eventually, make_settings, running_worker, start_worker_process, stop_worker_process
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor, Job, JobRequest, Status
from conveyor.model import Outcome, OutcomeKind, utc_now


async def job_where(app: Conveyor, job_id: object, predicate: object) -> object:
    job = await app.engine.get(job_id)  # type: ignore[arg-type]
    return job if predicate(job) else None  # type: ignore[operator]


async def test_job_of_a_sigkilled_worker_is_rescued_and_completes_once(app: Conveyor, database_url: str) -> None:
    job = await app.engine.enqueue("t.hang_first_attempt")
    process = start_worker_process(database_url, CONVEYOR_LEASE_SECONDS="1")
    try:
        await eventually(lambda: job_where(app, job.id, lambda j: j.status is Status.RUNNING), timeout=20)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    async with running_worker(app, lease=timedelta(seconds=1)):
        done = await app.engine.wait(job.id, timeout=20)
    assert (done.status, done.attempt, done.result) == (Status.COMPLETED, 2, {"completed_on": 2})


async def test_sigterm_drains_finishing_quick_jobs_and_releasing_the_rest(app: Conveyor, database_url: str) -> None:
    quick = await app.engine.enqueue("t.loop_spin", {"seconds": 1})
    slow = await app.engine.enqueue("t.loop_stubborn", {"seconds": 3600})
    process = start_worker_process(database_url, CONVEYOR_SHUTDOWN_GRACE_SECONDS="3")
    try:
        for job in (quick, slow):
            await eventually(lambda job=job: job_where(app, job.id, lambda j: j.status is Status.RUNNING), timeout=20)
    finally:
        stopped = await stop_worker_process(process)
    assert stopped == 0
    finished = await app.engine.get(quick.id)
    released = await app.engine.get(slow.id)
    assert (finished.status, finished.result) == (Status.COMPLETED, "finished")
    assert (released.status, released.attempt, released.worker_id) == (Status.PENDING, 0, None)


@pytest.mark.parametrize("queues", [["default"], ["default", "reports"]])
async def test_concurrent_claimers_never_share_a_job(database_url: str, queues: list[str]) -> None:
    apps = [Conveyor.from_settings(make_settings(database_url), registries=[jobtypes]) for _ in range(4)]
    try:
        await apps[0].engine.enqueue_many(
            [JobRequest("t.echo", {"value": i}, queue=queues[i % len(queues)]) for i in range(2000)]
        )

        async def claim_all(app: Conveyor, worker_id: str) -> list[object]:
            claimed: list[object] = []
            while batch := await app.store.claim_jobs(queues, 37, worker_id, timedelta(seconds=30)):
                claimed.extend(j.id for j in batch)
            return claimed

        results = await asyncio.gather(*[claim_all(a, f"w{n}-{k}") for n, a in enumerate(apps) for k in range(2)])
    finally:
        for a in apps:
            await a.close()
    every = [job_id for claimed in results for job_id in claimed]
    assert len(every) == 2000 and len(set(every)) == 2000
    assert sum(1 for claimed in results if claimed) >= 2  # the race really had several winners


async def test_outcome_of_a_worker_whose_lease_was_rescued_is_not_recorded(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo")
    [first] = await app.store.claim_jobs(["default"], 1, "worker-a", timedelta(milliseconds=50))
    await asyncio.sleep(0.2)
    assert await app.store.rescue_expired() == [job.id]
    rescued = await app.engine.get(job.id)
    assert (rescued.status, rescued.attempt, rescued.error["type"]) == (Status.PENDING, 1, "WorkerLost")
    [second] = await app.store.claim_jobs(["default"], 1, "worker-b", timedelta(seconds=30))
    assert second.attempt == 2
    stale = Outcome(job.id, first.attempt, "worker-a", OutcomeKind.COMPLETED, result="stale")
    assert await app.store.flush([stale]) == []
    fresh = Outcome(job.id, second.attempt, "worker-b", OutcomeKind.COMPLETED, result="fresh")
    assert await app.store.flush([fresh]) == [job.id]
    assert await app.store.flush([fresh]) == []  # and never twice
    done = await app.engine.get(job.id)
    assert (done.status, done.result, done.attempt) == (Status.COMPLETED, "fresh", 2)


async def test_rescue_fails_jobs_out_of_attempts_and_cancels_those_asked_to(app: Conveyor) -> None:
    spent = await app.engine.enqueue("t.echo", max_retries=0)
    asked = await app.engine.enqueue("t.echo")
    await app.store.claim_jobs(["default"], 2, "worker-a", timedelta(milliseconds=50))
    await app.engine.cancel(asked.id)
    await asyncio.sleep(0.2)
    assert set(await app.store.rescue_expired()) == {spent.id, asked.id}
    assert (await app.engine.get(spent.id)).status is Status.FAILED
    assert (await app.engine.get(asked.id)).status is Status.CANCELLED


async def test_a_worker_whose_writes_lag_stops_claiming(app: Conveyor, monkeypatch: object) -> None:
    jobs = await app.engine.enqueue_many([JobRequest("t.echo", {"value": i}) for i in range(120)])
    flush = app.store.flush

    async def slow_flush(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(0.2)  # a database under load: outcomes take a while to be written
        return await flush(*args, **kwargs)

    monkeypatch.setattr(app.store, "flush", slow_flush)  # type: ignore[attr-defined]
    held: list[int] = []
    async with running_worker(app, concurrency=5):
        while (await app.engine.counts()).get("completed", 0) < len(jobs):
            held.append((await app.engine.counts()).get("running", 0))
            await asyncio.sleep(0.05)
    assert max(held) <= 2 * 5  # run but unwritten jobs hold their slots (one batch of slack)


async def test_heartbeats_keep_a_long_job_from_being_rescued(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.loop_spin", {"seconds": 3})  # three leases long
    async with running_worker(app, lease=timedelta(seconds=1)):
        done = await app.engine.wait(job.id, timeout=10)
    assert (done.status, done.attempt) == (Status.COMPLETED, 1)


async def test_lease_expiry_is_judged_on_the_stores_clock(app: Conveyor) -> None:
    await app.engine.enqueue("t.echo")
    [claimed] = await app.store.claim_jobs(["default"], 1, "worker-a", timedelta(minutes=5))
    assert claimed.lease_expires_at > utc_now() + timedelta(minutes=4)
    assert await app.store.rescue_expired() == []


@pytest.mark.parametrize("max_retries", [0, 3])
async def test_a_job_claimed_for_a_worker_that_never_heard_of_it_is_handed_back_uncounted(
    app: Conveyor, max_retries: int
) -> None:
    """A claim can commit and its answer be lost (the connection cut in between): the job is
    recorded as running on a worker that does not know it. Its heartbeats must not keep that
    job alive; the worker hands it back (released, its attempt not counted: it never ran), and
    it runs. A job without retries was failed by the lease rescue before ever running."""
    busy = await app.engine.enqueue("t.loop_spin", {"seconds": 4})  # keeps the worker beating
    async with running_worker(app, concurrency=1, lease=timedelta(seconds=1)) as worker:
        await eventually(lambda: _status_is(app, busy.id, Status.RUNNING))
        orphan = await app.engine.enqueue("t.echo", {"value": 1}, max_retries=max_retries)  # no free slot
        # The claim whose answer never reached the worker: made in its name behind its back.
        [claimed] = await app.store.claim_jobs(["default"], 1, worker.worker_id, timedelta(seconds=1))
        assert claimed.id == orphan.id
        released = await eventually(lambda: _status_is(app, orphan.id, Status.PENDING), timeout=2.5)
        assert (released.attempt, released.error) == (0, None)
        assert (await app.engine.get(busy.id)).status is Status.RUNNING  # beating all along
        done = await app.engine.wait(orphan.id, timeout=10)
        assert (done.status, done.attempt) == (Status.COMPLETED, 1)


async def _status_is(app: Conveyor, job_id: UUID, status: Status) -> Job | None:
    job = await app.engine.get(job_id)
    return job if job.status is status else None
