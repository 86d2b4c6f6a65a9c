"""Alerts on both databases: per organisation and job type over the window, an error rate or a
p95 run time above its threshold raises an alert (a row, an alert.raised event in the outbox,
a log line) once, and a window back under the threshold clears it (alert.cleared); too few
samples change nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.engine import JobRequest
from conveyor.model import Owner
from conveyor.runtime import alert_rules_of
from conveyor.settings import Settings
from conveyor.store.alerts import percentile

ORG_A = Owner(user_id="u1", org_id="org-a", created_by="u1")
ORG_B = Owner(user_id="u2", org_id="org-b", created_by="u2")


async def make_app(database_url: str, **settings: Any) -> Conveyor:
    # No scheduler in the tests' workers: the tests run the leader's chores themselves.
    base = {"alert_min_samples": 4, "webhook_allow_hosts": "127.0.0.1", "scheduler_enabled": False}
    app = Conveyor.from_settings(make_settings(database_url, **{**base, **settings}), registries=[jobtypes])
    await app.start()
    return app


@pytest.fixture
async def errors_app(database_url: str) -> AsyncIterator[Conveyor]:
    app = await make_app(database_url, alert_error_threshold=0.5, alert_latency_threshold_ms=60_000)
    yield app
    await app.close()


async def run(app: Conveyor, n: int, *, owner: Owner = ORG_A, fail: bool = False, seconds: float = 0) -> None:
    data = {"group": "alerts", "fail": fail, "seconds": seconds}
    jobs = await app.engine.enqueue_many([JobRequest("t.tracked", data, owner=owner) for _ in range(n)])
    async with running_worker(app, concurrency=20):
        for job in jobs:
            await app.engine.wait(job.id, timeout=30)


def test_the_defaults_are_seed_001s() -> None:
    rules = alert_rules_of(Settings(database_url="sqlite:///x.db"))
    assert (rules.error_threshold, rules.latency_threshold_ms) == (0.01, 1000)
    assert rules.window.total_seconds() == 300 and rules.min_samples == 20


def test_p95_interpolates_as_postgresql_does() -> None:
    assert percentile([], 0.95) is None
    assert percentile([5.0], 0.95) == 5.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == pytest.approx(95.05)


async def test_an_error_rate_alert_raises_once_and_clears_on_recovery(
    errors_app: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    app = errors_app
    await app.webhooks.create(org_id="org-a", url="http://127.0.0.1:9/x", events=["alert.raised", "alert.cleared"])
    await run(app, 3, fail=True)
    assert await app.alerts.run_once() == ([], []), "3 jobs: fewer than the minimum samples"

    await run(app, 1, fail=True)
    with caplog.at_level(logging.WARNING, logger="conveyor.alerts"):
        raised, cleared = await app.alerts.run_once()
    [alert] = raised
    assert (alert.org_id, alert.kind, alert.metric, alert.value, alert.samples) == (
        "org-a",
        "t.tracked",
        "error_rate",
        1.0,
        4,
    )
    assert cleared == [] and alert.active
    assert any("alert raised: error_rate of job type t.tracked" in r.getMessage() for r in caplog.records)
    assert await app.alerts.run_once() == ([], []), "an active alert is not raised again"
    [event] = await app.store.webhook_events_page(10)
    assert event.event_type == "alert.raised" and event.org_id == "org-a"
    assert event.payload["id"] == str(alert.id) and event.payload["jobType"] == "t.tracked"
    await app.store.delete_webhook_events([event.id])

    await run(app, 6)  # 4 failures of 10: 0.4, under 0.5
    raised, [done] = await app.alerts.run_once()
    assert raised == [] and done.id == alert.id and done.cleared_value == pytest.approx(0.4)
    [event] = await app.store.webhook_events_page(10)
    assert event.event_type == "alert.cleared" and event.payload["status"] == "cleared"
    listed, total = await app.alerts.list(visible_to=None, active=None, limit=10, offset=0)
    assert total == 1 and listed[0].cleared_at is not None


async def test_alerts_are_per_organisation(errors_app: Conveyor) -> None:
    await run(errors_app, 4, fail=True, owner=ORG_B)
    await run(errors_app, 4, owner=ORG_A)
    [alert], _ = await errors_app.alerts.run_once()
    assert alert.org_id == "org-b"


async def test_a_latency_alert_raises_and_clears(database_url: str) -> None:
    # Run time is claim to recorded outcome: a job of no work still waits for its turn among
    # the jobs claimed with it and for the completer's flush (here up to ~0.7 s on SQLite).
    app = await make_app(database_url, alert_error_threshold=1.0, alert_latency_threshold_ms=1500)
    try:
        await run(app, 4, seconds=2.5)
        [alert], _ = await app.alerts.run_once()
        assert alert.metric == "latency_p95_ms" and alert.value >= 2500 and alert.threshold == 1500
        await run(app, 100)  # four slow of 104: the 95th percentile is a fast one
        _, [cleared] = await app.alerts.run_once()
        assert cleared.id == alert.id and cleared.cleared_value < 1500
    finally:
        await app.close()
