"""Batches on both databases: one transaction, the parallel limit across workers, fail_fast,
status, cancel, visibility and the size limit.

Concurrency is recorded by the job bodies themselves (jobtypes_for_tests.TRACKED): each
t.tracked job counts how many of its group run at that moment, so "never more than the limit"
is what the bodies saw, not what the store says.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import sqlalchemy as sa
from conftest import eventually, make_settings, running_worker
from jobtypes_for_tests import jobtypes, tracked

from conveyor import Conveyor, Settings
from conveyor.engine import JobRequest
from conveyor.engine.batches import BatchView
from conveyor.errors import (
    BatchNotCancellable,
    BatchNotFound,
    InvalidBatch,
    InvalidJobData,
    JobNotFound,
    UnknownJobType,
)
from conveyor.model import FINISHED, HELD_UNTIL, JobFilter, Owner, Status, Visibility
from conveyor.store.audit import AuditFilter
from conveyor.store.schema import jobs

ALICE = Owner(user_id="alice", org_id="org-a", created_by="Alice")
ORG_A = Visibility(org_id="org-a")
ORG_B = Visibility(org_id="org-b")


def group() -> str:
    return f"g-{secrets.token_hex(4)}"


def work(
    name: str, n: int, *, seconds: float = 0.1, fail_at: tuple[int, ...] = (), **options: object
) -> list[JobRequest]:
    return [
        JobRequest("t.tracked", {"group": name, "seconds": seconds, "fail": i in fail_at, "value": i}, **options)  # type: ignore[arg-type]
        for i in range(n)
    ]


async def finished(app: Conveyor, batch_id: object) -> BatchView | None:
    view = await app.batches.get(batch_id)  # type: ignore[arg-type]
    return view if all(m.status in FINISHED for m in view.jobs) else None


@contextlib.asynccontextmanager
async def apps_on(database_url: str, n: int) -> AsyncIterator[list[Conveyor]]:
    """`n` Conveyors on one database, as `n` processes would have (engines, pools, connections)."""
    apps = [Conveyor.from_settings(make_settings(database_url), registries=[jobtypes]) for _ in range(n)]
    for app in apps:
        await app.start()
    try:
        yield apps
    finally:
        for app in apps:
            await app.close()


# --- submit -------------------------------------------------------------------------------------


async def test_a_batch_is_stored_with_its_jobs_and_those_beyond_the_limit_wait(app: Conveyor) -> None:
    name = group()
    requests = [*work(name, 4), JobRequest("t.tracked", {"group": name}, priority="critical")]
    view = await app.batches.submit("five", requests, parallel_limit=2, owner=ALICE)

    assert (view.batch.name, view.batch.parallel_limit, view.batch.fail_fast, view.total) == ("five", 2, False, 5)
    assert view.status == "pending"
    assert view.counts["pending"] == 2 and view.counts["scheduled"] == 3 and view.counts["waiting_for_slot"] == 3
    # the critical job is among the two that may run; the rest wait in submission order
    stored = [await app.engine.get(m.id) for m in view.jobs]
    pending = {j.id for j in stored if j.status is Status.PENDING}
    assert stored[4].id in pending and stored[0].id in pending
    assert all(j.batch_id == view.batch.id and j.owner == ALICE for j in stored)
    assert all(j.is_held and j.run_at == HELD_UNTIL for j in stored if j.id not in pending)
    # a listing by batch finds them, and the batch is seen by its organisation only
    in_batch, total = await app.engine.list(JobFilter(batch_id=view.batch.id))
    assert total == 5 and {j.id for j in in_batch} == {j.id for j in stored}
    assert (await app.batches.get(view.batch.id, visible_to=ORG_A)).batch.id == view.batch.id


async def test_without_a_limit_every_job_is_pending_at_once(app: Conveyor) -> None:
    view = await app.batches.submit("open", work(group(), 3))
    assert view.counts["pending"] == 3 and view.counts["waiting_for_slot"] == 0


async def test_the_size_limit_is_named_in_the_error(app: Conveyor) -> None:
    assert app.batches.max_size == 50
    with pytest.raises(InvalidBatch) as refused:
        await app.batches.submit("too big", work(group(), 51))
    assert "at most 50 jobs" in refused.value.message and "BATCH_MAX_SIZE" in refused.value.message
    assert refused.value.details["field"] == "jobs"
    await app.batches.submit("just right", work(group(), 50))
    with pytest.raises(InvalidBatch, match="at least one job"):
        await app.batches.submit("empty", [])
    assert (await app.engine.counts()) == {"pending": 50}


def test_batch_max_size_is_read_from_the_seeds_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_MAX_SIZE", "7")
    assert Settings().batch_max_size == 7
    monkeypatch.setenv("CONVEYOR_BATCH_MAX_SIZE", "9")
    assert Settings().batch_max_size == 9


async def test_an_invalid_job_names_its_index_and_nothing_is_stored(app: Conveyor) -> None:
    requests = [*work(group(), 2), JobRequest("t.report", {"name": "", "count": 500})]
    with pytest.raises(InvalidJobData) as bad:
        await app.batches.submit("bad", requests)
    assert {e["field"] for e in bad.value.errors} == {"jobs.2.data.name", "jobs.2.data.count"}
    with pytest.raises(UnknownJobType) as unknown:
        await app.batches.submit("bad", [JobRequest("t.nope")])
    assert unknown.value.details["field"] == "jobs.0.type"
    with pytest.raises(InvalidBatch) as keyed:
        await app.batches.submit("bad", work(group(), 1, idempotency_key="k"))
    assert keyed.value.details["field"] == "jobs.0.idempotency_key"
    for limit in (0, -1, True, 1.5):
        with pytest.raises(InvalidBatch) as bad_limit:
            await app.batches.submit("bad", work(group(), 1), parallel_limit=limit)  # type: ignore[arg-type]
        assert bad_limit.value.details["field"] == "parallel_limit"
    assert await app.engine.counts() == {}
    assert await app.batches.list() == ([], 0)


# --- the parallel limit ----------------------------------------------------------------------------


async def test_parallel_limit_is_never_exceeded_across_two_workers(database_url: str) -> None:
    name, other = group(), group()
    async with apps_on(database_url, 2) as (first, second):
        view = await first.batches.submit("limited", work(name, 12, seconds=0.15), parallel_limit=3)
        free = await first.engine.enqueue_many(work(other, 6, seconds=0.15))  # jobs of no batch are not held back
        async with running_worker(first, concurrency=5), running_worker(second, concurrency=5):
            done = await eventually(lambda: finished(first, view.batch.id), timeout=30)
            await eventually(lambda: _all_finished(first, [j.id for j in free]), timeout=30)
    seen = tracked(name)
    assert done.status == "completed" and done.counts["completed"] == 12
    assert len(seen["starts"]) == 12
    assert seen["most"] == 3  # the limit was reached, and never passed
    assert tracked(other)["most"] > 3  # meanwhile the other jobs ran as wide as the workers allowed


async def _all_finished(app: Conveyor, job_ids: list[object]) -> bool:
    return all([(await app.engine.get(i)).status in FINISHED for i in job_ids])  # type: ignore[arg-type]


async def test_a_limit_of_one_runs_the_batch_in_priority_then_submission_order(app: Conveyor) -> None:
    name = group()
    requests = [*work(name, 3, seconds=0), JobRequest("t.tracked", {"group": name, "seconds": 0}, priority="high")]
    view = await app.batches.submit("serial", requests, parallel_limit=1)
    async with running_worker(app, concurrency=4):
        await eventually(lambda: finished(app, view.batch.id))
    ids = [str(m.id) for m in view.jobs]
    assert tracked(name)["starts"] == [ids[3], ids[0], ids[1], ids[2]]
    assert tracked(name)["most"] == 1


async def test_a_retry_by_hand_joins_its_batch_and_waits_for_a_slot(app: Conveyor) -> None:
    name = group()
    view = await app.batches.submit("with a failure", work(name, 3, seconds=0, fail_at=(0,)), parallel_limit=1)
    async with running_worker(app, concurrency=3):
        done = await eventually(lambda: finished(app, view.batch.id))
        assert done.status == "failed" and done.counts["failed"] == 1 and done.counts["completed"] == 2
        again = await app.engine.retry(view.jobs[0].id)
        assert again.batch_id == view.batch.id and again.retry_of == view.jobs[0].id
        await eventually(lambda: _all_finished(app, [again.id]))
    after = await app.batches.get(view.batch.id)
    assert after.total == 4 and after.counts["failed"] == 2  # it fails again, as its data says


async def test_maintenance_releases_a_batch_left_unsettled(app: Conveyor) -> None:
    """A process that died between finishing a member and settling its batch: the members
    waiting for a slot are released by any worker's maintenance."""
    view = await app.batches.submit("stranded", work(group(), 3), parallel_limit=1)
    running = next(m for m in view.jobs if m.status is Status.PENDING)
    async with app.store._write() as conn:  # finish it behind the store's back: no settle
        await conn.execute(
            jobs.update().where(jobs.c.id == running.id).values(status="completed", completed_at=sa.func.now())
        )
    assert (await app.batches.get(view.batch.id)).counts["waiting_for_slot"] == 2
    assert await app.store.settle_waiting_batches() == 1
    after = await app.batches.get(view.batch.id)
    assert after.counts["pending"] == 1 and after.counts["waiting_for_slot"] == 1
    assert await app.store.settle_waiting_batches() == 0  # no room: nothing to do


# --- fail_fast and cancel ----------------------------------------------------------------------------


async def test_fail_fast_cancels_what_has_not_finished(app: Conveyor) -> None:
    name = group()
    # the failing job has the highest priority, so it runs first, beside one long job
    requests = [
        JobRequest("t.tracked", {"group": name, "seconds": 0.05, "fail": True}, priority="critical"),
        *work(name, 5, seconds=30),
    ]
    view = await app.batches.submit("fragile", requests, parallel_limit=2, fail_fast=True)
    async with running_worker(app, concurrency=4):
        done = await eventually(lambda: finished(app, view.batch.id), timeout=20)
    assert done.status == "failed"
    assert (done.batch.cancel_reason, done.counts["failed"], done.counts["cancelled"]) == ("fail_fast", 1, 5)
    assert done.batch.cancelled_at is not None
    # the long job that was running was asked to stop and did; the others never started
    assert len(tracked(name)["starts"]) == 2
    assert done.counts["completed"] == 0


async def test_without_fail_fast_a_failure_leaves_the_rest_running(app: Conveyor) -> None:
    name = group()
    view = await app.batches.submit("sturdy", work(name, 4, seconds=0.05, fail_at=(1,)), parallel_limit=2)
    async with running_worker(app, concurrency=4):
        done = await eventually(lambda: finished(app, view.batch.id))
    assert done.status == "failed"
    assert (done.counts["completed"], done.counts["failed"], done.batch.cancelled_at) == (3, 1, None)
    assert [m.status for m in done.jobs] == [Status.COMPLETED, Status.FAILED, Status.COMPLETED, Status.COMPLETED]


async def test_cancel_stops_waiting_jobs_at_once_and_running_ones_at_a_checkpoint(app: Conveyor) -> None:
    name = group()
    view = await app.batches.submit("to cancel", work(name, 4, seconds=30), parallel_limit=1)
    async with running_worker(app, concurrency=2):
        await eventually(lambda: _one_running(app, view.batch.id))
        cancelled = await app.batches.cancel(view.batch.id)
        assert cancelled.batch.cancel_reason == "cancelled"
        # the three waiting ones at once; the running one as soon as it reaches its checkpoint
        assert cancelled.counts["cancelled"] >= 3 and cancelled.counts["cancelled"] + cancelled.counts["running"] == 4
        assert cancelled.status == ("running" if cancelled.counts["running"] else "cancelled")
        done = await eventually(lambda: finished(app, view.batch.id))
    assert done.status == "cancelled" and done.counts["cancelled"] == 4
    assert len(tracked(name)["starts"]) == 1
    with pytest.raises(BatchNotCancellable) as refused:
        await app.batches.cancel(view.batch.id)
    assert refused.value.current_status == "cancelled"
    await app.engine.audit.seal()
    records, _total = await app.engine.audit.list(AuditFilter(object_type="batch"), limit=10)
    assert sorted(r.action for r in records if r.object_id == str(view.batch.id)) == [
        "batch.cancelled",
        "batch.created",
    ]


async def _one_running(app: Conveyor, batch_id: object) -> bool:
    return (await app.batches.get(batch_id)).counts["running"] == 1  # type: ignore[arg-type]


async def test_cancelling_one_waiting_job_frees_no_slot_twice(app: Conveyor) -> None:
    view = await app.batches.submit("one by one", work(group(), 3), parallel_limit=1)
    pending = next(m for m in view.jobs if m.status is Status.PENDING)
    await app.engine.cancel(pending.id)  # a slot frees: the next member is released
    after = await app.batches.get(view.batch.id)
    assert (after.counts["cancelled"], after.counts["pending"], after.counts["waiting_for_slot"]) == (1, 1, 1)
    held = next(m for m in after.jobs if m.held)
    await app.engine.cancel(held.id)  # a waiting one held no slot: nothing more is released
    after = await app.batches.get(view.batch.id)
    assert (after.counts["cancelled"], after.counts["pending"], after.counts["waiting_for_slot"]) == (2, 1, 0)


async def test_deleting_a_member_that_holds_a_slot_releases_the_next(app: Conveyor) -> None:
    view = await app.batches.submit("one by one", work(group(), 2), parallel_limit=1)
    pending = next(m for m in view.jobs if m.status is Status.PENDING)
    await app.engine.delete(pending.id)
    after = await app.batches.get(view.batch.id)
    assert (after.total, after.counts["pending"], after.counts["waiting_for_slot"]) == (1, 1, 0)


# --- visibility -----------------------------------------------------------------------------------------


async def test_another_organisations_batch_does_not_exist(app: Conveyor) -> None:
    view = await app.batches.submit("alice's", work(group(), 2), owner=ALICE)
    for scope in (ORG_B, Visibility(org_id="org-a", user_id="bob"), Visibility(org_id=None)):
        with pytest.raises(BatchNotFound):
            await app.batches.get(view.batch.id, visible_to=scope)
        with pytest.raises(BatchNotFound):
            await app.batches.cancel(view.batch.id, visible_to=scope)
        assert await app.batches.list(visible_to=scope) == ([], 0)
        with pytest.raises(JobNotFound):
            await app.engine.get(view.jobs[0].id, visible_to=scope)
    listed, total = await app.batches.list(visible_to=Visibility(org_id="org-a", user_id="alice"))
    assert total == 1 and listed[0].batch.id == view.batch.id and listed[0].total == 2
    with pytest.raises(BatchNotFound):
        await app.batches.get(uuid4())
