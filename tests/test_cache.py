"""The result cache on both databases: a hit returns the source job's result without running,
identical requests in flight attach to one job (also when they race from several processes),
the TTL, scoping to the organisation, statistics and clearing.

t.cached_sum's key is `group:value`; its body counts its runs in jobtypes_for_tests.TRACKED,
so "did not run" is what the job bodies saw.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

import pytest
from conftest import eventually, running_worker
from jobtypes_for_tests import tracked
from test_batches import apps_on

from conveyor import Conveyor
from conveyor.errors import InvalidJobOptions
from conveyor.model import FINISHED, Owner, Status, Visibility, utc_now
from conveyor.store.audit import AuditFilter

ALICE = Owner(user_id="alice", org_id="org-a", created_by="Alice")
ORG_A = Visibility(org_id="org-a")
ORG_B = Visibility(org_id="org-b")


def group() -> str:
    return f"c-{secrets.token_hex(4)}"


def data(name: str, value: int = 1, **extra: Any) -> dict[str, Any]:
    return {"group": name, "seconds": 0, "value": value, **extra}


async def run_until_finished(app: Conveyor, *job_ids: Any) -> None:
    async def done() -> bool:
        return all([(await app.engine.get(i)).status in FINISHED for i in job_ids])

    async with running_worker(app):
        await eventually(done)


async def test_a_hit_returns_the_source_jobs_result_without_running(app: Conveyor) -> None:
    name = group()
    first = await app.cache.submit("t.cached_sum", data(name), owner=ALICE, visible_to=ORG_A)
    assert first.created and first.cache is None
    await run_until_finished(app, first.job.id)
    source = await app.engine.get(first.job.id)
    assert (source.status, source.result, tracked(name)["runs"]) == (Status.COMPLETED, {"group": name, "value": 1}, 1)

    again = await app.cache.submit("t.cached_sum", data(name), owner=ALICE, visible_to=ORG_A)
    assert not again.created
    assert again.cache is not None and again.cache.outcome == "hit"
    assert (again.cache.source_job_id, again.cache.cached_at) == (source.id, source.completed_at)
    assert (again.job.id, again.job.status, again.job.result) == (source.id, Status.COMPLETED, source.result)
    await run_until_finished(app)  # a worker finds nothing to run
    assert tracked(name)["runs"] == 1
    assert (await app.engine.counts()) == {"completed": 1}

    # other data is another key; a request without use_cache always runs
    other = await app.cache.submit("t.cached_sum", data(name, 2), owner=ALICE, visible_to=ORG_A)
    plain = await app.engine.enqueue("t.cached_sum", data(name), owner=ALICE)
    assert other.created and other.job.id != source.id
    await run_until_finished(app, other.job.id, plain.id)
    assert tracked(name)["runs"] == 3


async def test_a_request_identical_to_one_in_flight_attaches_to_it(app: Conveyor) -> None:
    name = group()
    first = await app.cache.submit("t.cached_sum", data(name), owner=ALICE)
    second = await app.cache.submit("t.cached_sum", data(name), owner=ALICE)
    assert second.cache is not None and second.cache.outcome == "attached"
    assert (second.job.id, second.cache.source_job_id, second.cache.cached_at) == (first.job.id, first.job.id, None)
    assert second.job.status is Status.PENDING
    await run_until_finished(app, first.job.id)
    assert tracked(name)["runs"] == 1


async def test_concurrent_identical_requests_from_several_processes_run_once(database_url: str) -> None:
    name = group()
    async with apps_on(database_url, 3) as apps:
        requests = [
            app.cache.submit("t.cached_sum", data(name), owner=ALICE, visible_to=ORG_A)
            for app in apps
            for _ in range(4)
        ]
        answers = await asyncio.gather(*requests)
        assert len({a.job.id for a in answers}) == 1
        assert sum(a.created for a in answers) == 1
        assert sorted(a.cache.outcome for a in answers if a.cache) == ["attached"] * 11
        async with running_worker(apps[1]), running_worker(apps[2]):
            await eventually(lambda: _finished(apps[0], answers[0].job.id))
        assert tracked(name)["runs"] == 1
        stats = await apps[0].cache.stats(visible_to=ORG_A)
        assert (stats.entries, stats.hits, stats.misses, stats.hit_rate) == (1, 11, 1, 91.7)


async def _finished(app: Conveyor, job_id: Any) -> bool:
    return (await app.engine.get(job_id)).status in FINISHED


async def test_a_result_older_than_the_ttl_is_made_again(app: Conveyor) -> None:
    name = group()
    assert app.cache.ttl == timedelta(hours=1)
    first = await app.cache.submit("t.cached_sum", data(name), owner=ALICE)
    await run_until_finished(app, first.job.id)
    within = await app.cache.submit("t.cached_sum", data(name), owner=ALICE, now=utc_now() + timedelta(minutes=59))
    assert within.cache is not None and within.cache.outcome == "hit"
    later = utc_now() + timedelta(hours=1, seconds=1)
    assert (await app.cache.stats(now=later)).entries == 0
    expired = await app.cache.submit("t.cached_sum", data(name), owner=ALICE, now=later)
    assert expired.created and expired.cache is None and expired.job.id != first.job.id
    await run_until_finished(app, expired.job.id)
    assert tracked(name)["runs"] == 2
    # the new result is the cached one from now on
    again = await app.cache.submit("t.cached_sum", data(name), owner=ALICE)
    assert again.cache is not None and again.cache.source_job_id == expired.job.id


async def test_a_failed_source_is_not_reused(app: Conveyor) -> None:
    name = group()
    failed = await app.cache.submit("t.cached_sum", data(name, fail=True), owner=ALICE)
    await run_until_finished(app, failed.job.id)
    assert (await app.engine.get(failed.job.id)).status is Status.FAILED
    retried = await app.cache.submit("t.cached_sum", data(name), owner=ALICE)
    assert retried.created and retried.job.id != failed.job.id


async def test_results_are_shared_within_an_organisation_only(app: Conveyor) -> None:
    name = group()
    mine = await app.cache.submit("t.cached_sum", data(name), owner=ALICE, visible_to=ORG_A)
    await run_until_finished(app, mine.job.id)
    theirs = await app.cache.submit(
        "t.cached_sum", data(name), owner=Owner(user_id="carol", org_id="org-b"), visible_to=ORG_B
    )
    assert theirs.created and theirs.job.id != mine.job.id and theirs.job.owner.org_id == "org-b"
    # a user-level caller shares only with itself: it reuses no one else's result, and no one its
    bob = Visibility(org_id="org-a", user_id="bob")
    bobs = await app.cache.submit("t.cached_sum", data(name), owner=Owner("bob", "org-a"), visible_to=bob)
    assert bobs.created
    assert (await app.cache.stats(visible_to=ORG_B)).entries == 0
    assert (await app.cache.stats(visible_to=ORG_A)).misses == 2


async def test_stats_and_clear_by_label(app: Conveyor) -> None:
    name = group()
    kenya = await app.cache.submit("t.cached_sum", data(name, 1), owner=ALICE, labels={"country": "Kenya"})
    mozambique = await app.cache.submit("t.cached_sum", data(name, 2), owner=ALICE, labels={"country": "Mozambique"})
    in_flight = await app.cache.submit("t.cached_sum", data(name, 3), owner=ALICE)
    await run_until_finished(app, kenya.job.id, mozambique.job.id)
    assert (await app.engine.get(in_flight.job.id)).status is Status.COMPLETED  # the worker ran it too
    await app.cache.submit("t.cached_sum", data(name, 1), owner=ALICE)  # a hit

    stats = await app.cache.stats(visible_to=ORG_A)
    completed = sorted([(await app.engine.get(j.job.id)).completed_at for j in (kenya, mozambique, in_flight)])
    assert (stats.entries, stats.hits, stats.misses, stats.hit_rate) == (3, 1, 3, 25.0)
    assert (stats.oldest, stats.newest) == (completed[0], completed[-1])
    assert stats.size_bytes >= 3 * len(f'{{"group":"{name}","value":1}}')

    with pytest.raises(InvalidJobOptions):
        await app.cache.submit("t.cached_sum", data(name), owner=ALICE, idempotency_key="k")
    assert await app.cache.clear(visible_to=ORG_B) == 0
    assert await app.cache.clear(visible_to=ORG_A, labels={"country": "Kenya"}) == 1
    assert (await app.cache.stats(visible_to=ORG_A)).entries == 2
    again = await app.cache.submit("t.cached_sum", data(name, 1), owner=ALICE)
    assert again.created  # cleared: it runs again
    assert await app.cache.clear() == 2  # the rest (the new Kenya job is in flight: its entry stays)
    assert (await app.cache.stats()).entries == 0
    records, _total = await app.engine.audit.list(AuditFilter(action="cache.cleared"), limit=10)
    assert sorted(r.after["cleared"] for r in records) == [0, 1, 2]


async def test_a_job_type_without_a_cache_key_simply_runs(app: Conveyor) -> None:
    first = await app.cache.submit("t.echo", {"value": 1}, owner=ALICE)
    second = await app.cache.submit("t.echo", {"value": 1}, owner=ALICE)
    assert first.created and second.created and first.job.id != second.job.id
    assert first.cache is None and (await app.cache.stats()).misses == 0
