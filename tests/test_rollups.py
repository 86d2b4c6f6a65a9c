"""PostgreSQL's roll-ups (counts and minutes) agree with counting the jobs table; a recount
repairs counts that drifted, while jobs come and go."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from conftest import eventually, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.engine import JobRequest
from conveyor.model import JobFilter, Owner, Status, Visibility, utc_now
from conveyor.store.portable import SqlStore


@pytest.fixture
async def pg(postgres_url: str) -> Any:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor_jobs, conveyor_job_logs, conveyor_job_counts, conveyor_job_minutes")
    app = Conveyor.from_settings(make_settings(postgres_url), registries=[jobtypes])
    await app.start()
    yield app
    await app.close()


async def direct(app: Conveyor, where: JobFilter, by: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
    return await SqlStore.count_grouped(app.store, where, by)


OWNERS = [Owner("u1", "org-a"), Owner("u2", "org-a", "study-1"), Owner("u3", "org-b"), Owner()]
SCOPES = [None, Visibility("org-a"), Visibility("org-a", study_id="study-1"), Visibility("org-a", user_id="u1"),
          Visibility(None), Visibility("org-b")]  # fmt: skip


async def assert_rollups_agree(app: Conveyor) -> None:
    for scope in SCOPES:
        for by in [("status",), ("kind", "status", "priority"), ("queue", "status")]:
            where = JobFilter(visible_to=scope)
            assert await app.store.count_grouped(where, by) == await direct(app, where, by), (scope, by)
        where = JobFilter(statuses=(Status.COMPLETED, Status.FAILED), visible_to=scope)
        _jobs, total = await app.store.list_jobs(where, limit=1, offset=0)
        assert total == sum((await direct(app, where, ("status",))).values())


async def test_counts_follow_every_transition(pg: Conveyor) -> None:
    engine = pg.engine
    requests = []
    for i in range(120):
        owner = OWNERS[i % len(OWNERS)]
        kind = ["t.echo", "t.fail", "t.report"][i % 3]
        data = {"name": "r", "count": 1} if kind == "t.report" else {"permanent": True} if kind == "t.fail" else {}
        requests.append(JobRequest(kind, data, owner=owner, priority=1 + i % 10))
    jobs = await engine.enqueue_many(requests)
    await engine.enqueue("t.echo", {}, delay=timedelta(hours=1), owner=OWNERS[0])  # scheduled
    await engine.cancel(jobs[0].id)
    await assert_rollups_agree(pg)
    async with running_worker(pg, queues=["default", "reports"]):
        for _ in range(200):
            counts = await pg.store.count_jobs(JobFilter())
            if counts.get("pending", 0) == 0 and counts.get("running", 0) == 0:
                break
            await asyncio.sleep(0.05)
    await assert_rollups_agree(pg)
    await pg.store.compact_rollups()
    await assert_rollups_agree(pg)
    with psycopg.connect(pg.settings.database_url, autocommit=True) as conn:
        folded = conn.execute("SELECT count(*) FROM conveyor_job_counts").fetchone()
        groups = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT owner_org_id, owner_user_id, owner_study_id, kind, queue,"
            " priority, status FROM conveyor_jobs) g"
        ).fetchone()
        assert folded == groups  # one row per group after folding
        conn.execute("DELETE FROM conveyor_jobs WHERE status = 'failed'")
    await assert_rollups_agree(pg)


async def test_performance_from_minutes_matches_the_jobs(pg: Conveyor) -> None:
    await pg.engine.enqueue_many([JobRequest("t.echo", {}, owner=OWNERS[i % 2]) for i in range(20)])
    await pg.engine.enqueue_many([JobRequest("t.fail", {"permanent": True}, owner=OWNERS[0]) for _ in range(5)])
    async with running_worker(pg):
        for _ in range(200):
            if (await pg.store.count_jobs(JobFilter())).keys() <= {"completed", "failed"}:
                break
            await asyncio.sleep(0.05)
    since = utc_now() - timedelta(hours=1)
    for scope in [None, Visibility("org-a"), Visibility("org-a", user_id="u1")]:
        where = JobFilter(visible_to=scope)
        fast = {g.key: g for g in await pg.store.finished_since(where, since, by="status")}
        slow = {g.key: g for g in await SqlStore.finished_since(pg.store, where, since, by="status")}
        assert fast.keys() == slow.keys()
        for key in fast:
            assert (fast[key].completed, fast[key].failed) == (slow[key].completed, slow[key].failed)
            if slow[key].average_seconds is not None:
                assert fast[key].average_seconds == pytest.approx(slow[key].average_seconds, rel=1e-6)
        assert await pg.store.peak_concurrency(where, since) >= 1


async def test_every_way_a_job_finishes_reaches_counts_and_minutes(pg: Conveyor) -> None:
    """A worker's outcomes (completed, failed, timed out, cancelled while running), a cancel
    before running, the rescue of lost leases (failed, cancelled), a batch's cancel: the
    per-minute roll-ups say what the jobs table says, for every status."""
    engine = pg.engine
    await engine.enqueue("t.echo", {}, owner=OWNERS[0])
    await engine.enqueue("t.fail", {"permanent": True}, owner=OWNERS[1])
    await engine.enqueue("t.loop_spin", {"seconds": 30}, owner=OWNERS[2], timeout=timedelta(milliseconds=300))
    stopped = await engine.enqueue("t.loop_spin", {"seconds": 30}, owner=OWNERS[0])
    await engine.cancel((await engine.enqueue("t.echo", {}, owner=OWNERS[3], delay=timedelta(hours=1))).id)
    await engine.cancel((await engine.enqueue("t.echo", {}, queue="elsewhere", owner=OWNERS[1])).id)
    async with running_worker(pg):
        await eventually(lambda: _has_status(pg, stopped.id, Status.RUNNING))
        await engine.cancel(stopped.id)
        await eventually(lambda: _settled(pg), timeout=15)
    # Rescued: one out of attempts, one asked to stop while its worker was gone.
    spent = await engine.enqueue("t.echo", {}, queue="lost", max_retries=0, owner=OWNERS[2])
    asked = await engine.enqueue("t.echo", {}, queue="lost", owner=OWNERS[3])
    await pg.store.claim_jobs(["lost"], 2, "worker-gone", timedelta(milliseconds=50))
    await engine.cancel(asked.id)
    await asyncio.sleep(0.2)
    assert set(await pg.store.rescue_expired()) == {spent.id, asked.id}
    view = await pg.batches.submit("dropped", [JobRequest("t.echo", {}, queue="held", owner=OWNERS[0])] * 3)
    await pg.batches.cancel(view.batch.id)
    await assert_rollups_agree(pg)
    since = utc_now() - timedelta(hours=1)
    for by in ["status", "kind", "queue"]:
        for scope in [None, Visibility("org-a"), Visibility("org-b")]:
            where = JobFilter(visible_to=scope)
            fast = {g.key: g for g in await pg.store.finished_since(where, since, by=by)}
            slow = {g.key: g for g in await SqlStore.finished_since(pg.store, where, since, by=by)}
            assert fast.keys() == slow.keys(), (by, scope)
            for key, group in slow.items():
                assert (fast[key].completed, fast[key].failed, fast[key].cancelled) == (
                    group.completed,
                    group.failed,
                    group.cancelled,
                ), (by, scope, key)
    finished = await pg.store.count_jobs(JobFilter())
    assert finished == {"completed": 1, "failed": 2, "timeout": 1, "cancelled": 7}, finished


async def _has_status(app: Conveyor, job_id: Any, status: Status) -> bool:
    return (await app.engine.get(job_id)).status is status


async def _settled(app: Conveyor) -> bool:
    counts = await app.store.count_jobs(JobFilter())
    return not ({"pending", "running"} & counts.keys())


async def test_folding_while_jobs_arrive_loses_nothing(pg: Conveyor) -> None:
    async def enqueue() -> None:
        for _ in range(20):
            await pg.engine.enqueue_many([JobRequest("t.echo", {}, owner=OWNERS[0]) for _ in range(10)])

    async def fold() -> None:
        for _ in range(20):
            await pg.store.compact_rollups()

    await asyncio.gather(enqueue(), fold(), fold())
    assert await pg.store.count_jobs(JobFilter()) == {"pending": 200}


async def test_a_recount_repairs_counts_that_drifted(pg: Conveyor, postgres_url: str) -> None:
    """Rows stored without their deltas (a process of a version before migration 0017, or SQL by
    hand) leave the counts short until a recount."""
    await pg.engine.enqueue_many([JobRequest("t.echo", {}, owner=OWNERS[1]) for _ in range(3)])
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts, run_at, created_at,"
            " updated_at) SELECT gen_random_uuid(), 't.echo', 'default', 'pending', 5, '{}', 1, now(), now(), now()"
            " FROM generate_series(1, 4)"
        )
    assert await pg.store.count_jobs(JobFilter()) == {"pending": 3}  # the hand-written 4 uncounted
    assert await pg.store.recount_rollups() == 2  # groups: OWNERS[1]'s, and no owner
    assert await pg.store.count_jobs(JobFilter()) == {"pending": 7}
    await assert_rollups_agree(pg)


async def test_a_recount_while_jobs_arrive_run_and_fold_loses_nothing(pg: Conveyor) -> None:
    async def enqueue() -> None:
        for i in range(30):
            await pg.engine.enqueue_many([JobRequest("t.echo", {}, owner=OWNERS[i % 4]) for _ in range(5)])

    async def recount() -> None:
        for _ in range(10):
            await pg.store.recount_rollups()

    async def fold() -> None:
        for _ in range(10):
            await pg.store.compact_rollups()

    async with running_worker(pg):
        await asyncio.gather(enqueue(), recount(), fold())
    await assert_rollups_agree(pg)
    assert sum((await pg.store.count_jobs(JobFilter())).values()) == 150
