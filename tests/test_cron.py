"""When schedules fire (conveyor.cron, pure): cron in a time zone across DST, intervals, the
missed-tick policies, and validation naming the field at fault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.cron import MissedPolicy, Timing, parse_policy, plan_ticks, tick_key
from conveyor.errors import InvalidSchedule

GRACE = timedelta(seconds=60)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(timing: Timing, start: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        start = timing.first_after(start)
        out.append(start)
    return out


def test_cron_in_utc_fires_at_the_next_matching_minute() -> None:
    timing = Timing.of(cron="*/15 * * * *")
    assert walk(timing, utc(2026, 1, 1, 10, 7, 30), 3) == [
        utc(2026, 1, 1, 10, 15),
        utc(2026, 1, 1, 10, 30),
        utc(2026, 1, 1, 10, 45),
    ]
    assert timing.first_after(utc(2026, 1, 1, 10, 15)) == utc(2026, 1, 1, 10, 30)  # strictly after
    assert Timing.of(cron="@daily").first_after(utc(2026, 1, 1, 10)) == utc(2026, 1, 2)


def test_cron_keeps_local_time_across_a_dst_change() -> None:
    # New York moves from UTC-5 to UTC-4 on 2026-03-08: 09:00 local is 14:00 UTC, then 13:00.
    timing = Timing.of(cron="0 9 * * *", timezone="America/New_York")
    assert walk(timing, utc(2026, 3, 6, 15), 3) == [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13)]


def test_a_wall_time_skipped_by_spring_forward_fires_once_after_the_gap() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that night.
    timing = Timing.of(cron="30 2 * * *", timezone="Europe/Berlin")
    assert walk(timing, utc(2026, 3, 27, 12), 4) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, the first instant after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_a_wall_time_repeated_by_fall_back_fires_once_for_fixed_hours() -> None:
    # Europe/Berlin, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    daily = Timing.of(cron="30 2 * * *", timezone="Europe/Berlin")
    assert walk(daily, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    ticks, following = daily.due(utc(2026, 10, 23, 0, 30), utc(2026, 10, 26, 12), 100)
    assert ticks == [
        utc(2026, 10, 23, 0, 30),
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]
    assert following == utc(2026, 10, 27, 1, 30)


def test_hourly_cron_fires_every_real_hour_of_a_25_hour_day() -> None:
    hourly = Timing.of(cron="0 * * * *", timezone="Europe/Berlin")
    # 2026-10-25 00:00 CEST is 10-24 22:00 UTC; the local day lasts 25 hours.
    first = utc(2026, 10, 24, 22)
    ticks, following = hourly.due(first, utc(2026, 10, 25, 22, 59), 100)
    assert ticks == [first + timedelta(hours=h) for h in range(25)]
    assert following == utc(2026, 10, 25, 23)


def test_interval_ticks_are_a_grid_from_the_first_tick() -> None:
    timing = Timing.of(cron=None, interval_seconds=10)
    assert timing.first_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 0, 10)
    ticks, following = timing.due(utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 45), 100)
    assert ticks == [utc(2026, 1, 1, 0, 0, s) for s in (10, 20, 30, 40)]
    assert following == utc(2026, 1, 1, 0, 0, 50)
    assert Timing.of(cron=None, interval_seconds=1.5).first_after(utc(2026, 1, 1)) == utc(2026, 1, 1) + timedelta(
        seconds=1.5
    )


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"cron": "* * *"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "*/0 * * * *"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),  # never fires
        ({"cron": "* * * * * *"}, "cron"),  # seconds are not cron's: use an interval
        ({"cron": "not a cron"}, "cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"cron": "* * * * *", "timezone": "../../etc/passwd"}, "timezone"),
        ({"cron": "* * * * *", "timezone": "Europe"}, "timezone"),  # a directory of the zone database
        ({"cron": "* * * * *", "timezone": "Z" * 300}, "timezone"),  # longer than a file name may be
        ({"cron": None, "interval_seconds": 0.5}, "interval_seconds"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds"),
        ({"cron": None, "interval_seconds": -5}, "interval_seconds"),
        ({"cron": None, "interval_seconds": 1e12}, "interval_seconds"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "cron"),  # both
        ({"cron": None}, "cron"),  # neither
    ],
)
def test_invalid_timing_names_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Timing.of(**settings)  # type: ignore[arg-type]
    assert caught.value.details["field"] == field


def test_unknown_missed_policy_names_the_field() -> None:
    assert parse_policy("run_all") is MissedPolicy.RUN_ALL
    with pytest.raises(InvalidSchedule) as caught:
        parse_policy("sometimes")
    assert caught.value.details["field"] == "missed_policy" and "run_once" in caught.value.message


# --- missed ticks ------------------------------------------------------------------------------

EVERY_MINUTE = Timing.of(cron=None, interval_seconds=60)
FIRST = utc(2026, 1, 1, 12, 1)


def test_an_on_time_tick_fires_under_every_policy() -> None:
    now = FIRST + timedelta(seconds=1)
    for policy in MissedPolicy:
        plan = plan_ticks(EVERY_MINUTE, FIRST, now, policy, grace=GRACE, cap=10)
        assert plan.fire == [FIRST] and plan.next_run_at == utc(2026, 1, 1, 12, 2), policy


def test_nothing_fires_before_the_first_tick() -> None:
    plan = plan_ticks(EVERY_MINUTE, FIRST, FIRST - timedelta(seconds=1), MissedPolicy.RUN_ALL, grace=GRACE, cap=10)
    assert plan.fire == [] and plan.next_run_at == FIRST


def test_skip_fires_only_the_latest_tick_and_only_within_the_grace() -> None:
    late = FIRST + timedelta(minutes=4, seconds=30)  # ticks 12:01 … 12:05 are due, 12:05 is 30 s late
    plan = plan_ticks(EVERY_MINUTE, FIRST, late, MissedPolicy.SKIP, grace=GRACE, cap=10)
    assert plan.fire == [utc(2026, 1, 1, 12, 5)] and plan.next_run_at == utc(2026, 1, 1, 12, 6)
    hourly = Timing.of(cron="0 * * * *")
    plan = plan_ticks(hourly, utc(2026, 1, 1, 12), utc(2026, 1, 1, 14, 5), MissedPolicy.SKIP, grace=GRACE, cap=10)
    assert plan.fire == [] and plan.next_run_at == utc(2026, 1, 1, 15)  # 14:00 is 5 minutes late


def test_run_once_fires_the_latest_tick_however_late() -> None:
    now = FIRST + timedelta(days=3, seconds=10)
    plan = plan_ticks(EVERY_MINUTE, FIRST, now, MissedPolicy.RUN_ONCE, grace=GRACE, cap=10)
    assert plan.fire == [FIRST + timedelta(days=3)] and plan.next_run_at == FIRST + timedelta(days=3, minutes=1)


def test_run_all_fires_every_missed_tick_up_to_the_cap() -> None:
    now = FIRST + timedelta(minutes=4, seconds=30)
    plan = plan_ticks(EVERY_MINUTE, FIRST, now, MissedPolicy.RUN_ALL, grace=GRACE, cap=10)
    assert plan.fire == [FIRST + timedelta(minutes=m) for m in range(5)]
    capped = plan_ticks(EVERY_MINUTE, FIRST, now, MissedPolicy.RUN_ALL, grace=GRACE, cap=3)
    assert capped.fire == [FIRST + timedelta(minutes=m) for m in (2, 3, 4)]  # the latest three
    assert capped.next_run_at == plan.next_run_at == FIRST + timedelta(minutes=5)


def test_a_year_of_missed_ticks_is_planned_without_walking_them() -> None:
    # One tick a second for a year, or a cron tick a minute: only `cap` ticks are ever computed.
    for timing in (Timing.of(cron=None, interval_seconds=1), Timing.of(cron="* * * * *")):
        first = timing.first_after(FIRST)
        plan = plan_ticks(timing, first, first + timedelta(days=365), MissedPolicy.RUN_ALL, grace=GRACE, cap=5)
        assert len(plan.fire) == 5 and plan.fire[-1] == first + timedelta(days=365)


def test_tick_keys_are_the_same_whoever_computes_them() -> None:
    tick = datetime(2026, 3, 29, 3, tzinfo=UTC)
    assert tick_key("s1", tick) == tick_key("s1", tick.astimezone(ZoneInfo("Europe/Berlin")))
    assert tick_key("s1", tick) == "schedule:s1:2026-03-29T03:00:00.000000+00:00"
    assert tick_key("s1", tick) != tick_key("s2", tick)


@pytest.mark.parametrize("seconds", [0.5, -5.313102110112887e16, 1e300, float("nan"), float("inf")])
def test_an_interval_out_of_range_is_refused_naming_the_field(seconds: float) -> None:
    # -5.3e16 came from a schemathesis run: timedelta could not hold it (a 500 before).
    with pytest.raises(InvalidSchedule, match="between 1 and") as refused:
        Timing.of(cron=None, interval_seconds=seconds)
    assert refused.value.details["field"] == "interval_seconds"
