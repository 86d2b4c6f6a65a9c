"""The worker running jobs: results, priorities, retries, cancel, timeout, progress, logs."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import eventually, running_worker

from conveyor import Conveyor, JobRequest, LogLevel, Status
from conveyor.model import utc_now


async def status_of(app: Conveyor, job_id: object) -> Status:
    return (await app.engine.get(job_id)).status  # type: ignore[arg-type]


async def test_worker_runs_a_job_and_stores_its_result(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo", {"value": {"nested": [1, 2]}})
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=10)
    assert done.status is Status.COMPLETED
    assert done.result == {"value": {"nested": [1, 2]}, "attempt": 1}
    assert done.attempt == 1 and done.worker_id is None and done.lease_expires_at is None
    assert done.started_at is not None and done.completed_at is not None and done.started_at <= done.completed_at


async def test_a_result_json_cannot_hold_fails_that_job_alone(app: Conveyor) -> None:
    bad = await app.engine.enqueue("t.unstorable", priority="critical")
    good = await app.engine.enqueue("t.echo", {"value": 1})
    async with running_worker(app):
        failed = await app.engine.wait(bad.id, timeout=10)
        done = await app.engine.wait(good.id, timeout=10)
    assert (failed.status, failed.attempt, failed.error["type"]) == (Status.FAILED, 1, "UnstorableResult")
    assert done.status is Status.COMPLETED


async def test_a_kind_this_worker_does_not_know_is_retried_not_failed(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo")
    app.engine.registry._by_kind.pop("t.echo")
    async with running_worker(app):
        retried = await eventually(lambda: _if(app, job.id, lambda j: j.status is Status.SCHEDULED))
    assert (retried.attempt, retried.error["type"], retried.error["retryable"]) == (1, "UnknownJobType", True)


async def test_wait_returns_the_job_unfinished_at_its_timeout(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.echo")
    waited = await app.engine.wait(job.id, timeout=0.2)
    assert waited.status is Status.PENDING


async def test_higher_priority_runs_first_and_ties_in_arrival_order(app: Conveyor) -> None:
    low = await app.engine.enqueue_many([JobRequest("t.echo", {"value": f"low{i}"}, priority="low") for i in range(3)])
    critical = await app.engine.enqueue("t.echo", {"value": "critical"}, priority="critical")
    seven = await app.engine.enqueue("t.echo", {"value": "seven"}, priority=7)
    async with running_worker(app, concurrency=1):
        await app.engine.wait(low[-1].id, timeout=10)
    order = [critical.id, seven.id, *[j.id for j in low]]
    started = {j.id: (await app.engine.get(j.id)).started_at for j in [critical, seven, *low]}
    assert sorted(order, key=lambda i: started[i]) == order


async def test_worker_only_claims_from_its_queues(app: Conveyor) -> None:
    report = await app.engine.enqueue("t.report", {"name": "r", "count": 1})
    echo = await app.engine.enqueue("t.echo")
    async with running_worker(app, queues=["default"]):
        assert (await app.engine.wait(echo.id, timeout=10)).status is Status.COMPLETED
        assert await status_of(app, report.id) is Status.PENDING


async def test_retryable_error_schedules_a_retry_after_the_class_backoff(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.fail", {"message": "network down"}, priority="critical")
    before = utc_now()
    async with running_worker(app):
        failed_once = await eventually(
            lambda: _if(app, job.id, lambda j: j.status is Status.SCHEDULED and j.attempt == 1)
        )
    delay = (failed_once.run_at - before).total_seconds()
    assert 60 * 0.9 - 1 <= delay <= 60 * 1.1 + 1  # critical: first retry after 60 s, +/- 10 %
    assert failed_once.error["type"] == "ConnectionError"
    assert failed_once.error["message"] == "network down"
    assert failed_once.error["retryable"] is True
    assert "Traceback" in failed_once.error["traceback"]


async def test_job_fails_for_good_once_out_of_attempts(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.fail_fast_retry", {"message": "still down"})
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=15)
    assert (done.status, done.attempt, done.max_attempts) == (Status.FAILED, 3, 3)
    assert done.error["message"] == "still down on attempt 3"
    # Each attempt's error stays in the job's log after the next attempt replaced `error`.
    logs, _ = await app.engine.logs(job.id)
    ends = [(e.attempt, e.level.name, e.component, e.message.split("; next")[0]) for e in logs]
    assert ends == [
        (
            n,
            "WARNING" if n < 3 else "ERROR",
            "worker",
            f"attempt {n} of 3 ended: ConnectionError: still down on attempt {n}",
        )
        for n in (1, 2, 3)
    ]
    assert "; next attempt at " in logs[0].message


async def test_transient_failures_then_success(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.flaky")
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=15)
    assert (done.status, done.result, done.attempt) == (Status.COMPLETED, {"succeeded_on": 3}, 3)


async def test_permanent_error_fails_at_once(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.fail", {"permanent": True, "message": "no such patient"}, priority="critical")
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=10)
    assert (done.status, done.attempt) == (Status.FAILED, 1)
    assert done.error["code"] == "BAD_INPUT" and done.error["retryable"] is False


async def test_cancel_reaches_a_running_job_at_its_checkpoint(app: Conveyor) -> None:
    loop_job = await app.engine.enqueue("t.loop_spin", {"seconds": 30})
    thread_job = await app.engine.enqueue("t.thread_spin", {"seconds": 30})
    async with running_worker(app):
        for job in (loop_job, thread_job):
            await eventually(lambda job=job: _if(app, job.id, lambda j: j.status is Status.RUNNING))
            asked = await app.engine.cancel(job.id)
            assert asked.status is Status.RUNNING and asked.cancel_requested
            done = await app.engine.wait(job.id, timeout=5)
            assert done.status is Status.CANCELLED, job.kind


async def test_a_job_that_ignores_cancel_is_stopped_after_the_grace(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.loop_stubborn", {"seconds": 60})
    async with running_worker(app, cancel_grace=timedelta(milliseconds=300)):
        await eventually(lambda: _if(app, job.id, lambda j: j.status is Status.RUNNING))
        await app.engine.cancel(job.id)
        done = await app.engine.wait(job.id, timeout=5)
    assert done.status is Status.CANCELLED


async def test_a_process_job_that_ignores_cancel_is_killed(app: Conveyor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    job = await app.engine.enqueue("t.process_spin", {"seconds": 60, "checkpoints": False, "pid_file": str(pid_file)})
    async with running_worker(app, cancel_grace=timedelta(milliseconds=300)):
        await eventually(lambda: _exists(pid_file), timeout=30)  # a spawned child starts slowly on a busy machine
        pid = int(pid_file.read_text())
        await app.engine.cancel(job.id)
        done = await app.engine.wait(job.id, timeout=10)
        assert done.status is Status.CANCELLED
        await eventually(lambda: _process_gone(pid), timeout=5)


async def test_process_job_returns_its_result_progress_and_logs(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.process_square", {"items": [1, 2, 3]})
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=30)
    assert done.status is Status.COMPLETED
    assert done.result["squares"] == [1, 4, 9]
    assert done.result["pid"] != os.getpid()
    assert (done.progress.processed, done.progress.total) == (3, 3)
    logs, _ = await app.engine.logs(job.id)
    assert [(e.message, e.component) for e in logs] == [("squaring", "math")]


async def test_process_jobs_reuse_pooled_children_and_a_killed_child_is_replaced(app: Conveyor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with running_worker(app, process_pool_size=1, cancel_grace=timedelta(milliseconds=300)):
        first = await app.engine.enqueue("t.process_square", {"items": [1]})
        second = await app.engine.enqueue("t.process_square", {"items": [2]})
        a, b = await app.engine.wait(first.id, timeout=30), await app.engine.wait(second.id, timeout=30)
        assert a.result["pid"] == b.result["pid"]  # one child served both
        stubborn = await app.engine.enqueue(
            "t.process_spin", {"seconds": 60, "checkpoints": False, "pid_file": str(pid_file)}
        )
        await eventually(lambda: _exists(pid_file))
        assert int(pid_file.read_text()) == a.result["pid"]
        await app.engine.cancel(stubborn.id)
        assert (await app.engine.wait(stubborn.id, timeout=10)).status is Status.CANCELLED
        third = await app.engine.wait((await app.engine.enqueue("t.process_square", {"items": [3]})).id, timeout=30)
    assert third.status is Status.COMPLETED and third.result["squares"] == [9]
    assert third.result["pid"] != a.result["pid"]  # the killed child was replaced


async def test_timeout_ends_a_job_with_status_timeout(app: Conveyor) -> None:
    cooperative = await app.engine.enqueue("t.loop_spin", {"seconds": 30}, timeout=timedelta(milliseconds=300))
    stubborn = await app.engine.enqueue(
        "t.process_spin", {"seconds": 60, "checkpoints": False}, timeout=timedelta(milliseconds=300)
    )
    async with running_worker(app, cancel_grace=timedelta(milliseconds=300)):
        first = await app.engine.wait(cooperative.id, timeout=10)
        second = await app.engine.wait(stubborn.id, timeout=15)
    assert first.status is Status.TIMEOUT and second.status is Status.TIMEOUT
    assert "timeout" in first.error["message"]


async def test_progress_item_errors_and_logs_are_stored(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.items", {"items": list(range(10)), "bad": [3, 7]})
    async with running_worker(app):
        done = await app.engine.wait(job.id, timeout=10)
    assert done.result == {"ok": 8, "bad": 2}
    p = done.progress
    assert (p.total, p.processed, p.successful, p.failed, p.step, p.step_name) == (10, 10, 8, 2, 2, "summarising")
    assert done.item_errors == [
        {"item": 3, "message": "item 3 is bad", "code": "BAD_ITEM"},
        {"item": 7, "message": "item 7 is bad", "code": "BAD_ITEM"},
    ]
    everything, total = await app.engine.logs(job.id)
    assert total == 12 and everything[0].level is LogLevel.DEBUG
    warnings, n = await app.engine.logs(job.id, min_level=LogLevel.WARNING)
    assert n == 1 and warnings[0].message == "some items failed" and warnings[0].component == "summary"
    page, _ = await app.engine.logs(job.id, limit=2, offset=10)
    assert [e.message for e in page] == ["done", "some items failed"]


async def test_log_lines_past_the_limit_are_dropped_with_a_notice(app: Conveyor) -> None:
    job = await app.engine.enqueue("t.items", {"items": list(range(50))})
    async with running_worker(app, max_log_entries=5):
        await app.engine.wait(job.id, timeout=10)
    logs, total = await app.engine.logs(job.id)
    assert total == 5
    assert "limit of 5" in logs[-1].message and logs[-1].level is LogLevel.WARNING


async def test_builtin_sleep_reports_progress_and_honours_cancel(app: Conveyor) -> None:
    job = await app.engine.enqueue("sleep", {"seconds": 30})
    async with running_worker(app, progress_interval=timedelta(milliseconds=50)):
        await eventually(lambda: _if(app, job.id, lambda j: j.progress.total == 30))
        await app.engine.cancel(job.id)
        done = await app.engine.wait(job.id, timeout=5)
    assert done.status is Status.CANCELLED


async def test_the_job_types_estimate_shows_until_progress_gives_a_speed(app: Conveyor) -> None:
    # t.expecting estimates 10 minutes and reports nothing for its first 0.6 s.
    job = await app.engine.enqueue("t.expecting", {"seconds": 0.6})
    async with running_worker(app, progress_interval=timedelta(milliseconds=50)):
        seeded = await eventually(lambda: _if(app, job.id, lambda j: j.progress.eta is not None))
        assert seeded.status is Status.RUNNING and seeded.progress.processed == 0
        assert seeded.started_at is not None
        expected = seeded.started_at + timedelta(minutes=10)
        assert abs((seeded.progress.eta - expected).total_seconds()) < 5
        # Then the first report's measured speed (one of four items in ~0.6 s) replaces it.
        measured = await eventually(lambda: _if(app, job.id, lambda j: j.progress.processed == 1))
        assert measured.progress.eta < utc_now() + timedelta(seconds=30)
        done = await app.engine.wait(job.id, timeout=10)
    assert done.status is Status.COMPLETED


async def test_noop_completes_many_jobs(app: Conveyor) -> None:
    jobs = await app.engine.enqueue_many([JobRequest("noop", {"i": i}) for i in range(500)])
    async with running_worker(app, concurrency=50):
        await eventually(lambda: _counts_equal(app, {"completed": 500}), timeout=30)
    assert len(jobs) == 500


async def _if(app: Conveyor, job_id: object, predicate: object) -> object:
    job = await app.engine.get(job_id)  # type: ignore[arg-type]
    return job if predicate(job) else None  # type: ignore[operator]


async def _exists(path: Path) -> bool:
    return path.exists() and path.read_text() != ""


async def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _counts_equal(app: Conveyor, expected: dict[str, int]) -> bool:
    return await app.engine.counts() == expected


async def test_a_worker_keeps_listening_after_its_listener_reconnects(app: Conveyor, database_url: str) -> None:
    """A reconnected listener tells every subscriber "anything may have changed" ("*"); the
    worker's cancel subscriber must take that in its stride. It once raised on it (not a job
    id), which the listener took for a lost connection: it reconnected, said "*" again, and
    so on for good, and the worker heard of new jobs and cancels no more."""
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    import psycopg

    def listening_for(conn: psycopg.Connection[Any], seconds: float) -> int:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN%%' AND backend_start < now() - make_interval(secs => %s)",
            (seconds,),
        ).fetchone()
        assert row is not None
        return int(row[0])

    # No poll to fall back on: only a notification wakes this worker.
    async with running_worker(app, poll_interval=timedelta(seconds=30)):
        await asyncio.sleep(0.3)
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert listening_for(conn, 0) == 1
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
            await asyncio.sleep(2.0)  # reconnected within ~0.1 s, and staying
            assert listening_for(conn, 1.0) == 1, "the listener did not stay connected"
        job = await app.engine.enqueue("t.echo", {"value": 1})
        done = await app.engine.wait(job.id, timeout=2)
        assert done.status is Status.COMPLETED
