"""The medication pack's reminders on both databases: a reminder becomes core schedules in the
patient's time zone; each firing delivers one notification and one webhook event, at the
right local time across daylight-saving changes, with two schedulers firing at once (time is
stepped, never slept); replacing a reminder retires the old schedules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import NO_SIGNATURES, TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.errors import InvalidJobData, PermanentError
from conveyor.model import Job, JobFilter, Owner, utc_now
from conveyor.packs.medication.reminders import DELIVERY_KIND
from conveyor.store.notifications import NOTIFICATION_CREATED

NURSE = Owner(user_id="nurse-1", org_id="org-a", created_by="nurse-1")
PUBLIC_URL = "http://93.184.216.34/medication-hooks"  # never called: no worker claims deliveries here
# Wide enough that a tick is fired, not skipped as missed, when the clock steps 10 minutes.
GRACE = {"scheduler_grace_seconds": 900, "webhook_queue": "unclaimed"}


def settings(database_url: str) -> Any:
    return make_settings(database_url, **TEST_ENCRYPTION, **NO_SIGNATURES, **GRACE)


@contextlib.asynccontextmanager
async def apps_on(database_url: str, n: int) -> AsyncIterator[list[Conveyor]]:
    """`n` Conveyors on one database, as `n` processes would have."""
    apps = [Conveyor.from_settings(settings(database_url), registries=[jobtypes]) for _ in range(n)]
    for app in apps:
        await app.start()
    try:
        yield apps
    finally:
        for app in apps:
            await app.close()


async def run(app: Conveyor, kind: str, data: dict[str, Any], owner: Owner = NURSE) -> Job:
    job = await app.engine.enqueue(kind, data, owner=owner)
    async with running_worker(app, scheduler=None):
        done = await app.engine.wait(job.id, timeout=30)
    assert done.status.value == "completed", done.error
    return done


async def restart_schedules_at(app: Conveyor, schedule_ids: list[str], start: datetime) -> None:
    """The reminder's schedules as if made at `start` (the injected clock)."""
    for schedule_id in schedule_ids:
        schedule = await app.store.get_schedule(schedule_id)
        assert schedule is not None
        await app.store.update_schedule(schedule_id, {"next_run_at": schedule.timing.first_after(start)})


def reminder(times: list[str], frequency: str = "twice daily", **schedule: Any) -> dict[str, Any]:
    return {
        "user_id": "patient-7",
        "medication_id": "levothyroxine-50",
        "schedule": {"frequency": frequency, "times": times, "timezone": "Europe/Berlin", **schedule},
    }


# Europe/Berlin: clocks go forward 2027-03-28 02:00 -> 03:00, back 2027-10-31 03:00 -> 02:00.
SPRING = (
    datetime(2027, 3, 26, 12, tzinfo=UTC),
    [
        ("2027-03-27", "02:30", "2027-03-27T01:30:00+00:00"),
        ("2027-03-27", "08:00", "2027-03-27T07:00:00+00:00"),
        ("2027-03-28", "03:00", "2027-03-28T01:00:00+00:00"),  # 02:30 does not exist: the gap's end
        ("2027-03-28", "08:00", "2027-03-28T06:00:00+00:00"),
        ("2027-03-29", "02:30", "2027-03-29T00:30:00+00:00"),
        ("2027-03-29", "08:00", "2027-03-29T06:00:00+00:00"),
        ("2027-03-30", "02:30", "2027-03-30T00:30:00+00:00"),
        ("2027-03-30", "08:00", "2027-03-30T06:00:00+00:00"),
    ],
)
AUTUMN = (
    datetime(2027, 10, 29, 12, tzinfo=UTC),
    [
        ("2027-10-30", "02:30", "2027-10-30T00:30:00+00:00"),
        ("2027-10-30", "08:00", "2027-10-30T06:00:00+00:00"),
        ("2027-10-31", "02:30", "2027-10-31T00:30:00+00:00"),  # 02:30 happens twice: once
        ("2027-10-31", "08:00", "2027-10-31T07:00:00+00:00"),
        ("2027-11-01", "02:30", "2027-11-01T01:30:00+00:00"),
        ("2027-11-01", "08:00", "2027-11-01T07:00:00+00:00"),
        ("2027-11-02", "02:30", "2027-11-02T01:30:00+00:00"),
        ("2027-11-02", "08:00", "2027-11-02T07:00:00+00:00"),
    ],
)


@pytest.mark.parametrize(("start", "expected"), [SPRING, AUTUMN], ids=["clocks-forward", "clocks-back"])
async def test_each_firing_delivers_once_at_local_time_across_dst_with_two_schedulers(
    database_url: str, start: datetime, expected: list[tuple[str, str, str]]
) -> None:
    async with apps_on(database_url, 2) as (one, two):
        await one.webhooks.create(org_id="org-a", url=PUBLIC_URL, events=[NOTIFICATION_CREATED])
        made = await run(one, "medication_reminder", reminder(["20:00", "08:00"]))
        assert made.result["crons"] == ["0 8 * * *", "0 20 * * *"] and made.result["doses_per_day"] == 2.0
        # The same medication again, now at 02:30 and 08:00: it replaces the first reminder.
        made = await run(one, "medication_reminder", reminder(["08:00", "02:30"]))
        assert made.result["replaced"] is True and made.result["crons"] == ["30 2 * * *", "0 8 * * *"]
        await restart_schedules_at(one, made.result["schedule_ids"], start)

        now = start
        while now < start + timedelta(days=4):
            now += timedelta(minutes=10)
            await asyncio.gather(one.schedules.fire_due(now), two.schedules.fire_due(now))
        deliveries, _ = await one.engine.list(JobFilter(kinds=(DELIVERY_KIND,)), limit=100)
        assert len(deliveries) == len(expected)
        async with running_worker(one, scheduler=None), running_worker(two, scheduler=None):
            for job in deliveries:
                done = await one.engine.wait(job.id, timeout=30)
                assert done.status.value == "completed" and done.result["delivered"] is True, done.error

        notes, total = await one.notifications.list(visible_to=None, kind="medication_reminder", limit=100)
        assert total == len(expected)
        got = sorted((n.body["local_date"], n.body["local_time"], n.body["due_at"]) for n in notes)
        assert got == expected
        assert {n.user_id for n in notes} == {"patient-7"} and {n.org_id for n in notes} == {"org-a"}
        assert {n.body["medication_id"] for n in notes} == {"levothyroxine-50"}
        events = [e for e in await one.store.webhook_events_page(1000) if e.event_type == NOTIFICATION_CREATED]
        assert sorted(e.payload["notification"]["id"] for e in events) == sorted(str(n.id) for n in notes)
        # Each delivery counted once for analytics_roll_up's reminders_sent.
        [sent] = await one.store.counter_sums("org-a", start - timedelta(days=3650), utc_now() + timedelta(days=1),
                                              ["reminders_sent"])  # fmt: skip
        assert (sent.kind, sent.total) == (DELIVERY_KIND, len(expected))


async def test_a_firing_written_again_makes_no_second_notification_or_event(database_url: str) -> None:
    async with apps_on(database_url, 1) as (app,):
        await app.webhooks.create(org_id="org-a", url=PUBLIC_URL, events=[NOTIFICATION_CREATED])
        body = {"medication_id": "m-1"}
        first, created = await app.notifications.notify(
            owner=NURSE, user_id="patient-7", kind="medication_reminder", body=body, delivery_key="tick-1"
        )
        again, created_again = await app.notifications.notify(
            owner=NURSE, user_id="patient-7", kind="medication_reminder", body=body, delivery_key="tick-1"
        )
        assert (created, created_again) == (True, False) and again.id == first.id and again.body == body
        assert len(await app.store.webhook_events_page(100)) == 1


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"kind": "k" * 101}, "kind longer than 100"),
        ({"delivery_key": "d" * 301}, "delivery_key longer than 300"),
        ({"user_id": "u" * 201}, "user_id longer than 200"),
        ({"owner": Owner(org_id="o" * 201)}, "owner.org_id longer than 200"),
    ],
)
async def test_a_notification_no_column_can_hold_fails_its_job_for_good_saying_which(
    database_url: str, given: dict[str, Any], problem: str
) -> None:
    async with apps_on(database_url, 1) as (app,):
        note = {"owner": NURSE, "user_id": "patient-7", "kind": "medication_reminder", "delivery_key": "tick-1"}
        with pytest.raises(PermanentError, match=problem):
            await app.notifications.notify(**{**note, **given}, body={"medication_id": "m-1"})
        assert (await app.notifications.list(visible_to=None))[1] == 0


async def test_replacing_a_reminder_retires_its_schedules_and_their_firings(database_url: str) -> None:
    async with apps_on(database_url, 1) as (app,):
        old = await run(app, "medication_reminder", reminder(["08:00"], frequency="daily"))
        new = await run(app, "medication_reminder", reminder(["09:15"], frequency="weekly", weekday="monday"))
        assert new.result["crons"] == ["15 9 * * 1"] and new.result["doses_per_day"] == round(1 / 7, 4)
        assert [await app.store.get_schedule(s) for s in old.result["schedule_ids"]] == [None]
        [schedule_id] = new.result["schedule_ids"]
        schedule = await app.store.get_schedule(schedule_id)
        assert schedule is not None and schedule.owner.org_id == "org-a" and schedule.timing.timezone == "Europe/Berlin"
        assert "levothyroxine" not in str(schedule.data) and "patient-7" not in str(schedule.data)  # no PHI
        # A firing of the retired reminder (its job made before the replacement) delivers nothing.
        stale = await run(app, DELIVERY_KIND, {"reminder_id": old.result["reminder_id"]})
        assert stale.result == {"delivered": False, "reason": "reminder replaced or removed"}
        assert (await app.notifications.list(visible_to=None))[1] == 0


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"frequency": "twice daily", "times": ["08:00"]}, "schedule.times"),
        ({"frequency": "daily", "times": ["8am"]}, "schedule.times"),
        ({"frequency": "daily", "times": ["08:00", "09:00"]}, "schedule.times"),
        ({"frequency": "twice daily", "times": ["08:00", "08:00"]}, "schedule.times"),
        ({"frequency": "weekly", "times": ["08:00"]}, "schedule.weekday"),
        ({"frequency": "daily", "times": ["08:00"], "weekday": "monday"}, "schedule.weekday"),
        ({"frequency": "every 5 hours", "times": ["08:00"]}, "schedule.frequency"),
        ({"frequency": "now and then", "times": ["08:00"]}, "schedule.frequency"),
        ({"frequency": "0 8 * * *", "times": ["08:00"]}, "schedule.times"),
        ({"frequency": "daily", "times": ["08:00"], "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"frequency": "daily", "times": ["08:00"], "timezone": "Europe"}, "schedule.timezone"),
    ],
)
async def test_a_bad_schedule_is_refused_naming_its_field(
    database_url: str, schedule: dict[str, Any], field: str
) -> None:
    async with apps_on(database_url, 1) as (app,):
        with pytest.raises(InvalidJobData) as refused:
            await app.engine.enqueue(
                "medication_reminder", {"user_id": "p", "medication_id": "m", "schedule": schedule}
            )
        assert [e["field"] for e in refused.value.errors] == [field]
