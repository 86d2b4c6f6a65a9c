"""Sample bodies of seed 001's typed job endpoints, for the HTTP tests and the authorization
matrix: per path, a body that starts a job, bodies each refused naming one field, and the
values that are PHI (never to be found in plain text at rest, in answers or in the audit
trail)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    body: dict[str, Any]
    # (what is changed in the body, the field the 400 must name); a value None deletes the key
    invalid: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    phi: tuple[str, ...] = ()
    patient_field: str | None = "user_id"  # whom the job is for (a `user` may start it for themselves)


SCHEDULE = {"frequency": "twice daily", "times": ["08:00", "20:00"], "timezone": "Europe/Berlin"}

SAMPLES: dict[str, Sample] = {
    "medication-reminder": Sample(
        body={"user_id": "patient-4411", "medication_id": "warfarin-5mg", "schedule": SCHEDULE},
        invalid=[
            ({"user_id": None}, "user_id"),
            ({"medication_id": ""}, "medication_id"),
            ({"schedule": None}, "schedule"),
            ({"schedule": {**SCHEDULE, "times": ["08:00"]}}, "schedule.times"),
            ({"schedule": {**SCHEDULE, "times": ["8 o'clock", "20:00"]}}, "schedule.times"),
            ({"schedule": {**SCHEDULE, "frequency": "whenever"}}, "schedule.frequency"),
            ({"schedule": {**SCHEDULE, "timezone": "Nowhere/Land"}}, "schedule.timezone"),
            ({"schedule": {"frequency": "weekly", "times": ["08:00"]}}, "schedule.weekday"),
            ({"dosage": "5mg"}, "dosage"),
            ({"priority": "URGENT"}, "priority"),
        ],
        phi=("warfarin-5mg",),
    ),
    "refill-check": Sample(
        body={"user_id": "patient-4411", "medication_id": "warfarin-5mg", "current_supply": 12},
        invalid=[
            ({"user_id": None}, "user_id"),
            ({"medication_id": None}, "medication_id"),
            ({"current_supply": -1}, "current_supply"),
            ({"current_supply": 5001}, "current_supply"),  # over the 5,000 doses a projection walks
            ({"current_supply": "plenty"}, "current_supply"),
            ({"current_supply": None}, "current_supply"),
            ({"priority": 3}, "priority"),
        ],
        phi=("warfarin-5mg",),
    ),
    "supply-monitor": Sample(
        body={"user_id": "patient-4411", "medications": ["warfarin-5mg", "metoprolol-25mg"]},
        invalid=[
            ({"user_id": None}, "user_id"),
            ({"medications": []}, "medications"),
            ({"medications": "warfarin-5mg"}, "medications"),
            ({"medications": [""]}, "medications.0"),
        ],
        phi=("warfarin-5mg", "metoprolol-25mg"),
    ),
    "interaction-check": Sample(
        body={"user_id": "patient-4411", "medications": ["Warfarin", "Aspirin"]},
        invalid=[
            ({"user_id": None}, "user_id"),
            ({"medications": ["Warfarin"]}, "medications"),
            ({"medications": "Warfarin"}, "medications"),
            ({"medications": ["Warfarin", ""]}, "medications.1"),
            ({"priority": "SOON"}, "priority"),
        ],
        phi=("Warfarin", "Aspirin"),
    ),
    "analytics-roll-up": Sample(
        body={
            "time_range": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
            "metrics_types": ["reminders_sent", "job_success_rate"],
        },
        invalid=[
            ({"time_range": None}, "time_range"),
            ({"time_range": {"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}}, "time_range"),
            ({"time_range": {"start": "yesterday", "end": "2026-12-01T00:00:00Z"}}, "time_range.start"),
            ({"metrics_types": []}, "metrics_types"),
            ({"metrics_types": ["happiness"]}, "metrics_types.0"),
        ],
        patient_field=None,
    ),
    "backup": Sample(
        body={"backup_type": "full", "storage_config": {"type": "local", "path": "nightly"}},
        invalid=[
            ({"backup_type": "incremental"}, "backup_type"),
            ({"storage_config": {"type": "s3", "path": "nightly"}}, "storage_config.type"),
            ({"storage_config": {"type": "local", "path": "../escape"}}, "storage_config.path"),
            ({"storage_config": None}, "storage_config"),
        ],
        patient_field=None,
    ),
}


def changed(body: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = {**body, **change}
    return {k: v for k, v in out.items() if v is not None}
