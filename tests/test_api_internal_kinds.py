"""Job types the generic creation paths do not offer (JobType.internal): the platform's own
(webhook deliveries, reminder firings) and seed 001's, whose endpoints check who may start
them. POST /api/v1/jobs, batches and schedules answer as for an unknown type, naming the field,
and list none of them among the types they take; their own endpoints still start them."""

from __future__ import annotations

import pytest
from conftest import ApiHarness

INTERNAL = ["webhook_delivery", "backup", "medication_reminder", "medication_reminder_delivery", "refill_check"]


@pytest.mark.parametrize("kind", INTERNAL)
async def test_post_jobs_refuses_an_internal_type_as_unknown(api: ApiHarness, kind: str) -> None:
    admin = await api.key("admin", org="org-a")
    answer = await api.client.post("/api/v1/jobs", json={"type": kind, "data": {}}, headers=admin)
    assert answer.status_code == 400, answer.text
    details = answer.json()["details"]
    assert (details["code"], details["field"]) == ("INVALID_JOB_TYPE", "type")
    assert kind not in details["allowedTypes"] and "noop" in details["allowedTypes"]
    assert (await api.conveyor.engine.counts()) == {}


async def test_batches_and_schedules_refuse_internal_types_naming_the_field(api: ApiHarness) -> None:
    admin = await api.key("admin", org="org-a")
    batch = {"name": "sneaky", "jobs": [{"type": "noop", "data": {}}, {"type": "backup", "data": {}}]}
    answer = await api.client.post("/api/v1/batches", json=batch, headers=admin)
    assert answer.status_code == 400, answer.text
    assert (answer.json()["details"]["code"], answer.json()["details"]["field"]) == ("INVALID_JOB_TYPE", "jobs.1.type")
    schedule = {"name": "sneaky", "job_type": "medication_reminder_delivery", "data": {}, "cron": "* * * * *"}
    answer = await api.client.post("/api/v1/jobs/schedules", json=schedule, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "job_type"
    assert (await api.conveyor.engine.counts()) == {}
    # The typed endpoint of seed 001 still starts its job, for a role its table allows.
    body = {"backup_type": "full", "storage_config": {"type": "local", "path": "nightly"}}
    started = await api.client.post("/api/v1/jobs/backup", json=body, headers=admin)
    assert started.status_code == 202, started.text
