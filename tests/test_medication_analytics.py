"""analytics_roll_up (seed 001) on both databases, against hand-computed figures: job
counters summed, and per job type the success rate, run times (mean, p50, p95) and retries
of the organisation's jobs that finished in [start, end); nothing of another organisation or
outside the range; the report is the job's result, sealed at rest; the input is refused
naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from conftest import TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import Echo, jobtypes

from conveyor import Context, Conveyor, InvalidJobData, Registry
from conveyor.model import Owner, Status
from conveyor.store.schema import job_counters, jobs

ORG_A = Owner(user_id="analyst-1", org_id="org-a", created_by="analyst-1")
ORG_B = Owner(user_id="analyst-2", org_id="org-b", created_by="analyst-2")
DAY = datetime(2026, 1, 1, tzinfo=UTC)
RANGE = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
ALL = ["reminders_sent", "refills_due", "interactions_found", "job_success_rate", "execution_time", "retry_count"]


# The job types of the history below: stored as themselves, so that only the columns a run
# changes are rewritten (and the roll-ups, which count a status change, stay right).
history_kinds = Registry()


async def _never_run(ctx: Context, data: Echo) -> None:
    raise AssertionError("the history's jobs are made finished, not run")


for _kind in ("k.one", "k.two"):
    history_kinds.job_type(_kind)(_never_run)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Conveyor]:
    settings = make_settings(database_url, packs="medication", **TEST_ENCRYPTION)
    conveyor = Conveyor.from_settings(settings, registries=[jobtypes, history_kinds])
    await conveyor.start()
    yield conveyor
    await conveyor.close()


async def finished_job(
    app: Conveyor,
    kind: str,
    status: str,
    *,
    at: datetime | None,
    ms: float | None,
    attempt: int = 1,
    owner: Owner = ORG_A,
) -> UUID:
    """A job as if it had run: of `kind`, finished with `status` at `at` after `ms` of running."""
    job = await app.engine.enqueue(kind, {}, owner=owner)
    started = at - timedelta(milliseconds=ms) if at is not None and ms is not None else None
    values = {"status": status, "attempt": attempt, "started_at": started, "completed_at": at}
    if status == "scheduled":
        values["run_at"] = DAY + timedelta(days=3650)
    async with app.store._write() as conn:
        await conn.execute(jobs.update().where(jobs.c.id == job.id).values(**values))
    return job.id


async def counter(app: Conveyor, job_id: UUID, kind: str, name: str, value: float, at: datetime, org: str) -> None:
    async with app.store._write() as conn:
        row = {"job_id": job_id, "org_id": org, "kind": kind, "name": name, "value": value, "attempt": 1}
        await conn.execute(job_counters.insert().values(**row, recorded_at=at))


async def history(app: Conveyor) -> None:
    h = timedelta(hours=1)
    a = await finished_job(app, "k.one", "completed", at=DAY + h, ms=100)
    b = await finished_job(app, "k.one", "completed", at=DAY + 2 * h, ms=200, attempt=2)
    await finished_job(app, "k.one", "completed", at=DAY + 3 * h, ms=300)
    await finished_job(app, "k.one", "failed", at=DAY + 4 * h, ms=400, attempt=3)
    e = await finished_job(app, "k.two", "completed", at=DAY + 5 * h, ms=1000)
    await finished_job(app, "k.two", "timeout", at=DAY + 6 * h, ms=3000)
    await finished_job(app, "k.two", "cancelled", at=DAY + 7 * h, ms=None, attempt=0)
    # Outside the range or the organisation, or not finished:
    end = await finished_job(app, "k.one", "completed", at=DAY + 24 * h, ms=5000)
    before = await finished_job(app, "k.one", "failed", at=DAY - timedelta(milliseconds=1), ms=5000, attempt=4)
    other = await finished_job(app, "k.one", "failed", at=DAY + h, ms=50, owner=ORG_B)
    await finished_job(app, "k.one", "scheduled", at=None, ms=None)
    await counter(app, a, "k.one", "reminders_sent", 3, DAY + h, "org-a")
    await counter(app, e, "k.two", "reminders_sent", 2, DAY + 5 * h, "org-a")
    await counter(app, b, "k.one", "refills_due", 1.5, DAY + 2 * h, "org-a")
    await counter(app, before, "k.one", "reminders_sent", 7, DAY - h, "org-a")
    await counter(app, end, "k.one", "reminders_sent", 11, DAY + 24 * h, "org-a")
    await counter(app, other, "k.one", "reminders_sent", 100, DAY + h, "org-b")


async def roll_up(app: Conveyor, metrics: list[str], owner: Owner = ORG_A, time_range: Any = None) -> Any:
    data = {"time_range": time_range or RANGE, "metrics_types": metrics}
    job = await app.engine.enqueue("analytics_roll_up", data, owner=owner)
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=30)
    assert done.status is Status.COMPLETED, done.error
    return done


async def test_a_roll_up_matches_the_hand_computed_report(app: Conveyor) -> None:
    await history(app)
    done = await roll_up(app, ALL)
    report = done.result
    assert report["organisation"] == "org-a"
    assert report["time_range"] == {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    metrics = report["metrics"]
    assert list(metrics) == ALL, "in the order asked"
    assert metrics["reminders_sent"] == {"total": 5, "jobs": 2, "by_job_type": {"k.one": 3, "k.two": 2}}
    assert metrics["refills_due"] == {"total": 1.5, "jobs": 1, "by_job_type": {"k.one": 1.5}}
    assert metrics["interactions_found"] == {"total": 0, "jobs": 0, "by_job_type": {}}

    success = metrics["job_success_rate"]
    assert success["ran"] == 6 and success["success_rate"] == pytest.approx(4 / 6)
    assert success["by_job_type"]["k.one"] == {
        "success_rate": 0.75, "error_rate": 0.25, "ran": 4, "completed": 3, "failed": 1, "timeout": 0, "cancelled": 0,
    }  # fmt: skip
    assert success["by_job_type"]["k.two"] == {
        "success_rate": 0.5, "error_rate": 0.5, "ran": 2, "completed": 1, "failed": 0, "timeout": 1, "cancelled": 1,
    }  # fmt: skip

    times = metrics["execution_time"]["by_job_type"]
    assert set(times) == {"k.one", "k.two"}
    # k.one: 100, 200, 300, 400 ms. p50 at rank 1.5, p95 at rank 2.85 (linear between closest ranks).
    assert times["k.one"]["jobs"] == 4
    for name, expected in (("mean_ms", 250), ("p50_ms", 250), ("p95_ms", 385)):
        assert times["k.one"][name] == pytest.approx(expected, abs=0.05), name
    # k.two: 1,000 and 3,000 ms (the cancelled job never ran).
    for name, expected in (("mean_ms", 2000), ("p50_ms", 2000), ("p95_ms", 2900)):
        assert times["k.two"][name] == pytest.approx(expected, abs=0.05), name

    assert metrics["retry_count"] == {
        "total": 3,
        "by_job_type": {
            "k.one": {"retries": 3, "retried_jobs": 2, "jobs": 4},
            "k.two": {"retries": 0, "retried_jobs": 0, "jobs": 3},
        },
    }
    raw = await app.store.get_job(done.id)
    assert "$sealed" in raw.result and "k.one" not in str(raw.result), "the report is sealed at rest"


async def test_a_roll_up_sees_only_its_own_organisation(app: Conveyor) -> None:
    await history(app)
    done = await roll_up(app, ["reminders_sent", "job_success_rate", "execution_time"], owner=ORG_B)
    metrics = done.result["metrics"]
    assert metrics["reminders_sent"]["total"] == 100
    [(kind, one)] = metrics["execution_time"]["by_job_type"].items()
    assert kind == "k.one" and one["jobs"] == 1, "one job: every percentile is its run time"
    assert [one[f] for f in ("mean_ms", "p50_ms", "p95_ms")] == pytest.approx([50, 50, 50], abs=0.05)
    assert metrics["job_success_rate"]["by_job_type"] == {
        "k.one": {"success_rate": 0.0, "error_rate": 1.0, "ran": 1, "completed": 0, "failed": 1, "timeout": 0,
                  "cancelled": 0},
    }  # fmt: skip


async def test_a_range_with_nothing_in_it_reports_zeros_and_no_rates(app: Conveyor) -> None:
    await history(app)
    empty = {"start": "2025-06-01T00:00:00", "end": "2025-06-02T00:00:00"}  # no offset: UTC
    done = await roll_up(app, ["reminders_sent", "job_success_rate", "execution_time", "retry_count"], time_range=empty)
    metrics = done.result["metrics"]
    assert done.result["time_range"]["start"] == "2025-06-01T00:00:00Z"
    assert metrics["reminders_sent"]["total"] == 0
    assert metrics["job_success_rate"] == {"success_rate": None, "ran": 0, "by_job_type": {}}
    assert metrics["execution_time"] == {"by_job_type": {}} and metrics["retry_count"]["total"] == 0


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"time_range": {"start": RANGE["end"], "end": RANGE["start"]}, "metrics_types": ["retry_count"]},
         "time_range", "start must be before end"),
        ({"time_range": {"start": "2024-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
          "metrics_types": ["retry_count"]}, "time_range", "at most 366 days"),
        ({"time_range": RANGE, "metrics_types": ["retry_count", "heart_rate"]}, "metrics_types.1", "'retry_count'"),
        ({"time_range": RANGE, "metrics_types": []}, "metrics_types", "at least 1"),
        ({"time_range": RANGE, "metrics_types": ["retry_count", "retry_count"]}, "metrics_types", "each metric once"),
        ({"time_range": {"start": "yesterday", "end": RANGE["end"]}, "metrics_types": ["retry_count"]},
         "time_range.start", "datetime"),
    ],
)  # fmt: skip
async def test_analytics_input_is_refused_naming_the_field(
    app: Conveyor, data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidJobData) as caught:
        await app.engine.enqueue("analytics_roll_up", data, owner=ORG_A)
    [error] = caught.value.errors
    assert error["field"] == field and message in error["message"]


async def test_the_longest_range_is_a_setting(app: Conveyor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_ANALYTICS_MAX_SPAN_DAYS", "7")
    week = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-08T00:00:00Z"}
    await app.engine.enqueue("analytics_roll_up", {"time_range": week, "metrics_types": ["retry_count"]}, owner=ORG_A)
    longer = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-08T00:00:01Z"}
    with pytest.raises(InvalidJobData, match="time_range"):
        await app.engine.enqueue("analytics_roll_up", {"time_range": longer, "metrics_types": ["retry_count"]})
