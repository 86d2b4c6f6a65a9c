"""`refill_check` and `supply_monitor`: a medication's supply against its reminder schedule.

refill_check records the supply (doses on hand, now) and computes, from the reminder's
schedule: doses per day (doses over the next 28 days / 28), days of supply (supply / doses
per day), the run-out date (the local date of the first scheduled dose the supply does not
cover) and whether a refill is due (days of supply at or under the refill window,
CONVEYOR_MEDICATION_REFILL_WINDOW_DAYS, default 7). A due refill writes one `refill_due`
notification to the patient (with its webhook event).

supply_monitor projects, for each medication named, the supply left now: the last recorded
supply less the doses scheduled since it was recorded (the schedule's fire times in
between), and flags those at or under the window. Medications without a recorded supply or
without a reminder schedule are reported as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor import Registry
from conveyor.context import Context
from conveyor.model import Priority, utc_now
from conveyor.packs.medication import records
from conveyor.packs.medication.regimen import MAX_WALK, Regimen

jobtypes = Registry()

REFILL_KIND = "refill_check"
SUPPLY_KIND = "supply_monitor"
REFILL_NOTIFICATION = "refill_due"


class RefillCheckInput(BaseModel):
    """Seed 001's refill-check body."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"user_id": "patient-4411", "medication_id": "med-0042", "current_supply": 12}]
        },
    )

    user_id: str = Field(min_length=1, max_length=200, description="the patient")
    medication_id: str = Field(min_length=1, max_length=200)
    current_supply: float = Field(ge=0, le=MAX_WALK, allow_inf_nan=False, description="doses on hand")


MedicationId = Annotated[str, Field(min_length=1, max_length=200)]


class SupplyMonitorInput(BaseModel):
    """Seed 001's supply-monitor body."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"user_id": "patient-4411", "medications": ["med-0042", "med-0077"]}]},
    )

    user_id: str = Field(min_length=1, max_length=200, description="the patient")
    medications: list[MedicationId] = Field(min_length=1, max_length=100, description="medication ids")


@dataclass(frozen=True, slots=True)
class Projection:
    supply: float
    doses_per_day: float
    days_of_supply: float | None
    run_out_date: str | None
    refill_due: bool


def project(regimen: Regimen, supply: float, now: datetime, window_days: float) -> Projection:
    """What `supply` doses on hand at `now` last, on `regimen`."""
    per_day = regimen.doses_per_day(now)
    if per_day == 0:
        return Projection(supply, 0.0, None, None, False)
    days = supply / per_day
    run_out = regimen.local_date(regimen.first_uncovered(supply, now))
    return Projection(supply, round(per_day, 4), round(days, 2), run_out.isoformat(), days <= window_days)


def remaining(regimen: Regimen, recorded: float, recorded_at: datetime, now: datetime) -> tuple[float, int]:
    """The supply left at `now` of `recorded` doses at `recorded_at`, and the doses taken since."""
    taken = len(regimen.doses_between(recorded_at, now))
    return max(0.0, recorded - taken), taken


def _regimen_of(entry: dict[str, Any]) -> Regimen | None:
    reminder = entry.get("reminder") or {}
    return Regimen.from_json(reminder["regimen"]) if reminder.get("regimen") else None


@jobtypes.job_type(REFILL_KIND, priority=Priority.HIGH, sensitive=True, internal=True)
async def refill_check(ctx: Context, data: RefillCheckInput) -> dict[str, Any]:
    now = utc_now()
    window = records.refill_window_days()
    found: dict[str, Any] = {}

    def record(patient: Any) -> dict[str, Any]:
        meds = records.medications(patient)
        entry = dict(meds.get(data.medication_id) or {})
        entry["supply"] = {"doses": data.current_supply, "recorded_at": now.isoformat()}
        meds[data.medication_id] = entry
        found.clear()
        found.update(entry)
        return {**(patient or {}), "medications": meds}

    await records.state(ctx).update(records.patient_key(data.user_id), record)
    result: dict[str, Any] = {
        "medication_id": data.medication_id,
        "current_supply": data.current_supply,
        "recorded_at": now.isoformat(),
        "refill_window_days": window,
    }
    regimen = _regimen_of(found)
    if regimen is None:
        ctx.info("supply recorded; no reminder schedule to project it against")
        return {**result, "schedule": "none", "doses_per_day": None, "days_of_supply": None,
                "run_out_date": None, "refill_due": None}  # fmt: skip
    p = project(regimen, data.current_supply, now, window)
    result |= {
        "schedule": "reminder",
        "doses_per_day": p.doses_per_day,
        "days_of_supply": p.days_of_supply,
        "run_out_date": p.run_out_date,
        "refill_due": p.refill_due,
    }
    if p.refill_due:
        ctx.count("refills_due")
        notification, _created = await ctx.service("notifications").notify(
            owner=ctx.owner,
            user_id=data.user_id,
            kind=REFILL_NOTIFICATION,
            body={k: result[k] for k in ("medication_id", "current_supply", "days_of_supply", "run_out_date")},
            delivery_key=f"refill:{ctx.job_id}",
            job_id=ctx.job_id,
        )
        result["notification_id"] = str(notification.id)
    ctx.info(f"supply recorded; refill due: {p.refill_due}")
    return result


@jobtypes.job_type(SUPPLY_KIND, priority=Priority.MEDIUM, sensitive=True, internal=True)
async def supply_monitor(ctx: Context, data: SupplyMonitorInput) -> dict[str, Any]:
    now = utc_now()
    window = records.refill_window_days()
    patient = await records.state(ctx).get(records.patient_key(data.user_id))
    meds = records.medications(patient.value if patient else None)
    report: list[dict[str, Any]] = []
    unknown: list[dict[str, str]] = []
    for n, medication_id in enumerate(dict.fromkeys(data.medications), start=1):
        ctx.progress(processed=n, total=len(data.medications))
        entry = meds.get(medication_id) or {}
        supply = entry.get("supply")
        regimen = _regimen_of(entry)
        if supply is None or regimen is None:
            reason = "no supply recorded" if supply is None else "no reminder schedule"
            unknown.append({"medication_id": medication_id, "reason": reason})
            continue
        recorded_at = datetime.fromisoformat(supply["recorded_at"])
        left, taken = remaining(regimen, float(supply["doses"]), recorded_at, now)
        p = project(regimen, left, now, window)
        report.append(
            {
                "medication_id": medication_id,
                "recorded_supply": supply["doses"],
                "recorded_at": supply["recorded_at"],
                "doses_since": taken,
                "remaining": left,
                "doses_per_day": p.doses_per_day,
                "days_of_supply": p.days_of_supply,
                "run_out_date": p.run_out_date,
                "below_window": p.refill_due,
            }
        )
    ctx.info(f"projected {len(report)} medication(s), {len(unknown)} unknown")
    return {
        "as_of": now.isoformat(),
        "refill_window_days": window,
        "medications": report,
        "flagged": [r["medication_id"] for r in report if r["below_window"]],
        "unknown": unknown,
    }
