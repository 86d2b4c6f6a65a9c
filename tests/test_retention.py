"""Retention on both databases: the leader's Pruner removes exactly what the TTLs say (a job
just inside its TTL is kept, just outside removed), per status and per queue, batches whole,
with their log lines and cache entries, never a pending or running job; old log lines go after
30 days; prune hooks hear of the jobs removed; one audit record per pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import TEST_ENCRYPTION, make_settings, running_worker
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor
from conveyor.engine import JobRequest
from conveyor.engine.retention import Retention, RetentionPolicy
from conveyor.jobtypes import Registry
from conveyor.model import Job, LogEntry, LogLevel, Owner, PrunedJob, Status
from conveyor.runtime import retention_of
from conveyor.settings import Settings
from conveyor.store.audit import AuditFilter

JUST = timedelta(milliseconds=1)
ORG = Owner(user_id="u1", org_id="org-a", created_by="u1")
told: list[PrunedJob] = []
hooks = Registry()


@hooks.on_pruned("t.echo")
def remember(data_dir: Path, jobs: list[PrunedJob]) -> None:
    told.extend(jobs)


SETTINGS = {"retention_queues": {"reports": {"completed_hours": 1}, "keep": {"completed_hours": 0}}}


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[Conveyor]:
    # No scheduler in the tests' workers: the tests run the Pruner themselves.
    settings = make_settings(database_url, data_dir=str(tmp_path), scheduler_enabled=False, **SETTINGS)
    conveyor = Conveyor.from_settings(settings, registries=[jobtypes, hooks])
    await conveyor.start()
    told.clear()
    yield conveyor
    await conveyor.close()


async def run(app: Conveyor, *requests: JobRequest, queues: tuple[str, ...] = ("default",)) -> list[Job]:
    jobs = await app.engine.enqueue_many(list(requests))
    async with running_worker(app, queues=list(queues)):
        return [await app.engine.wait(j.id, timeout=20) for j in jobs]


async def exists(app: Conveyor, job: Job) -> bool:
    return await app.store.get_job(job.id) is not None


def test_the_defaults_are_the_seeds() -> None:
    retention = retention_of(Settings(database_url="sqlite:///x.db"))
    hours = {s: retention.ttl(s, "default") for s in Status if s.is_finished}
    assert hours == {
        Status.COMPLETED: timedelta(hours=24),
        Status.FAILED: timedelta(hours=72),
        Status.CANCELLED: timedelta(hours=24),
        Status.TIMEOUT: timedelta(hours=72),
    }
    assert retention.logs == timedelta(days=30) and retention.counters == timedelta(days=400)
    with pytest.raises(ValueError, match="unknown"):
        Settings(database_url="sqlite:///x.db", retention_queues={"q": {"completed_days": 1}})


async def test_pruning_removes_exactly_what_the_ttls_say(app: Conveyor) -> None:
    completed, failed = await run(
        app, JobRequest("t.echo", {"value": 1}, owner=ORG), JobRequest("t.fail", {"permanent": True}, owner=ORG)
    )
    [report] = await run(app, JobRequest("t.report", {"name": "r", "count": 1}), queues=("reports",))
    [kept_for_good] = await run(app, JobRequest("t.echo", {"value": 2}, queue="keep"), queues=("keep",))
    cancelled = await app.engine.cancel((await app.engine.enqueue("t.echo", {"value": 3})).id)
    pending = await app.engine.enqueue("t.echo", {"value": 4}, queue="nobody-claims-this")
    assert [j.status for j in (completed, failed, report, cancelled)] == [
        Status.COMPLETED, Status.FAILED, Status.COMPLETED, Status.CANCELLED,
    ]  # fmt: skip
    ttl = {completed.id: timedelta(hours=24), failed.id: timedelta(hours=72), report.id: timedelta(hours=1),
           cancelled.id: timedelta(hours=24)}  # fmt: skip
    finished = sorted((completed, failed, report, cancelled), key=lambda j: j.completed_at + ttl[j.id])  # type: ignore[operator]

    for job in finished:
        expiry: datetime = job.completed_at + ttl[job.id]  # type: ignore[operator]
        await app.pruner.run_once(now=expiry - JUST)
        assert await exists(app, job), f"{job.kind} {job.status.value} removed just inside its TTL"
        await app.pruner.run_once(now=expiry + JUST)
        assert not await exists(app, job), f"{job.kind} {job.status.value} kept just past its TTL"
        later = [j for j in finished if j.completed_at + ttl[j.id] > expiry + JUST]  # type: ignore[operator]
        assert all([await exists(app, j) for j in later]), "a job whose TTL had not passed went too"

    far = datetime.now(completed.created_at.tzinfo) + timedelta(days=3650)
    await app.pruner.run_once(now=far)
    assert await exists(app, kept_for_good), "a queue whose TTL is 0 keeps its jobs"
    assert (await app.store.get_job(pending.id)).status is Status.PENDING, "pending jobs are never pruned"
    assert {j.id for j in told} == {completed.id, cancelled.id}, "the t.echo prune hook heard of its jobs"


async def test_a_batch_goes_whole_when_every_member_is_past_its_ttl(app: Conveyor) -> None:
    view = await app.batches.submit("pair", [JobRequest("t.echo", {"value": n}) for n in range(2)], owner=ORG)
    async with running_worker(app):
        members = [await app.engine.wait(j.id, timeout=20) for j in view.jobs]
    _first, last = sorted(m.completed_at for m in members)  # type: ignore[type-var]
    day = timedelta(hours=24)
    counts = await app.pruner.run_once(now=last + day - JUST)
    assert counts.get("batches", 0) == 0 and await app.store.get_batch(view.batch.id) is not None
    assert all([await exists(app, m) for m in members]), "a batch is not shown with members missing"
    counts = await app.pruner.run_once(now=last + day + JUST)
    assert counts["batches"] == 1 and counts["jobs.batch_members"] == 2
    assert await app.store.get_batch(view.batch.id) is None
    assert not any([await exists(app, m) for m in members])


async def test_dependants_go_with_their_job(app: Conveyor) -> None:
    submitted = await app.cache.submit("t.estimated", {"items": [1, 2]}, owner=ORG)
    async with running_worker(app, queues=["estimates"]):
        job = await app.engine.wait(submitted.job.id, timeout=20)
    now = job.completed_at
    await app.store.flush(logs=[LogEntry(job.id, now, LogLevel.INFO, "a line")])
    assert (await app.cache.stats()).entries == 1
    await app.pruner.run_once(now=now + timedelta(hours=24) + JUST)
    assert not await exists(app, job)
    assert (await app.cache.stats()).entries == 0, "the cache entry pointing at the job went with it"
    again = await app.cache.submit("t.estimated", {"items": [1, 2]}, owner=ORG)
    assert again.created, "the same request runs afresh"


async def test_log_lines_go_after_thirty_days(app: Conveyor) -> None:
    [job] = await run(app, JobRequest("t.echo", {"value": 1}, queue="keep"), queues=("keep",))
    now = job.completed_at + timedelta(days=40)  # type: ignore[operator]
    cutoff = now - timedelta(days=30)
    lines = [
        LogEntry(job.id, cutoff - timedelta(days=5), LogLevel.INFO, "old"),
        LogEntry(job.id, cutoff - JUST, LogLevel.INFO, "just past"),
        LogEntry(job.id, cutoff + JUST, LogLevel.INFO, "just inside"),
        LogEntry(job.id, now, LogLevel.INFO, "new"),
    ]
    for line in lines:  # written in time order, as workers write them
        await app.store.flush(logs=[line])
    counts = await app.pruner.run_once(now=now)
    assert counts["logs"] == 2
    entries, total = await app.store.get_logs(job.id, min_level=None, limit=10, offset=0)
    assert [e.message for e in entries] == ["just inside", "new"] and total == 2
    assert await exists(app, job)


async def test_job_counters_outlive_their_job_and_go_after_400_days(app: Conveyor) -> None:
    [job] = await run(app, JobRequest("t.counting", {"counts": {"reminders_sent": 2}}, owner=ORG))
    finished = job.completed_at
    assert await app.pruner.run_once(now=finished + timedelta(days=2)) == {"jobs.completed": 1}

    async def sums() -> list[float]:
        found = await app.store.counter_sums("org-a", finished - JUST, finished + JUST, ["reminders_sent"])
        return [s.total for s in found]

    assert await sums() == [2], "analytics still sum them"
    assert await app.pruner.run_once(now=finished + timedelta(days=400) - timedelta(seconds=1)) == {}
    assert await app.pruner.run_once(now=finished + timedelta(days=400, seconds=1)) == {"counters": 2}
    assert await sums() == []


async def test_a_pass_is_audited_once_with_its_counts(app: Conveyor) -> None:
    done = await run(app, *[JobRequest("t.echo", {"value": n}, owner=ORG) for n in range(3)])
    latest = max(j.completed_at for j in done)  # type: ignore[type-var]
    assert await app.pruner.run_once(now=latest + timedelta(hours=25)) == {"jobs.completed": 3}
    assert await app.pruner.run_once(now=latest + timedelta(hours=25)) == {}, "nothing left: nothing recorded"
    records, total = await app.audit.list(AuditFilter(action="retention.pruned"), limit=10)
    assert total == 1 and records[0].after["counts"] == {"jobs.completed": 3}


async def test_pruning_works_through_a_backlog_in_small_batches(app: Conveyor) -> None:
    app.pruner.batch_rows = 2
    done = await run(app, *[JobRequest("t.echo", {"value": n}) for n in range(5)])
    latest = max(j.completed_at for j in done)  # type: ignore[type-var]
    assert (await app.pruner.run_once(now=latest + timedelta(hours=25)))["jobs.completed"] == 5
    app.pruner.max_rows = 1
    more = await run(app, *[JobRequest("t.echo", {"value": n}) for n in range(3)])
    latest = max(j.completed_at for j in more)  # type: ignore[type-var]
    assert (await app.pruner.run_once(now=latest + timedelta(hours=25)))["jobs.completed"] == 2, "one batch a pass"


def test_expired_sql_names_each_status_and_queue() -> None:
    retention = Retention(RetentionPolicy(), {"q": RetentionPolicy(completed=None)})
    assert retention.ttl(Status.COMPLETED, "q") is None and retention.ttl(Status.FAILED, "q") == timedelta(hours=72)
    assert retention.shortest() == timedelta(hours=24)


def test_the_packs_remove_the_files_of_their_pruned_jobs(tmp_path: Path) -> None:
    from uuid import uuid4

    from conveyor.packs.predictions import Workspace
    from conveyor.packs.predictions import jobtypes as predictions
    from conveyor.packs.workbench import export
    from conveyor.packs.workbench.jobtypes import jobtypes as workbench

    workspace, other = Workspace.create(tmp_path), Workspace.create(tmp_path)
    workspace.upload_path("csv").write_text("a,b\n")
    upload = PrunedJob(uuid4(), "predictions.annual", "default", "completed", {"workspace": workspace.name}, None)
    for hook in predictions.prune_hooks["predictions.annual"]:
        hook(tmp_path, [upload])
    assert not workspace.path.exists() and other.path.exists(), "only the pruned job's workspace went"

    job_id, kept_id = uuid4(), uuid4()
    for identity in (job_id, kept_id):
        path = export.export_path(tmp_path, identity, "csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    pruned = PrunedJob(job_id, "data_export", "default", "completed", {"format": "csv"}, None)
    for hook in workbench.prune_hooks["data_export"]:
        hook(tmp_path, [pruned])
    assert not export.export_path(tmp_path, job_id, "csv").exists()
    assert export.export_path(tmp_path, kept_id, "csv").exists()


async def test_read_notifications_go_with_the_logs_and_unread_ones_stay(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, data_dir=str(tmp_path), scheduler_enabled=False, **TEST_ENCRYPTION)
    app = Conveyor.from_settings(settings, registries=[jobtypes])
    await app.start()
    try:
        notes = [
            (await app.notifications.notify(owner=ORG, user_id="u", kind="k", body={"n": n}, delivery_key=f"d{n}"))[0]
            for n in range(2)
        ]
        read = await app.notifications.mark_read(notes[0].id)
        assert read.read_at is not None
        month = timedelta(days=30)
        assert "notifications" not in await app.pruner.run_once(now=read.read_at + month - JUST)
        assert (await app.pruner.run_once(now=read.read_at + month + JUST))["notifications"] == 1
        remaining, total = await app.notifications.list(visible_to=None)
        assert total == 1 and remaining[0].id == notes[1].id and remaining[0].read_at is None
    finally:
        await app.close()
