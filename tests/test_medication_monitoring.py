"""Seed 001's monitoring for every job type: /metrics shows per job type (and organisation)
the run count, success rate, error rate, p95 run time and retries over the alert window,
read from the database so every worker's jobs count; a medication job type failing past
the error threshold raises an alert. No label carries a person or a medicine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import TEST_ENCRYPTION, api_harness, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.model import Owner, Status

ORG_A = Owner(user_id="patient-7", org_id="org-a", created_by="nurse-1")


async def run_all(app: Conveyor, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    created = [await app.engine.enqueue(kind, data, owner=ORG_A) for kind, data in requests]
    async with running_worker(app):
        return [await app.engine.wait(job.id, timeout=30) for job in created]


async def test_metrics_show_success_error_rates_run_time_and_retries_per_job_type(database_url: str) -> None:
    async with api_harness(database_url) as api:
        done = await run_all(
            api.conveyor,
            [
                ("t.counting", {}),  # completes at once
                ("t.counting", {"fail_attempts": 1}),  # retried once, then completes
                ("t.counting", {"fail_attempts": 5}),  # retried once, then fails for good
            ],
        )
        assert [j.status for j in done] == [Status.COMPLETED, Status.COMPLETED, Status.FAILED]
        text = (await api.client.get("/metrics", headers=await api.key("operator"))).text
    labels = '{org="org-a",type="t.counting"}'
    assert f"conveyor_job_window_finished{labels} 3.0" in text
    assert f"conveyor_job_window_success_rate{labels} 0.6666666666666666" in text
    assert f"conveyor_job_window_error_rate{labels} 0.3333333333333333" in text
    assert f"conveyor_job_window_retries{labels} 2.0" in text
    [p95] = [line for line in text.splitlines() if line.startswith(f"conveyor_job_window_duration_p95_seconds{labels}")]
    assert 0 <= float(p95.split()[-1]) < 30
    assert "patient-7" not in text and "nurse-1" not in text


async def test_a_medication_job_type_failing_past_the_threshold_raises_an_alert(
    database_url: str, tmp_path: Path
) -> None:
    # interaction_check fails (permanently) while no interaction table is loaded.
    settings = make_settings(
        database_url, packs="medication", alert_min_samples=4, scheduler_enabled=False, **TEST_ENCRYPTION
    )
    app = Conveyor.from_settings(settings, registries=[jobtypes])
    await app.start()
    try:
        assert (app.alerts.rules.error_threshold, app.alerts.rules.latency_threshold_ms) == (0.01, 1000)
        check = {"user_id": "patient-7", "medications": ["warfarin", "aspirin"]}
        done = await run_all(app, [("interaction_check", check)] * 3)
        assert {j.status for j in done} == {Status.FAILED}
        assert await app.alerts.run_once() == ([], []), "3 jobs: fewer than the minimum samples"
        await run_all(app, [("interaction_check", check)])
        [alert], cleared = await app.alerts.run_once()
        assert cleared == []
        assert (alert.org_id, alert.kind, alert.metric, alert.value, alert.samples) == (
            "org-a",
            "interaction_check",
            "error_rate",
            1.0,
            4,
        )
        table = tmp_path / "pairs.csv"
        table.write_text("drug_a,drug_b,severity\nwarfarin,aspirin,major\n")
        await app.interactions.load(table, name="formulary", version="1")
        done = await run_all(app, [("interaction_check", check)] * 400)
        assert {j.status for j in done} == {Status.COMPLETED}
        _, [recovered] = await app.alerts.run_once()  # 4 failures of 404: under 0.01
        assert recovered.id == alert.id and recovered.cleared_value < 0.01
    finally:
        await app.close()
