"""The medication pack's supply arithmetic against hand-computed cases (injected clock), then
refill_check and supply_monitor as jobs over the state reminders leave, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import NO_SIGNATURES, TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.model import Job, Owner
from conveyor.packs.medication.regimen import Regimen, ReminderSchedule
from conveyor.packs.medication.supply import project, remaining


def regimen(frequency: str, times: list[str], timezone: str = "UTC", **extra: Any) -> Regimen:
    return Regimen.of(ReminderSchedule(frequency=frequency, times=times, timezone=timezone, **extra))


TWICE_UTC = regimen("twice daily", ["08:00", "20:00"])
MON = datetime(2027, 1, 4, 10, tzinfo=UTC)  # a Monday, 10:00 UTC


@pytest.mark.parametrize(
    ("plan", "supply", "now", "per_day", "days", "run_out", "due"),
    [
        # doses left today 20:00 (1), 5th-8th: 2 a day, 9th Jan 8 20:00; the 10th, Jan 9 08:00, is not covered
        (TWICE_UTC, 9, MON, 2.0, 4.5, "2027-01-09", True),
        # 08:00 Berlin (07:00 UTC) from Jan 1: the 30 doses cover Jan 1-30
        (
            regimen("daily", ["08:00"], "Europe/Berlin"),
            30,
            datetime(2027, 1, 1, tzinfo=UTC),
            1.0,
            30.0,
            "2027-01-31",
            False,
        ),
        # Mondays 09:00, just after this week's: 4 doses in 28 days; Jan 11 and 18 covered, Jan 25 not
        (
            regimen("weekly", ["09:00"], weekday="monday"),
            2,
            datetime(2027, 1, 4, 12, tzinfo=UTC),
            0.1429,
            14.0,
            "2027-01-25",
            False,
        ),
        # 06:00, 14:00, 22:00: nothing on hand, the next dose (Jan 5 06:00) is the first missed
        (regimen("every 8 hours", ["06:00"]), 0, datetime(2027, 1, 4, 23, tzinfo=UTC), 3.0, 0.0, "2027-01-05", True),
        # the window's edge: 7 days of supply is due, 8 is not; half a dose covers nothing
        (regimen("daily", ["08:00"]), 7, MON, 1.0, 7.0, "2027-01-12", True),
        (regimen("daily", ["08:00"]), 8, MON, 1.0, 8.0, "2027-01-13", False),
        (regimen("daily", ["08:00"]), 2.5, MON, 1.0, 2.5, "2027-01-07", True),
        # weekdays at 09:00 by cron, from Saturday: Mon Jan 4 ... the 6th dose is Mon Jan 11
        (regimen("0 9 * * 1-5", []), 5, datetime(2027, 1, 2, tzinfo=UTC), 0.7143, 7.0, "2027-01-11", True),
    ],
)
def test_projection_matches_the_hand_computed_case(
    plan: Regimen, supply: float, now: datetime, per_day: float, days: float, run_out: str, due: bool
) -> None:
    p = project(plan, supply, now, window_days=7)
    assert (p.doses_per_day, p.days_of_supply, p.run_out_date, p.refill_due) == (per_day, days, run_out, due)


def test_remaining_supply_counts_the_doses_scheduled_since_the_record() -> None:
    recorded_at, now = datetime(2027, 1, 4, 9, tzinfo=UTC), datetime(2027, 1, 6, 21, tzinfo=UTC)
    # Jan 4 20:00; Jan 5 08:00, 20:00; Jan 6 08:00, 20:00
    assert remaining(TWICE_UTC, 10, recorded_at, now) == (5, 5)
    assert remaining(TWICE_UTC, 3, recorded_at, now) == (0, 5)  # never below nothing
    # 08:00 Berlin across clocks going forward (Mar 28): Mar 27, 28, 29, 30, each once
    berlin = regimen("daily", ["08:00"], "Europe/Berlin")
    spring = remaining(berlin, 10, datetime(2027, 3, 27, tzinfo=UTC), datetime(2027, 3, 30, 12, tzinfo=UTC))
    assert spring == (6, 4)


NURSE = Owner(user_id="nurse-1", org_id="org-a")
MEDICATION = "metformin-500"


@pytest.fixture
async def clinic(database_url: str) -> Any:
    app = Conveyor.from_settings(make_settings(database_url, **TEST_ENCRYPTION, **NO_SIGNATURES), registries=[jobtypes])
    await app.start()
    yield app
    await app.close()


async def run(app: Conveyor, kind: str, data: dict[str, Any], owner: Owner = NURSE) -> Job:
    job = await app.engine.enqueue(kind, data, owner=owner)
    async with running_worker(app, scheduler=None):
        done = await app.engine.wait(job.id, timeout=30)
    assert done.status.value == "completed", done.error
    return done


async def remind(app: Conveyor, medication: str = MEDICATION, user: str = "patient-3") -> None:
    schedule = {"frequency": "twice daily", "times": ["08:00", "20:00"], "timezone": "America/New_York"}
    await run(app, "medication_reminder", {"user_id": user, "medication_id": medication, "schedule": schedule})


async def test_refill_check_records_supply_and_alerts_when_due(clinic: Conveyor) -> None:
    await remind(clinic)
    due = await run(clinic, "refill_check", {"user_id": "patient-3", "medication_id": MEDICATION, "current_supply": 9})
    recorded_at = datetime.fromisoformat(due.result["recorded_at"])
    plan = regimen("twice daily", ["08:00", "20:00"], "America/New_York")
    expected = project(plan, 9, recorded_at, 7)
    assert due.result["doses_per_day"] == 2.0 and due.result["days_of_supply"] == 4.5
    assert (due.result["run_out_date"], due.result["refill_due"]) == (expected.run_out_date, True)
    [note], _ = await clinic.notifications.list(visible_to=None, kind="refill_due")
    assert note.user_id == "patient-3" and note.job_id == due.id
    assert note.body == {"medication_id": MEDICATION, "current_supply": 9.0, "days_of_supply": 4.5,
                         "run_out_date": expected.run_out_date}  # fmt: skip
    plenty = await run(
        clinic, "refill_check", {"user_id": "patient-3", "medication_id": MEDICATION, "current_supply": 60}
    )
    assert plenty.result["days_of_supply"] == 30.0 and plenty.result["refill_due"] is False
    assert "notification_id" not in plenty.result
    assert (await clinic.notifications.list(visible_to=None, kind="refill_due"))[1] == 1
    # The due check counted itself for analytics_roll_up's refills_due; the other did not.
    week = (recorded_at - timedelta(days=1), recorded_at + timedelta(days=1))
    [counted] = await clinic.store.counter_sums(due.owner.org_id, *week, ["refills_due"])
    assert (counted.kind, counted.total, counted.jobs) == ("refill_check", 1, 1)


async def test_the_refill_window_is_a_setting(clinic: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_MEDICATION_REFILL_WINDOW_DAYS", "3")
    await remind(clinic)
    done = await run(clinic, "refill_check", {"user_id": "patient-3", "medication_id": MEDICATION, "current_supply": 9})
    assert (done.result["refill_window_days"], done.result["days_of_supply"], done.result["refill_due"]) == (
        3.0, 4.5, False
    )  # fmt: skip


async def test_refill_check_without_a_schedule_records_the_supply_only(clinic: Conveyor) -> None:
    done = await run(clinic, "refill_check", {"user_id": "patient-3", "medication_id": "unknown", "current_supply": 4})
    assert done.result["schedule"] == "none" and done.result["refill_due"] is None


async def test_supply_monitor_projects_flags_and_reports_the_unknown(clinic: Conveyor) -> None:
    await remind(clinic, "low-one")
    await remind(clinic, "plenty")
    await remind(clinic, "unrecorded")
    for medication, supply in (("low-one", 6), ("plenty", 100), ("no-schedule", 5)):
        data = {"user_id": "patient-3", "medication_id": medication, "current_supply": supply}
        await run(clinic, "refill_check", data)
    names = ["low-one", "plenty", "unrecorded", "no-schedule", "never-heard-of"]
    report = await run(clinic, "supply_monitor", {"user_id": "patient-3", "medications": names})
    result = report.result
    assert result["flagged"] == ["low-one"]
    assert [(r["medication_id"], r["remaining"], r["days_of_supply"]) for r in result["medications"]] == [
        ("low-one", 6.0, 3.0), ("plenty", 100.0, 50.0)
    ]  # fmt: skip
    assert result["unknown"] == [
        {"medication_id": "unrecorded", "reason": "no supply recorded"},
        {"medication_id": "no-schedule", "reason": "no reminder schedule"},
        {"medication_id": "never-heard-of", "reason": "no supply recorded"},
    ]
    # Another organisation's monitor sees none of it.
    other = await run(clinic, "supply_monitor", {"user_id": "patient-3", "medications": ["low-one"]},
                      owner=Owner(user_id="x", org_id="org-b"))  # fmt: skip
    assert other.result["medications"] == [] and other.result["flagged"] == []
