"""Job counters on both databases: what `ctx.count` reports is stored with the outcome that
finishes the job (org, kind, job id, attempt, time), numbers only and unsealed, and the
store sums them per organisation and range."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.model import Owner, Status, utc_now
from conveyor.store.schema import job_counters

ORG_A = Owner(user_id="u1", org_id="org-a", created_by="u1")
ORG_B = Owner(user_id="u2", org_id="org-b", created_by="u2")


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor.from_settings(make_settings(database_url, **TEST_ENCRYPTION), registries=[jobtypes])
    await conveyor.start()
    yield conveyor
    await conveyor.close()


async def run(app: Conveyor, kind: str, data: dict[str, Any], owner: Owner = ORG_A) -> Any:
    job = await app.engine.enqueue(kind, data, owner=owner)
    async with running_worker(app):
        return await app.engine.wait(job.id, timeout=30)


async def stored(app: Conveyor) -> list[Any]:
    c = job_counters.c
    query = sa.select(c.job_id, c.org_id, c.kind, c.name, c.value, c.attempt, c.recorded_at).order_by(c.name)
    async with app.store._read_engine.connect() as conn:
        return list((await conn.execute(query)).all())


@pytest.mark.parametrize("kind", ["t.counting", "t.counting_process", "t.counting_sensitive"])
async def test_a_finished_jobs_counters_are_stored_with_it(app: Conveyor, kind: str) -> None:
    done = await run(app, kind, {"counts": {"reminders_sent": 2, "refills_due": 0.5}})
    assert done.status is Status.COMPLETED
    rows = await stored(app)
    assert [(r.name, r.value) for r in rows] == [("attempts_counted", 1), ("refills_due", 0.5), ("reminders_sent", 2)]
    assert {(r.job_id, r.org_id, r.kind, r.attempt) for r in rows} == {(done.id, "org-a", kind, 1)}
    assert all(abs(r.recorded_at - done.completed_at) < timedelta(seconds=1) for r in rows)


async def test_a_counter_reported_twice_is_summed(app: Conveyor) -> None:
    await run(app, "t.counting", {"counts": {"attempts_counted": 4}})
    assert [(r.name, r.value) for r in await stored(app)] == [("attempts_counted", 5)]


async def test_only_the_attempt_that_finishes_the_job_counts(app: Conveyor) -> None:
    # Attempt 1 counts and is retried (its work is done again), attempt 2 counts and completes.
    done = await run(app, "t.counting", {"counts": {"reminders_sent": 3}, "fail_attempts": 1})
    assert done.status is Status.COMPLETED and done.attempt == 2
    rows = await stored(app)
    assert {(r.name, r.value, r.attempt) for r in rows} == {("attempts_counted", 1, 2), ("reminders_sent", 3, 2)}


async def test_a_failed_jobs_counters_are_stored_too(app: Conveyor) -> None:
    done = await run(app, "t.counting_process", {"counts": {"reminders_sent": 1}, "fail_attempts": 5})
    assert done.status is Status.FAILED and done.attempt == 2
    assert {(r.name, r.value, r.attempt) for r in await stored(app)} == {
        ("attempts_counted", 1, 2),
        ("reminders_sent", 1, 2),
    }


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"Reminders Sent": 1}, "counter names are"),
        ({"x" * 65: 1}, "counter names are"),
        ({"reminders_sent": "3"}, "finite number"),
        ({"reminders_sent": True}, "finite number"),
        ({f"c{n}": 1 for n in range(40)}, "at most 32 counters"),
    ],
)
async def test_a_counter_outside_the_safe_alphabet_or_range_fails_the_job(
    app: Conveyor, counts: dict[str, Any], message: str
) -> None:
    done = await run(app, "t.counting", {"counts": counts})
    assert done.status is Status.FAILED and message in done.error["message"]
    # What was counted before the refusal stays: the attempt that failed the job did that work.
    assert len(await stored(app)) == (32 if "at most" in message else 0)


async def test_counters_are_summed_per_organisation_name_and_type_over_a_range(app: Conveyor) -> None:
    await run(app, "t.counting", {"counts": {"reminders_sent": 2}})
    await run(app, "t.counting_sensitive", {"counts": {"reminders_sent": 3, "refills_due": 1}})
    await run(app, "t.counting", {"counts": {"reminders_sent": 100}}, owner=ORG_B)
    now = utc_now()
    sums = await app.store.counter_sums("org-a", now - timedelta(minutes=5), now + timedelta(minutes=1),
                                        ["reminders_sent", "refills_due"])  # fmt: skip
    assert [(s.name, s.kind, s.total, s.jobs) for s in sums] == [
        ("refills_due", "t.counting_sensitive", 1, 1),
        ("reminders_sent", "t.counting", 2, 1),
        ("reminders_sent", "t.counting_sensitive", 3, 1),
    ]
    later = await app.store.counter_sums("org-a", now + timedelta(seconds=1), now + timedelta(minutes=1),
                                         ["reminders_sent"])  # fmt: skip
    assert later == []
