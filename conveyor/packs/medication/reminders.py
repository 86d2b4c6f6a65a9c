"""`medication_reminder`: creates or replaces one medication's reminder schedule; and
`medication_reminder_delivery`, the job each firing of it runs.

A reminder is one core schedule per time of day (conveyor.engine.schedules: cron in the
patient's time zone), each tick's job made once whatever the number of schedulers (its
idempotency key is the tick's). The delivery job writes one notification to the patient,
with its `notification.created` webhook event, under the tick's key: a retried attempt finds
it written and writes nothing more. Replacing a reminder deletes the old schedules; a firing
of a replaced (or orphaned) schedule finds its reminder gone and delivers nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from conveyor import Registry
from conveyor.context import Context
from conveyor.cron import tick_of
from conveyor.engine.schedules import Schedules, ScheduleSpec
from conveyor.errors import PermanentError, ScheduleNotFound
from conveyor.model import Priority, utc_now
from conveyor.packs.medication import records
from conveyor.packs.medication.regimen import Regimen, ReminderSchedule

jobtypes = Registry()

REMINDER_KIND = "medication_reminder"
DELIVERY_KIND = "medication_reminder_delivery"
NOTIFICATION_KIND = "medication_reminder"


class MedicationReminderInput(BaseModel):
    """Seed 001's medication-reminder body."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "user_id": "patient-4411",
                    "medication_id": "med-0042",
                    "schedule": {"frequency": "twice daily", "times": ["08:00", "20:00"], "timezone": "Europe/Berlin"},
                }
            ]
        },
    )

    user_id: str = Field(min_length=1, max_length=200, description="the patient")
    medication_id: str = Field(min_length=1, max_length=200)
    schedule: ReminderSchedule


class ReminderDeliveryInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reminder_id: str = Field(min_length=1, max_length=64)


def _schedules(ctx: Context) -> Schedules:
    try:
        return ctx.service("schedules")  # type: ignore[no-any-return]
    except LookupError as exc:
        raise PermanentError(str(exc)) from None


@jobtypes.job_type(REMINDER_KIND, priority=Priority.HIGH, sensitive=True, internal=True)
async def medication_reminder(ctx: Context, data: MedicationReminderInput) -> dict[str, Any]:
    schedules = _schedules(ctx)
    state = records.state(ctx)
    regimen = Regimen.of(data.schedule)
    # One id per job: a retried attempt reuses the reminder its first attempt began.
    reminder_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"conveyor:medication_reminder:{ctx.job_id}"))
    key = records.reminder_key(reminder_id)
    begun = await state.get(key)
    schedule_ids: list[str] = list((begun.value if begun else {}).get("schedule_ids") or [])
    reminder = {"user_id": data.user_id, "medication_id": data.medication_id, "schedule_ids": schedule_ids}
    await state.put(key, reminder)
    for n, cron in enumerate(regimen.crons[len(schedule_ids) :], start=len(schedule_ids) + 1):
        spec = ScheduleSpec(
            name=f"medication reminder {reminder_id[:8]} #{n}",  # no PHI: schedules are not sealed
            job_type=DELIVERY_KIND,
            data={"reminder_id": reminder_id},
            cron=cron,
            timezone=regimen.timezone,
            priority=Priority.HIGH,
        )
        made = await schedules.create(spec, owner=ctx.owner)
        schedule_ids.append(made.id)
        await state.put(key, reminder)  # recorded at once: a retry does not make it twice
    ctx.progress(step=1, total_steps=2, step_name="schedules created")

    replaced: dict[str, Any] = {}

    def attach(patient: Any) -> dict[str, Any]:
        meds = records.medications(patient)
        entry = dict(meds.get(data.medication_id) or {})
        old = entry.get("reminder") or {}
        replaced.clear()
        if old.get("id") and old["id"] != reminder_id:
            replaced.update(old)
        entry["reminder"] = {
            "id": reminder_id,
            "schedule_ids": schedule_ids,
            "regimen": regimen.to_json(),
            "schedule": data.schedule.model_dump(mode="json"),
            "updated_at": utc_now().isoformat(),
        }
        meds[data.medication_id] = entry
        return {**(patient or {}), "medications": meds}

    await state.update(records.patient_key(data.user_id), attach)
    for schedule_id in replaced.get("schedule_ids") or []:
        with contextlib.suppress(ScheduleNotFound):  # deleted by an earlier attempt
            await schedules.delete(schedule_id)
    if replaced.get("id"):
        await state.delete(records.reminder_key(replaced["id"]))
    ctx.progress(step=2, total_steps=2, step_name="reminder recorded")
    now = utc_now()
    upcoming = regimen.doses_between(now, now + timedelta(days=7))[:1]
    ctx.info(f"reminder set: {len(schedule_ids)} schedule(s), replacing {len(replaced.get('schedule_ids') or [])}")
    return {
        "reminder_id": reminder_id,
        "medication_id": data.medication_id,
        "schedule_ids": schedule_ids,
        "crons": list(regimen.crons),
        "timezone": regimen.timezone,
        "doses_per_day": round(regimen.doses_per_day(now), 4),
        "next_dose_at": upcoming[0].isoformat() if upcoming else None,
        "replaced": bool(replaced),
    }


@jobtypes.job_type(DELIVERY_KIND, priority=Priority.HIGH, sensitive=True, internal=True)
async def medication_reminder_delivery(ctx: Context, data: ReminderDeliveryInput) -> dict[str, Any]:
    """One firing of a reminder: one notification and its webhook event, once."""
    reminder = await records.state(ctx).get(records.reminder_key(data.reminder_id))
    schedule_id = ctx.job.schedule_id
    if reminder is None or (schedule_id is not None and schedule_id not in reminder.value.get("schedule_ids", [])):
        ctx.info("the reminder was replaced or removed: nothing delivered")
        return {"delivered": False, "reason": "reminder replaced or removed"}
    value = reminder.value
    due = tick_of(ctx.job.idempotency_key, schedule_id) or ctx.job.created_at
    patient = await records.state(ctx).get(records.patient_key(value["user_id"]))
    entry = records.medications(patient.value if patient else None).get(value["medication_id"]) or {}
    timezone = ((entry.get("reminder") or {}).get("regimen") or {}).get("timezone", "UTC")
    local = due.astimezone(ZoneInfo(timezone))
    notifications = ctx.service("notifications")
    notification, created = await notifications.notify(
        owner=ctx.owner,
        user_id=value["user_id"],
        kind=NOTIFICATION_KIND,
        body={
            "medication_id": value["medication_id"],
            "reminder_id": data.reminder_id,
            "due_at": due.isoformat(),
            "local_time": local.strftime("%H:%M"),
            "local_date": local.date().isoformat(),
            "timezone": timezone,
        },
        delivery_key=ctx.job.idempotency_key or f"job:{ctx.job_id}",
        job_id=ctx.job_id,
    )
    ctx.count("reminders_sent")  # once: only the attempt that finishes the job writes its counters
    return {"delivered": True, "notification_id": str(notification.id), "created": created}
