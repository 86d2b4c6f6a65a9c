"""Schedules on both databases: definitions, ticks, and one job per tick however many
schedulers race, with a leader elected through the database.

Time is stepped, never slept: `Schedules.fire_due(now)` and `Scheduler.run_once(now)` take the
clock (the lease included), so hundreds of ticks and a leader's death run in moments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import eventually, make_settings, running_scheduler, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.audit import SYSTEM
from conveyor.cron import tick_key
from conveyor.engine.schedules import ScheduleSpec
from conveyor.errors import InvalidJobData, InvalidJobOptions, InvalidSchedule, ScheduleNotFound, UnknownJobType
from conveyor.model import Job, JobFilter, Owner, Visibility
from conveyor.scheduler import LEASE_NAME, Chore, Scheduler
from conveyor.store.schedules import Schedule

START = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=20)
ALICE = Owner(user_id="alice", org_id="org-a", created_by="Alice")


def every(seconds: float, **options: object) -> ScheduleSpec:
    return ScheduleSpec(name="tick", job_type="t.echo", data={"value": 1}, interval_seconds=seconds, **options)  # type: ignore[arg-type]


async def all_jobs(app: Conveyor) -> list[Job]:
    jobs, _total = await app.engine.list(JobFilter(), limit=10_000)
    return jobs


def ticks_of(schedule: Schedule, jobs: list[Job]) -> list[str]:
    return sorted(j.idempotency_key or "" for j in jobs if j.schedule_id == schedule.id)


def keys(schedule: Schedule, ticks: list[datetime]) -> list[str]:
    return sorted(tick_key(schedule.id, t) for t in ticks)


@contextlib.asynccontextmanager
async def apps_on(database_url: str, n: int) -> AsyncIterator[list[Conveyor]]:
    """`n` Conveyors on one database: separate engines, pools and connections, as separate
    processes would have."""
    apps = [Conveyor.from_settings(make_settings(database_url), registries=[jobtypes]) for _ in range(n)]
    for app in apps:
        await app.start()
    try:
        yield apps
    finally:
        for app in apps:
            await app.close()


# --- definitions -----------------------------------------------------------------------------


async def test_create_computes_the_first_tick_and_reads_back(app: Conveyor) -> None:
    cron = await app.schedules.create(
        ScheduleSpec("report", "t.report", {"name": "daily", "count": 3}, cron="0 9 * * *", timezone="Europe/Berlin"),
        owner=ALICE,
        now=START,
    )
    assert cron.next_run_at == datetime(2030, 1, 1, 8, tzinfo=UTC)  # 09:00 CET
    assert cron.data == {"name": "daily", "count": 3, "tags": []}  # as the job type stores it
    interval = await app.schedules.create(every(30, priority="high", queue="fast"), now=START)
    assert interval.next_run_at == START + timedelta(seconds=30)
    assert (interval.priority, interval.queue) == (8, "fast")

    got = await app.schedules.get(cron.id, visible_to=Visibility(org_id="org-a"))
    assert got == cron
    listed, total = await app.schedules.list(visible_to=Visibility(org_id="org-a"))
    assert total == 1 and [s.id for s in listed] == [cron.id]
    assert (await app.schedules.list())[1] == 2
    with pytest.raises(ScheduleNotFound):
        await app.schedules.get(cron.id, visible_to=Visibility(org_id="org-b"))


@pytest.mark.parametrize(
    ("spec", "error", "fields"),
    [
        (ScheduleSpec("x", "no.such.type", cron="* * * * *"), UnknownJobType, None),
        (
            ScheduleSpec("x", "t.report", {"name": "", "count": 1000}, cron="* * * * *"),
            InvalidJobData,
            {"name", "count"},
        ),
        (ScheduleSpec("x", "t.echo", cron="* * * * *", priority="urgent"), InvalidJobOptions, {"priority"}),
        (ScheduleSpec("x", "t.echo", cron="99 * * * *"), InvalidSchedule, {"cron"}),
        (ScheduleSpec("x", "t.echo", cron="* * * * *", timezone="Nowhere/Town"), InvalidSchedule, {"timezone"}),
        (ScheduleSpec("x", "t.echo", interval_seconds=0.2), InvalidSchedule, {"interval_seconds"}),
        (ScheduleSpec("x", "t.echo"), InvalidSchedule, {"cron"}),
        (ScheduleSpec("x", "t.echo", cron="* * * * *", missed_policy="never"), InvalidSchedule, {"missed_policy"}),
        (ScheduleSpec(" ", "t.echo", cron="* * * * *"), InvalidSchedule, {"name"}),
        (ScheduleSpec("x", "t.echo", cron="* * * * *", enabled="yes"), InvalidSchedule, {"enabled"}),  # type: ignore[arg-type]
    ],
)
async def test_invalid_schedules_are_refused_naming_the_field_and_nothing_is_stored(
    app: Conveyor, spec: ScheduleSpec, error: type[Exception], fields: set[str] | None
) -> None:
    with pytest.raises(error) as caught:
        await app.schedules.create(spec)
    if isinstance(caught.value, InvalidJobData):
        assert {e["field"] for e in caught.value.errors} == fields
    elif fields is not None:
        assert {caught.value.details["field"]} == fields  # type: ignore[attr-defined]
    assert (await app.schedules.list())[1] == 0


async def test_an_owner_longer_than_its_columns_is_refused_naming_the_field(app: Conveyor) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        await app.schedules.create(every(60), owner=Owner(user_id="u1", org_id="o" * 201), now=START)
    assert caught.value.details["field"] == "owner.org_id"
    assert (await app.schedules.list())[1] == 0


async def test_update_pause_resume_and_delete(app: Conveyor) -> None:
    schedule = await app.schedules.create(every(60), owner=ALICE, now=START)
    later = START + timedelta(hours=1)

    renamed = await app.schedules.update(schedule.id, {"name": "renamed", "data": {"value": 2}}, now=later)
    assert (renamed.name, renamed.data) == ("renamed", {"value": 2})
    assert renamed.next_run_at == schedule.next_run_at  # same timing: the same next tick

    to_cron = await app.schedules.update(schedule.id, {"cron": "*/5 * * * *"}, now=later)
    assert to_cron.timing.cron == "*/5 * * * *" and to_cron.timing.interval is None
    assert to_cron.next_run_at == later + timedelta(minutes=5)  # started afresh from now

    with pytest.raises(InvalidSchedule) as caught:
        await app.schedules.update(schedule.id, {"timezone": "Not/AZone"})
    assert caught.value.details["field"] == "timezone"
    with pytest.raises(InvalidJobData):
        await app.schedules.update(schedule.id, {"job_type": "t.report"})  # {"value": 2} is no report
    with pytest.raises(InvalidSchedule) as caught:
        await app.schedules.update(schedule.id, {"colour": "red"})
    assert caught.value.details["field"] == "colour"
    assert (await app.schedules.get(schedule.id)).timing.cron == "*/5 * * * *"  # refused changes changed nothing

    paused = await app.schedules.pause(schedule.id)
    assert not paused.enabled and paused.next_run_at is None
    assert await app.schedules.fire_due(later + timedelta(days=1)) == []
    resumed = await app.schedules.resume(schedule.id)
    assert resumed.enabled and resumed.next_run_at is not None

    deleted = await app.schedules.delete(schedule.id, visible_to=Visibility(org_id="org-a"))
    assert deleted.id == schedule.id
    with pytest.raises(ScheduleNotFound):
        await app.schedules.get(schedule.id)
    with pytest.raises(ScheduleNotFound):
        await app.schedules.delete(schedule.id)


# --- ticks ---------------------------------------------------------------------------------------


async def test_each_tick_makes_one_job_carrying_the_schedule(app: Conveyor) -> None:
    schedule = await app.schedules.create(every(10), owner=ALICE, now=START)
    fired: list[Job] = []
    for step in range(1, 8):
        now = START + timedelta(seconds=10 * step, milliseconds=300)
        fired += await app.schedules.fire_due(now)
        assert await app.schedules.fire_due(now) == []  # the same moment again: nothing more
    ticks = [START + timedelta(seconds=10 * k) for k in range(1, 8)]
    assert ticks_of(schedule, fired) == ticks_of(schedule, await all_jobs(app)) == keys(schedule, ticks)
    job = fired[0]
    assert (job.kind, job.data, job.owner, job.status.value) == ("t.echo", {"value": 1}, ALICE, "pending")
    stored = await app.schedules.get(schedule.id)
    assert stored.last_run_at == ticks[-1] and stored.next_run_at == ticks[-1] + timedelta(seconds=10)
    # Each job a tick made is in the audit trail, as a job made any other way is.
    await app.audit.seal()
    created = [r for r in await app.store.audit_page(0, 100) if r.action == "job.created"]
    assert sorted(r.object_id for r in created) == sorted(str(j.id) for j in fired)
    assert {(r.actor_id, r.after["kind"]) for r in created} == {(SYSTEM, "t.echo")}


@pytest.mark.parametrize(
    ("policy", "fired_minutes"),
    [("skip", []), ("run_once", [10]), ("run_all", [6, 7, 8, 9, 10])],  # run_all's cap is 5 here
)
async def test_ticks_missed_while_nothing_ran_follow_the_policy(
    database_url: str, policy: str, fired_minutes: list[int]
) -> None:
    settings = make_settings(database_url, scheduler_grace_seconds=30, scheduler_run_all_cap=5)
    async with Conveyor.from_settings(settings, registries=[jobtypes]) as app:
        schedule = await app.schedules.create(every(60, missed_policy=policy), now=START)
        outage_over = START + timedelta(minutes=10, seconds=45)  # ticks 1…10 due; 10 is 45 s late
        fired = await app.schedules.fire_due(outage_over)
        assert ticks_of(schedule, fired) == keys(schedule, [START + timedelta(minutes=m) for m in fired_minutes])
        # whatever the policy, ticking resumes on time after the outage
        on_time = await app.schedules.fire_due(START + timedelta(minutes=11, seconds=1))
        assert ticks_of(schedule, on_time) == keys(schedule, [START + timedelta(minutes=11)])


async def test_a_stale_reader_cannot_fire_a_tick_again(app: Conveyor) -> None:
    """What a leader that lost its lease mid-tick would do: fire what it read before another
    process fired it. The compare-and-set refuses it; and were next_run_at ever moved back
    onto a fired tick, the tick's idempotency key would still give no second job."""
    await app.schedules.create(every(5), now=START)
    now = START + timedelta(seconds=5)
    [stale] = await app.store.due_schedules(now)
    assert len(await app.schedules.fire_due(now)) == 1
    job = app.schedules._job(stale, now)
    assert (
        await app.store.fire_schedule(stale, next_run_at=now + timedelta(seconds=5), last_run_at=now, new_jobs=[job])
        is None
    )

    await app.store.update_schedule(stale.id, {"next_run_at": now})  # back onto the fired tick
    again = await app.schedules.fire_due(now)
    assert again == [] and len(await all_jobs(app)) == 1


async def test_schedules_of_job_types_this_process_does_not_know_are_left_for_one_that_does(app: Conveyor) -> None:
    foreign = await app.schedules.create(every(5), now=START)
    await app.store.update_schedule(foreign.id, {"kind": "other.service.job"})
    assert await app.schedules.fire_due(START + timedelta(minutes=1)) == []
    assert (await app.schedules.get(foreign.id)).next_run_at == foreign.next_run_at
    # and it can still be paused, resumed and deleted here
    assert not (await app.schedules.pause(foreign.id)).enabled
    assert (await app.schedules.resume(foreign.id)).enabled
    await app.schedules.delete(foreign.id)


# --- racing schedulers ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_three_schedulers_firing_at_once_make_each_tick_exactly_once(database_url: str) -> None:
    """No leader at all (every process believing it leads): three stores on their own
    connections fire the same due ticks at the same moments, 200 times; steps of 1-3 s, so
    run_all fires several ticks at once now and then."""
    async with apps_on(database_url, 3) as apps:
        first = await apps[0].schedules.create(every(1, missed_policy="run_all"), now=START)
        second = await apps[1].schedules.create(
            ScheduleSpec("cron", "t.echo", {"value": 2}, cron="* * * * *", missed_policy="run_all"), now=START
        )
        now = START
        for step in range(200):
            now += timedelta(seconds=1 + step % 3)
            await asyncio.gather(*(app.schedules.fire_due(now) for app in apps))
        jobs = await all_jobs(apps[0])
        seconds = int((now - START).total_seconds())
        assert ticks_of(first, jobs) == keys(first, [START + timedelta(seconds=s) for s in range(1, seconds + 1)])
        assert ticks_of(second, jobs) == keys(
            second, [START + timedelta(minutes=m) for m in range(1, seconds // 60 + 1)]
        )
        assert len(jobs) == len({j.idempotency_key for j in jobs})


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_racing_schedulers_elect_one_leader_and_lose_no_tick_across_failovers(database_url: str) -> None:
    """Three Schedulers pass at the same moments for 200 ticks; every 50 ticks the leader
    dies (stops passing) for longer than the lease, and the others race to take over."""
    async with apps_on(database_url, 3) as apps:
        schedulers = [app.scheduler(lease=LEASE) for app in apps]
        schedule = await apps[0].schedules.create(every(1, missed_policy="run_all"), now=START)
        now, dead = START, None
        leaders = []
        for step in range(1, 201):
            now += timedelta(seconds=1)
            if step % 50 == 0:  # the leader dies; its lease runs out while nobody fires
                dead = next(s for s in schedulers if s.is_leader)
                now += LEASE + timedelta(seconds=1)
            alive = [s for s in schedulers if s is not dead]
            await asyncio.gather(*(s.run_once(now) for s in alive))
            leading = [s for s in alive if s.is_leader]
            assert len(leading) == 1, f"step {step}: {len(leading)} leaders"
            leaders.append(leading[0].node_id)
            if step % 50 == 5:
                dead = None  # back from the dead: a follower now
        assert len(set(leaders)) >= 2, "the lease never changed hands"
        jobs = await all_jobs(apps[0])
        seconds = int((now - START).total_seconds())
        assert ticks_of(schedule, jobs) == keys(schedule, [START + timedelta(seconds=s) for s in range(1, seconds + 1)])


async def test_a_dead_leader_is_replaced_once_its_lease_expires(app: Conveyor, database_url: str) -> None:
    async with apps_on(database_url, 1) as (other,):
        leader, follower = app.scheduler(lease=LEASE), other.scheduler(lease=LEASE)
        schedule = await app.schedules.create(every(5, missed_policy="run_once"), now=START)
        assert await leader.run_once(START + timedelta(seconds=5)) != []
        # the leader dies just after; the follower cannot lead until the lease runs out
        for seconds in (6, 10, 20, 25):
            assert await follower.run_once(START + timedelta(seconds=seconds)) == []
            assert not follower.is_leader
        holder, _until = await app.store.leader_of(LEASE_NAME) or ("", None)
        assert holder == leader.node_id
        took_over = START + timedelta(seconds=26)  # the lease (renewed at 5 s) ended at 25 s
        fired = await follower.run_once(took_over)
        assert follower.is_leader and (await app.store.leader_of(LEASE_NAME) or ("",))[0] == follower.node_id
        # run_once: the ticks at 10, 15, 20 and 25 s collapse into one job, for the latest
        assert ticks_of(schedule, fired) == keys(schedule, [START + timedelta(seconds=25)])
        # the old leader comes back: it follows, and fires nothing
        assert await leader.run_once(took_over + timedelta(seconds=5)) == [] and not leader.is_leader


async def test_a_stopped_scheduler_gives_its_lease_up_at_once(app: Conveyor) -> None:
    scheduler = app.scheduler(interval=timedelta(milliseconds=20), lease=timedelta(seconds=60))
    async with running_scheduler(scheduler):
        await eventually(lambda: _is_leader(scheduler))
    assert await app.store.leader_of(LEASE_NAME) is None
    successor = app.scheduler(lease=timedelta(seconds=60))
    await successor.run_once()
    assert successor.is_leader  # no minute-long wait for the old lease


async def test_a_leader_whose_firing_fails_still_does_its_chores(
    app: Conveyor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Firing the due schedules can fail on its own (a bug in one schedule's firing): the leader,
    # its lease renewed, still seals the audit journal, dispatches webhooks, evaluates alerts
    # and prunes; only a pass that could not renew the lease leaves them (tests/test_outage.py).
    async def failing_fire_due(now: datetime) -> list[Job]:
        raise RuntimeError("a schedule's firing failed")

    monkeypatch.setattr(app.schedules, "fire_due", failing_fire_due)
    chores_run: list[int] = []

    async def chore() -> None:
        chores_run.append(1)

    async def chores_ran_twice() -> bool:
        return len(chores_run) >= 2

    scheduler = app.scheduler(
        interval=timedelta(milliseconds=20), lease=timedelta(seconds=60), chores=[Chore("probe", 0, chore)]
    )
    async with running_scheduler(scheduler):
        with caplog.at_level(logging.ERROR, logger="conveyor.scheduler"):
            await eventually(chores_ran_twice)
        assert scheduler.is_leader
    assert any(r.getMessage() == "firing due schedules failed" for r in caplog.records), caplog.text


async def _is_leader(scheduler: Scheduler) -> bool:
    return scheduler.is_leader


async def test_a_worker_runs_the_scheduler_and_the_jobs(app: Conveyor) -> None:
    schedule = await app.schedules.create(every(1))
    fast = app.scheduler(interval=timedelta(milliseconds=50), lease=timedelta(seconds=5))
    async with running_worker(app, scheduler=fast):

        async def completed() -> list[Job]:
            return [j for j in await all_jobs(app) if j.schedule_id == schedule.id and j.status.value == "completed"]

        done = await eventually(completed, timeout=10)
    assert done[0].result == {"value": 1, "attempt": 1}
