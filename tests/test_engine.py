"""Enqueue, validation, idempotency, cancel and retry by hand, reads — on both databases."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from conftest import cut_sessions, eventually, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import (
    Conveyor,
    InvalidJobData,
    InvalidJobOptions,
    JobFilter,
    JobNotCancellable,
    JobNotFound,
    JobNotRetryable,
    JobRequest,
    Owner,
    Priority,
    Status,
    UnknownJobType,
)
from conveyor.model import SORT_KEYS, JobOrder, Outcome, OutcomeKind, utc_now


async def test_enqueue_applies_the_job_types_defaults(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.report", {"name": "q3", "count": 2})
    assert (job.status, job.queue, job.priority_class, job.attempt) == (Status.PENDING, "reports", Priority.MEDIUM, 0)
    assert job.max_attempts == 4  # medium: 3 retries
    stored = await app.engine.get(job.id)
    assert stored.data == {"name": "q3", "count": 2, "tags": []}
    assert stored.created_at == job.created_at


async def test_priority_class_sets_the_retry_budget(app: Conveyor) -> None:
    critical = await app.engine.enqueue("t.echo", priority="critical")
    low = await app.engine.enqueue("t.echo", priority=2)
    custom = await app.engine.enqueue("t.echo", priority="high", max_retries=0)
    assert (critical.max_attempts, low.max_attempts, custom.max_attempts) == (6, 3, 1)
    assert (critical.priority_class, low.priority_class) == (Priority.CRITICAL, Priority.LOW)


async def test_unknown_job_type_is_refused_with_the_allowed_types(app: Conveyor) -> None:
    with pytest.raises(UnknownJobType) as caught:
        await app.engine.enqueue("t.nope", {})
    assert "t.echo" in caught.value.allowed and "noop" in caught.value.allowed
    assert caught.value.code == "INVALID_JOB_TYPE"


async def test_invalid_input_names_every_offending_field(app: Conveyor) -> None:
    with pytest.raises(InvalidJobData) as caught:
        await app.engine.enqueue("t.report", {"name": "", "count": 1000, "tags": [1]})
    fields = {e["field"] for e in caught.value.errors}
    assert fields == {"name", "count", "tags.0"}
    assert (await app.engine.counts()) == {}


async def test_bad_options_are_refused(app: Conveyor) -> None:
    with pytest.raises(InvalidJobOptions, match="priority"):
        await app.engine.enqueue("t.echo", priority="urgent")
    with pytest.raises(InvalidJobOptions):
        await app.engine.enqueue("t.echo", timeout=timedelta(seconds=-1))
    with pytest.raises(InvalidJobOptions):
        await app.engine.enqueue("t.echo", delay=timedelta(seconds=1), run_at=utc_now())


async def test_bulk_enqueue_is_all_or_nothing(app: Conveyor) -> None:
    good = [JobRequest("t.echo", {"value": i}) for i in range(5)]
    with pytest.raises(InvalidJobData):
        await app.engine.enqueue_many([*good, JobRequest("t.report", {"name": "x"})])
    assert await app.engine.counts() == {}
    jobs = await app.engine.enqueue_many(good * 60)  # 300: the bulk path
    assert len({j.id for j in jobs}) == 300
    assert await app.engine.counts() == {"pending": 300}


async def test_a_bad_request_late_in_a_big_bulk_enqueue_stores_nothing(app: Conveyor) -> None:
    # Big bulks are validated and written a batch at a time (bulk_insert): the bad request
    # comes after whole batches have been sent to the database.
    requests = [JobRequest("t.echo", {"value": i}) for i in range(2_500)]
    requests[2_300] = JobRequest("t.report", {"name": ""})
    with pytest.raises(InvalidJobData):
        await app.engine.enqueue_many(requests)
    assert await app.engine.counts() == {}


async def test_a_bulk_of_one_job_type_is_validated_as_one_enqueue_would(app: Conveyor) -> None:
    # One type and options: the data of a batch are validated in one call (Engine._prepare_batch).
    reports = [JobRequest("t.report", {"name": f"r{i}", "count": i % 100 + 1}) for i in range(1_500)]
    reports[1_234] = JobRequest("t.report", {"name": "r", "count": 0})
    with pytest.raises(InvalidJobData) as bulk:
        await app.engine.enqueue_many(reports)
    with pytest.raises(InvalidJobData) as single:
        await app.engine.enqueue("t.report", {"name": "r", "count": 0})
    assert (
        bulk.value.errors
        == single.value.errors
        == [{"field": "count", "message": "Input should be greater than or equal to 1", "type": "greater_than_equal"}]
    )
    reports[1_234] = JobRequest("t.report", {"name": "r", "count": 7, "tags": ["a\x00b"]})
    with pytest.raises(InvalidJobData, match=r"tags\.0"):
        await app.engine.enqueue_many(reports)
    reports[1_234] = JobRequest("t.echo", {"value": float("nan")})  # a second type in the batch
    with pytest.raises(InvalidJobData) as unstorable:
        await app.engine.enqueue_many(reports)
    assert unstorable.value.errors == [{"field": "value", "message": "is not a finite number", "type": "unstorable"}]
    assert await app.engine.counts() == {}

    reports[1_234] = JobRequest("t.report", {"name": "defaults", "count": 3})
    jobs = await app.engine.enqueue_many(reports)
    assert [j.data for j in jobs] == [{"tags": [], **r.data} for r in reports]  # defaults filled in
    assert [(await app.engine.get(j.id)).data for j in jobs[1_230:1_240]] == [j.data for j in jobs[1_230:1_240]]


async def test_a_bulk_of_due_and_scheduled_jobs_stores_each_run_at(app: Conveyor) -> None:
    # Batches (200, then 1,000 each): due, then one with a scheduled job, then due again (on PostgreSQL, a
    # COPY that leaves run_at to its default, one that writes it, and the first kind again).
    later = utc_now() + timedelta(hours=3)
    requests = [JobRequest("t.echo", {"value": i}) for i in range(2_500)]
    requests[1_500] = JobRequest("t.echo", {"value": "later"}, run_at=later)
    jobs = await app.engine.enqueue_many(requests)
    assert await app.engine.counts() == {"pending": 2_499, "scheduled": 1}
    for job in [*jobs[::250], jobs[1_500]]:
        stored = await app.engine.get(job.id)
        assert (stored.created_at, stored.run_at, stored.status) == (job.created_at, job.run_at, job.status)
        if job.id == jobs[1_500].id:
            assert stored.run_at == later and stored.status is Status.SCHEDULED
        else:
            assert stored.run_at <= stored.created_at and stored.status is Status.PENDING  # due at once
    assert len({j.created_at for j in jobs}) == 1  # one bulk call, one creation time


# Text that a row format could mistake for its own separators, escapes or NULL marker.
AWKWARD = ["tab\there", "new\nline\r\n", "back\\slash\\N", "\\N", "NULL", "quote\"s'", "ünï☃", "𝄞 emoji 🚀", ""]


async def test_bulk_enqueue_stores_every_value_as_given(app: Conveyor) -> None:
    batch_id, retry_of = uuid4(), uuid4()
    run_at = utc_now() + timedelta(hours=2)
    requests = [
        JobRequest(
            "t.echo",
            {"value": {"text": text, "list": [text, 1.5, None, True], text or "k": -3}},
            queue=f"q{text}" if i % 2 else None,
            priority=i % 10 + 1,
            timeout=timedelta(seconds=12.5) if i % 3 else None,
            max_retries=i % 4,
            labels={"kind": text, text or "empty": "x"} if i % 2 else None,
            owner=Owner(user_id=f"u{text}", org_id=text, study_id=None, created_by=f"by {text}") if i % 3 else None,
            batch_id=batch_id if i % 2 else None,
            schedule_id=f"s{text}" if i % 5 == 0 else None,
            retry_of=retry_of if i % 7 == 0 else None,
            file_info={"name": f"{text}.csv", "size": i} if i % 4 == 0 else None,
            run_at=run_at if i % 6 == 0 else None,
        )
        for i, text in enumerate(AWKWARD * 30)  # 270: the bulk path
    ]
    returned = await app.engine.enqueue_many(requests)
    for request, job in zip(requests, returned, strict=True):
        stored = await app.engine.get(job.id)
        for got in (job, stored):
            assert got.data == request.data
            assert got.queue == (request.queue or "default")
            assert got.priority == request.priority
            assert got.timeout == request.timeout
            assert got.max_attempts == request.max_retries + 1  # type: ignore[operator]
            assert got.labels == (request.labels or {})
            assert got.owner == (request.owner or Owner())
            assert (got.batch_id, got.schedule_id, got.retry_of) == (
                request.batch_id, request.schedule_id, request.retry_of
            )  # fmt: skip
            assert got.file_info == request.file_info
            assert got.status is (Status.SCHEDULED if request.run_at else Status.PENDING)
            if request.run_at:
                assert got.run_at == request.run_at
        assert stored.created_at == job.created_at and stored.run_at == job.run_at


async def test_a_claimed_job_is_the_job_as_stored(app: Conveyor) -> None:
    """What a worker is handed (built from the claim's returned row) equals the job read back,
    every field, whatever optional values it holds."""
    requests = [
        JobRequest(
            "t.echo",
            {"value": i},
            priority=i % 10 + 1,
            timeout=timedelta(seconds=12.5) if i % 2 else None,
            labels={"n": str(i)} if i % 3 else None,
            owner=Owner(user_id=f"u{i}", org_id="org", study_id="s", created_by="me") if i % 2 else None,
            batch_id=uuid4() if i % 4 == 0 else None,
            schedule_id=f"sched-{i}" if i % 5 == 0 else None,
            retry_of=uuid4() if i % 3 == 0 else None,
            file_info={"name": "f.csv"} if i % 4 == 1 else None,
            idempotency_key=f"key-{i}" if i % 2 == 0 else None,
        )
        for i in range(12)
    ]
    await app.engine.enqueue_many(requests)
    claimed = await app.store.claim_jobs(["default"], 20, "worker-a", timedelta(seconds=30))
    assert len(claimed) == len(requests)
    for job in claimed:
        assert job == await app.engine.get(job.id)


async def test_delayed_job_is_scheduled_then_staged_when_due(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo", delay=timedelta(hours=1))
    assert job.status is Status.SCHEDULED
    assert await app.store.stage_due() == 0
    assert await app.store.stage_due(now=utc_now() + timedelta(hours=2)) == 1
    assert (await app.engine.get(job.id)).status is Status.PENDING


async def test_same_idempotency_key_gives_back_the_same_job(app: Conveyor) -> None:
    first = await app.engine.enqueue("t.echo", {"value": 1}, idempotency_key="order-42")
    again = await app.engine.enqueue("t.echo", {"value": 2}, idempotency_key="order-42")
    assert again.id == first.id
    assert again.data == {"value": 1}
    assert await app.engine.counts() == {"pending": 1}


async def test_concurrent_idempotent_enqueues_create_one_job(database_url: str) -> None:
    # Several independent processes' worth of stores, racing on one key.
    apps = [Conveyor.from_settings(make_settings(database_url), registries=[jobtypes]) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *[a.engine.enqueue("t.echo", {"value": n}, idempotency_key="race") for n in range(5) for a in apps]
        )
        assert len({j.id for j in results}) == 1
        assert await apps[0].engine.counts() == {"pending": 1}
    finally:
        for a in apps:
            await a.close()


async def test_cancel_pending_is_immediate_and_final_jobs_refuse(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo")
    cancelled = await app.engine.cancel(job.id)
    assert cancelled.status is Status.CANCELLED and cancelled.completed_at is not None
    with pytest.raises(JobNotCancellable) as caught:
        await app.engine.cancel(job.id)
    assert caught.value.current_status == "cancelled"
    with pytest.raises(JobNotFound):
        await app.engine.cancel(uuid4())


async def test_retry_by_hand_makes_a_new_job_that_names_the_old(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo", {"value": 7}, priority="high", labels={"country": "ke"})
    with pytest.raises(JobNotRetryable):
        await app.engine.retry(job.id)
    await app.engine.cancel(job.id)
    again = await app.engine.retry(job.id)
    assert again.id != job.id and again.retry_of == job.id
    assert (again.status, again.data, again.priority, again.labels) == (
        Status.PENDING,
        {"value": 7},
        job.priority,
        {"country": "ke"},
    )


async def test_listing_filters_paginates_and_counts(app: Conveyor) -> None:
    alice = Owner(user_id="alice", org_id="org-1")
    await app.engine.enqueue_many(
        [JobRequest("t.echo", {"value": i}, labels={"country": "ke" if i % 2 else "tz"}, owner=alice) for i in range(7)]
        + [JobRequest("t.report", {"name": "r", "count": 1}, priority="critical")]
    )
    jobs, total = await app.engine.list(JobFilter(kinds=("t.echo",)), limit=3, offset=0)
    assert total == 7 and len(jobs) == 3
    assert [j.created_at for j in jobs] == sorted((j.created_at for j in jobs), reverse=True)
    page3, _ = await app.engine.list(JobFilter(kinds=("t.echo",)), limit=3, offset=6)
    assert len(page3) == 1
    _, kenyan = await app.engine.list(JobFilter(labels={"country": "ke"}), limit=10)
    assert kenyan == 3
    _, mine = await app.engine.list(JobFilter(owner_org_id="org-1"), limit=10)
    assert mine == 7
    _, critical = await app.engine.list(JobFilter(priorities=(10,)), limit=10)
    assert critical == 1
    assert await app.engine.counts(by="kind") == {"t.echo": 7, "t.report": 1}
    later, _ = await app.engine.list(JobFilter(created_after=utc_now() + timedelta(minutes=1)), limit=10)
    assert later == []


async def test_class_based_job_type_declares_its_cache_key(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.estimated", {"items": [1, 2]})
    assert (job.queue, job.cache_key) == ("estimates", "sum:1,2")
    definition = app.engine.registry.get("t.estimated")
    assert definition.implementation.estimate_time(definition.parse({"items": [1, 2, 3]})) == timedelta(seconds=3)


async def test_values_the_databases_cannot_store_are_refused_naming_the_field(app: Conveyor) -> None:
    for data, field in [
        ({"value": "a\x00b"}, "value"),
        ({"value": ["ok", "\ud800"]}, "value.1"),
        ({"value": {"k\x00": 1}}, "value"),
        ({"value": float("nan")}, "value"),
    ]:
        with pytest.raises(InvalidJobData) as caught:
            await app.engine.enqueue("t.echo", data)
        assert caught.value.errors[0]["field"] == field
    with pytest.raises(InvalidJobOptions) as bad_label:
        await app.engine.enqueue("t.echo", {}, labels={"country": "Ke\x00nya"})
    assert bad_label.value.details["field"] == "labels"
    with pytest.raises(InvalidJobOptions) as far:
        await app.engine.enqueue("t.echo", {}, run_at=utc_now() + timedelta(days=100_000))
    assert far.value.details["field"] == "run_at"
    assert (await app.engine.counts()) == {}  # nothing stored


async def test_text_longer_than_its_column_is_refused_alike_on_both_databases(app: Conveyor) -> None:
    """PostgreSQL would raise its own error for these, SQLite store them whole: the engine
    refuses them first, naming the field, in a single enqueue and in a bulk one."""
    for options, field in [
        ({"queue": "q" * 101}, "queue"),
        ({"idempotency_key": "k" * 501}, "idempotency_key"),
        ({"owner": Owner(user_id="u" * 201)}, "owner.user_id"),
        ({"owner": Owner(org_id="o" * 201)}, "owner.org_id"),
        ({"owner": Owner(study_id="s" * 201)}, "owner.study_id"),
        ({"owner": Owner(created_by="c" * 201)}, "owner.created_by"),
        ({"schedule_id": "x" * 201}, "schedule_id"),
        ({"labels": {"k" * 101: "v"}}, "labels"),
        ({"labels": {"country": "v" * 201}}, "labels"),
        ({"labels": {"": "v"}}, "labels"),
    ]:
        with pytest.raises(InvalidJobOptions) as single:
            await app.engine.enqueue("t.echo", {}, **options)
        assert single.value.details["field"] == field, options
        with pytest.raises(InvalidJobOptions) as bulk:
            await app.engine.enqueue_many([JobRequest("t.echo", {}), JobRequest("t.echo", {}, **options)])
        assert bulk.value.details["field"] == field, options
    assert (await app.engine.counts()) == {}  # nothing stored
    at_the_bounds = {
        "queue": "q" * 100,
        "idempotency_key": "k" * 500,
        "owner": Owner("u" * 200, "o" * 200, "s" * 200, "c" * 200),
        "labels": {"k" * 100: "v" * 200},
    }
    job = await app.engine.enqueue("t.echo", {}, **at_the_bounds)
    stored = await app.engine.get(job.id)
    assert (stored.queue, stored.idempotency_key, stored.owner, stored.labels) == (
        "q" * 100,
        "k" * 500,
        at_the_bounds["owner"],
        {"k" * 100: "v" * 200},
    )


async def test_a_cache_key_longer_than_its_column_is_stored_as_its_hash(app: Conveyor) -> None:
    long_group = "g" * 600
    first = await app.engine.enqueue("t.cached_sum", {"group": long_group, "value": 1})
    same = await app.engine.enqueue("t.cached_sum", {"group": long_group, "value": 1})
    other = await app.engine.enqueue("t.cached_sum", {"group": long_group, "value": 2})
    assert first.cache_key is not None and first.cache_key.startswith("sha256:") and len(first.cache_key) == 71
    assert first.cache_key == same.cache_key != other.cache_key
    assert (await app.engine.get(first.id)).cache_key == first.cache_key


async def test_a_waiter_rechecks_when_the_listener_reconnects(app: Conveyor, database_url: str) -> None:
    """Notifications sent while the LISTEN connection is down are lost: on reconnecting the
    listener wakes every waiter, so a job finished meanwhile is still seen at once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import psycopg

    job = await app.engine.enqueue("t.echo", {"value": 1})
    waiting = asyncio.create_task(app.engine.wait(job.id, timeout=30))
    await asyncio.sleep(0.3)  # listening, and waiting on the job
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Finished behind the notifier's back (no NOTIFY), then the listener's connection cut.
        conn.execute("UPDATE conveyor_jobs SET status = 'completed', completed_at = now() WHERE id = %s", (job.id,))
        listeners = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert listeners, "no LISTEN connection found"
    finished = await asyncio.wait_for(waiting, timeout=10)
    assert finished.status is Status.COMPLETED


async def test_a_waiter_woken_by_an_unnamed_change_goes_back_to_waiting(app: Conveyor) -> None:
    """A "*" (a commit another process made, a reconnected listener) wakes every waiter once to
    look again; after looking it waits as before instead of reading the job in a loop."""
    job = await app.engine.enqueue("t.echo", {"value": 1})
    reads = 0
    stored = app.store.get_job

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await stored(*args, **kwargs)

    app.store.get_job = counted  # type: ignore[method-assign]
    waiting = asyncio.create_task(app.engine.wait(job.id, timeout=1.2))
    await asyncio.sleep(0.1)
    app.engine.notifier.publish("finish", "*")
    assert (await waiting).status is Status.PENDING
    # one read at the start, one on the "*", one every poll interval (0.25 s) where finishes
    # of other processes are not announced, one at the deadline
    assert reads <= 9, f"{reads} reads in 1.2 s"


async def test_start_opens_the_connection_the_first_enqueue_uses(postgres_url: str) -> None:
    # A connection's handshake (and password hashing) costs milliseconds: started, a process
    # holds one, and its first enqueue is as quick as the next.
    import psycopg

    # Its own application name: sessions of earlier tests (a killed worker's backend, say)
    # may still be leaving the server while this one counts.
    name = f"start-test-{os.getpid()}"

    def sessions() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            counted = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
            found = counted.fetchone()
        assert found is not None
        return int(found[0])

    url = f"{postgres_url}?application_name={name}"
    conveyor = Conveyor.from_settings(make_settings(url), registries=[jobtypes])
    before = sessions()
    await conveyor.start()
    try:
        assert sessions() == before + 1
        await conveyor.engine.enqueue("t.echo", {"value": 1})
        assert sessions() == before + 1
    finally:
        await conveyor.close()
    assert sessions() == before


async def test_every_status_in_creation_order_pages_through_each_job_once(app: Conveyor) -> None:
    # No status asked for: read a status at a time and merged (conveyor.store.ordering.page).
    made = [await app.engine.enqueue("t.echo", {"value": i}) for i in range(6)]
    made += [await app.engine.enqueue("t.echo", {"value": i}, delay=timedelta(hours=1)) for i in range(6, 9)]
    made += [await app.engine.enqueue("t.echo", {"value": i}) for i in range(9, 14)]
    for job in made[1:4]:
        await app.engine.cancel(job.id)
    claimed = await app.store.claim_jobs(["default"], 2, "worker-a", timedelta(minutes=1))
    assert len(claimed) == 2
    assert len({j.status for j in (await app.engine.list(limit=50))[0]}) == 4  # pending, scheduled, cancelled, running
    for newest_first in (True, False):
        expected = sorted(made, key=lambda j: (j.created_at, j.id), reverse=newest_first)
        by_cursor: list[Any] = []
        after = None
        while True:
            page, total = await app.engine.list(limit=4, newest_first=newest_first, after=after)
            assert total == 14
            if not page:
                break
            by_cursor += page
            after = (page[-1].created_at, page[-1].created_at, page[-1].id)
        assert [j.id for j in by_cursor] == [j.id for j in expected]
        by_offset = [
            j
            for offset in range(0, 14, 4)
            for j in (await app.engine.list(limit=4, offset=offset, newest_first=newest_first))[0]
        ]
        assert [j.id for j in by_offset] == [j.id for j in expected]
    window, total = await app.engine.list(JobFilter(created_after=made[10].created_at), limit=50)
    assert [j.id for j in window] == [j.id for j in reversed(made[10:])] and total == 4


async def test_claims_go_by_priority_across_queues_and_pass_paused_queues_over(app: Conveyor) -> None:
    low = [await app.engine.enqueue("t.echo", {"value": i}, priority=2) for i in range(3)]
    high = [await app.engine.enqueue("t.echo", {"value": i}, priority=9, queue="reports") for i in range(2)]
    middle = await app.engine.enqueue("t.echo", {}, priority=5, queue="sms")
    lease = timedelta(minutes=1)
    await app.store.set_queue_paused("sms", True)
    low_ids = sorted(j.id for j in low)
    claimed = await app.store.claim_jobs(["default", "reports", "sms"], 4, "worker-a", lease)
    assert [j.id for j in claimed] == [*sorted(j.id for j in high), *low_ids[:2]]  # sms paused
    assert await app.store.claim_jobs(["sms"], 10, "worker-a", lease) == []  # paused: passed over
    await app.store.set_queue_paused("sms", False)
    assert [j.id for j in await app.store.claim_jobs(["sms"], 10, "worker-a", lease)] == [middle.id]
    assert [j.id for j in await app.store.claim_jobs(["default", "reports"], 10, "worker-a", lease)] == low_ids[2:]


@pytest.mark.parametrize("key", SORT_KEYS)
async def test_a_page_by_offset_past_the_middle_is_the_same_read_from_the_other_end(app: Conveyor, key: str) -> None:
    """Pages past the middle are read in the reverse order from the end (fewer rows to pass);
    every order is total, so each page is what reading from the start would give."""
    kinds = ["t.echo", "t.report"]
    for i in range(15):
        data = {"value": i} if i % 2 == 0 else {"name": f"r{i}", "count": 1}
        delay = timedelta(hours=i % 3) if i % 4 == 0 else None
        await app.engine.enqueue(kinds[i % 2], data, priority=1 + i % 10, delay=delay)
    claimed = await app.store.claim_jobs(["default", "reports"], 6, "worker-a", timedelta(minutes=1))
    await app.store.flush([Outcome(j.id, j.attempt, "worker-a", OutcomeKind.COMPLETED, result={}) for j in claimed[:4]])
    for job in (await app.engine.list(JobFilter(statuses=(Status.PENDING,)), limit=2))[0]:
        await app.engine.cancel(job.id)
    for descending in (True, False):
        order = JobOrder(key, descending=descending)
        whole, total = await app.engine.list(limit=100, order=order)
        assert total == len(whole) == 15
        for limit in (1, 4, 7):
            for offset in range(17):
                page, _total = await app.engine.list(limit=limit, offset=offset, order=order)
                assert [j.id for j in page] == [j.id for j in whole[offset : offset + limit]], (order, limit, offset)


async def test_enqueue_each_stores_a_job_per_item_with_shared_options(app: Conveyor) -> None:
    later = utc_now() + timedelta(hours=2)
    owner = Owner(user_id="alice", org_id="org-1")
    items = ({"name": f"r{i}", "count": i % 9 + 1} for i in range(1_250))  # any iterable
    jobs = await app.engine.enqueue_each(
        "t.report", items, priority="critical", run_at=later, owner=owner, labels={"k": "v"}
    )
    assert [j.data for j in jobs] == [{"name": f"r{i}", "count": i % 9 + 1, "tags": []} for i in range(1_250)]
    assert {(j.status, j.priority_class, j.run_at, j.owner, j.labels["k"]) for j in jobs} == {
        (Status.SCHEDULED, Priority.CRITICAL, later, owner, "v")
    }
    stored = await app.engine.get(jobs[1_111].id)
    assert (stored.data, stored.run_at, stored.owner) == (jobs[1_111].data, later, owner)
    assert await app.engine.counts() == {"scheduled": 1_250}


async def test_enqueue_each_refuses_invalid_data_naming_the_first_offender_and_stores_nothing(app: Conveyor) -> None:
    items: list[Any] = [{"name": f"r{i}", "count": 1} for i in range(1_500)]
    items[1_234] = {"name": "r", "count": 0}
    with pytest.raises(InvalidJobData) as caught:
        await app.engine.enqueue_each("t.report", items)
    assert caught.value.errors == [
        {"field": "count", "message": "Input should be greater than or equal to 1", "type": "greater_than_equal"}
    ]
    items[1_234] = "not an object"
    with pytest.raises(InvalidJobData):
        await app.engine.enqueue_each("t.report", items)
    with pytest.raises(InvalidJobOptions, match="idempotency"):
        await app.engine.enqueue_each("t.report", items[:2], idempotency_key="k")
    assert await app.engine.counts() == {}
    assert await app.engine.enqueue_each("t.report", []) == []


async def test_an_enqueue_cancelled_mid_statement_stores_nothing_and_leaves_the_pool_whole(
    empty_postgres_url: str,
) -> None:
    # A caller cancelled while its statement runs (a client gone, a timeout) hands back a
    # connection still busy: the pool must not serve it to the next caller, and the job must
    # not be stored half-way (one statement, one transaction). It counts every job stored, so
    # its database starts empty: the tests before it on this worker leave theirs behind.
    import psycopg

    postgres_url = empty_postgres_url
    conveyor = Conveyor.from_settings(make_settings(postgres_url, pool_size=2), registries=[jobtypes])
    await conveyor.start()
    try:
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute("LOCK TABLE conveyor_job_counts IN ACCESS EXCLUSIVE MODE")
            for _ in range(3):  # more than the pool holds
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(conveyor.engine.enqueue("t.echo", {"value": 1}), timeout=0.3)
            blocker.rollback()
        stored = [await conveyor.engine.enqueue("t.echo", {"value": i}) for i in range(5)]
        stored += await asyncio.gather(*(conveyor.engine.enqueue("t.echo", {"value": i}) for i in range(5)))
        assert (await conveyor.engine.counts()).get("pending") == 10
        listed, total = await conveyor.engine.list(JobFilter(), limit=50, offset=0)
        assert total == 10
        assert {j.id for j in listed} == {j.id for j in stored}
    finally:
        await conveyor.close()


async def test_connections_cut_by_the_server_are_replaced_before_anyone_sees_them(
    app: Conveyor, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database restarted or failed over cuts every pooled connection. The next calls must
    not fail one per connection the pool held (an API answering 500s until each is found
    out): a connection the server has written to while it sat idle is checked first."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to cut connections")
    import psycopg

    # Several connections of each pool in use, then idle.
    await asyncio.gather(*(app.engine.enqueue("t.echo", {"value": i}) for i in range(6)))
    await asyncio.gather(*(app.engine.list(JobFilter(), limit=5, offset=0) for _ in range(4)))
    async with running_worker(app):
        await eventually(lambda: _completed(app, 6))
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert cut_sessions(conn, conn.info.dbname) >= 3
    await asyncio.sleep(0.2)  # the server's goodbyes reach the sockets

    caplog.set_level("ERROR", logger="conveyor")
    jobs = [await app.engine.enqueue("t.echo", {"value": i}) for i in range(6)]
    jobs += await asyncio.gather(*(app.engine.enqueue("t.echo", {"value": i}) for i in range(6)))
    assert (await app.engine.get(jobs[0].id)).status is Status.PENDING
    listed, total = await app.engine.list(JobFilter(statuses=(Status.PENDING,)), limit=20, offset=0)
    assert total == 12 and {j.id for j in listed} == {j.id for j in jobs}
    async with running_worker(app):
        await eventually(lambda: _completed(app, 18))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def _completed(app: Conveyor, n: int) -> bool:
    return (await app.engine.counts()).get("completed", 0) == n


async def test_connections_numbered_past_1024_are_checked_too(postgres_url: str) -> None:
    # A busy API or worker holds many descriptors; select() cannot watch one numbered 1024 or
    # more (ValueError), and the pool would then discard every connection it checked.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    conveyor = Conveyor.from_settings(make_settings(postgres_url), registries=[jobtypes])
    try:
        await conveyor.start()
        jobs = [await conveyor.engine.enqueue("t.echo", {"value": i}) for i in range(3)]
        assert [(await conveyor.engine.get(j.id)).status for j in jobs] == [Status.PENDING] * 3
        assert min(conn.fileno() for conn in conveyor.store._pool._pool) >= 1024  # type: ignore[attr-defined]
    finally:
        await conveyor.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
