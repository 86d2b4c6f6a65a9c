"""Where the pack keeps a patient's regimen between jobs: the pack state (ctx.state) of the
job's organisation, namespace `medication`.

- `patient:<user_id>`: {"medications": {<medication_id>: {"reminder": {...}, "supply": {...}}}}
  — the reminder's id, schedule ids and cron expressions; the last recorded supply and when;
- `reminder:<reminder id>`: {"user_id", "medication_id", "schedule_ids"} — what a firing
  looks up (its schedule's data names the reminder id alone, so no schedule holds PHI).

Keys are stored in clear (values sealed): they carry opaque ids only, never a medication.
"""

from __future__ import annotations

from typing import Any

from conveyor.context import Context
from conveyor.engine.packstate import StateNamespace
from conveyor.settings import Settings

NAMESPACE = "medication"


def state(ctx: Context) -> StateNamespace:
    return ctx.state(NAMESPACE)


def patient_key(user_id: str) -> str:
    return f"patient:{user_id}"


def reminder_key(reminder_id: str) -> str:
    return f"reminder:{reminder_id}"


def medications(patient: Any) -> dict[str, Any]:
    return dict((patient or {}).get("medications") or {})


def refill_window_days() -> float:
    """CONVEYOR_MEDICATION_REFILL_WINDOW_DAYS (default 7), read when a job runs."""
    return Settings().medication_refill_window_days
