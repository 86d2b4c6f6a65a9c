"""A database that cannot serve a call now: told apart from bugs, answered 503, logged in a line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import time
from datetime import timedelta
from uuid import UUID

import psycopg
import pytest
import sqlalchemy as sa
from conftest import (
    api_harness,
    cut_sessions,
    eventually,
    make_settings,
    refusing_connections,
    running_scheduler,
    start_worker_process,
    stop_worker_process,
)
from jobtypes_for_tests import jobtypes
from psycopg_pool import PoolTimeout

from conveyor import Conveyor
from conveyor.scheduler import Chore
from conveyor.store.outage import LONGEST_RETRY_PAUSE_SECONDS, RetryPauses, database_unavailable, log_failure


@pytest.mark.parametrize(
    ("exc", "passing"),
    [
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
        (psycopg.OperationalError("connection failed: database is not accepting connections"), True),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), True),
        (psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), True),
        (sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection")), True),
        (sqlite3.OperationalError("database is locked"), True),
        (sa.exc.OperationalError("UPDATE jobs", {}, sqlite3.OperationalError("database is locked")), True),
        (sqlite3.OperationalError("no such table: conveyor_jobs"), False),
        (psycopg.errors.UndefinedTable("relation does not exist"), False),
        (sa.exc.ProgrammingError("SELECT", {}, psycopg.errors.SyntaxError("syntax error")), False),
        (ValueError("a bug"), False),
    ],
)
def test_an_outage_is_told_apart_from_a_bug(exc: Exception, passing: bool) -> None:
    assert database_unavailable(exc) is passing


def test_retry_pauses_double_to_their_bound_each_drawn_in_its_upper_half() -> None:
    # The processes one outage cut off must not all try again at the same moments, on a server
    # just back: each pause is drawn between half and all of its bound, which doubles from the
    # first up to LONGEST_RETRY_PAUSE_SECONDS and starts again after a success.
    pauses = RetryPauses(0.05)
    bounds = [0.05, 0.1, 0.2, 0.4, 0.8, LONGEST_RETRY_PAUSE_SECONDS, LONGEST_RETRY_PAUSE_SECONDS]
    drawn = [pauses.next() for _ in bounds]
    assert all(bound / 2 <= pause <= bound for pause, bound in zip(drawn, bounds, strict=True)), drawn
    pauses.reset()
    assert 0.025 <= pauses.next() <= 0.05
    fleet = [RetryPauses(LONGEST_RETRY_PAUSE_SECONDS).next() for _ in range(20)]
    assert max(fleet) - min(fleet) > 0.1, fleet  # twenty loops, not one moment


def test_an_outage_is_logged_in_a_line_and_a_bug_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("conveyor.test")
    outage = psycopg.errors.AdminShutdown("terminating connection due to administrator command\nDETAIL: x")
    try:
        raise ValueError("a bug")
    except ValueError as exc:
        bug = exc
    with caplog.at_level(logging.INFO, logger="conveyor.test"):
        log_failure(log, outage, "claiming jobs failed; retrying in %.2fs", 0.1)
        log_failure(log, bug, "heartbeat failed")
    [line, error] = caplog.records
    assert (line.levelno, line.exc_info) == (logging.WARNING, None)
    assert line.getMessage() == (
        "claiming jobs failed; retrying in 0.10s (database unavailable: "
        "terminating connection due to administrator command)"
    )
    assert (error.levelno, error.getMessage()) == (logging.ERROR, "heartbeat failed")
    assert error.exc_info is not None and error.exc_info[1] is bug


async def test_the_api_answers_503_with_retry_after_while_the_database_refuses_connections(
    database_url: str,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a server that refuses connections is PostgreSQL's")
    async with api_harness(database_url, raise_app_exceptions=False) as api:
        user = api.jwt("u1")
        assert (await api.client.get("/api/v1/jobs", headers=user)).status_code == 200
        with refusing_connections(database_url):
            response = await api.client.get("/api/v1/jobs", headers=user)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["details"]["code"] == "DATABASE_UNAVAILABLE"
        assert (await api.client.get("/api/v1/jobs", headers=user)).status_code == 200


async def test_the_api_answers_503_while_the_database_is_read_only_and_recovers(database_url: str) -> None:
    # What a failover can look like for a while: the old primary, now a standby, still answers
    # but refuses every write. Its connections must not be handed out again once writes are
    # possible elsewhere (here: the same database, writable again for new sessions only).
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only sessions")
    name = sa.make_url(database_url).database
    assert name is not None
    async with api_harness(database_url, raise_app_exceptions=False) as api:
        user = api.jwt("u1")
        body = {"type": "t.echo", "data": {"value": 1}}
        first = (await api.client.post("/api/v1/jobs", json=body, headers=user)).json()["data"]["id"]
        second = (await api.client.post("/api/v1/jobs", json=body, headers=user)).json()["data"]["id"]
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            try:
                cut_sessions(admin, name)
                refused = [
                    await api.client.post("/api/v1/jobs", json=body, headers=user),  # psycopg's pool
                    await api.client.post(f"/api/v1/jobs/{first}/cancel", headers=user),  # SQLAlchemy's
                    await api.client.get("/api/v1/jobs/stats/summary", headers=user),  # reads go on
                ]
            finally:
                # Writable for new sessions; the read-only ones stay as they are.
                admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        assert [r.status_code for r in refused] == [503, 503, 200], [r.text for r in refused]
        assert {r.json()["details"]["code"] for r in refused[:2]} == {"DATABASE_UNAVAILABLE"}
        # Each write a read-only connection refuses retires it (and for SQLAlchemy, its pool):
        # the reads above opened some more while the database was read-only.
        created = [(await api.client.post("/api/v1/jobs", json=body, headers=user)).status_code for _ in range(4)]
        assert 201 in created, created
        path = f"/api/v1/jobs/{second}/cancel"
        cancelled = [(await api.client.post(path, headers=user)).status_code for _ in range(3)]
        assert 200 in cancelled, cancelled


async def test_a_failed_write_logs_no_job_data(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # What a write stores may be a patient's record (job data, names): a database error on it
    # must not carry the statement's parameters into the log.
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's read-only sessions")
    name = sa.make_url(database_url).database
    assert name is not None
    marker = "patient-7f3a9c-DOB-1961"
    async with api_harness(database_url, raise_app_exceptions=False) as api:
        user = api.jwt("u1")
        batch = {"name": marker, "jobs": [{"type": "t.echo", "data": {"value": marker}}]}
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
            try:
                cut_sessions(admin, name)
                with caplog.at_level(logging.DEBUG):
                    refused = await api.client.post("/api/v1/batches", json=batch, headers=user)
            finally:
                admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
                cut_sessions(admin, name)
    assert refused.status_code == 503, refused.text
    logged = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert "read-only" in logged
    assert marker not in logged


async def test_the_stores_errors_carry_no_parameters(database_url: str) -> None:
    # Any statement's error (not only an outage's), on both databases: what it would have
    # stored stays out of the message a traceback prints.
    marker = "patient-7f3a9c-DOB-1961"
    conveyor = Conveyor.from_settings(make_settings(database_url), registries=[jobtypes])
    await conveyor.start()
    try:
        with pytest.raises(sa.exc.DBAPIError) as failed:
            async with conveyor.store._engine.begin() as conn:  # type: ignore[attr-defined]
                await conn.execute(
                    sa.text("INSERT INTO conveyor_jobs (id, kind) VALUES (:id, :kind)"), {"id": "x", "kind": marker}
                )
        assert marker not in str(failed.value)
    finally:
        await conveyor.close()


async def test_a_call_waits_for_a_pooled_connection_no_longer_than_the_pool_timeout(database_url: str) -> None:
    # Every connection busy (or none to be had: a database down): the call gives up after
    # CONVEYOR_POOL_TIMEOUT_SECONDS with a 503, not after psycopg's 30 s.
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool is PostgreSQL's")
    async with api_harness(database_url, raise_app_exceptions=False, pool_size=1, pool_timeout_seconds=0.5) as api:
        user = api.jwt("u1")
        created = await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {}}, headers=user)
        job_id = created.json()["data"]["id"]
        async with api.conveyor.store._raw():  # type: ignore[attr-defined]  # the only connection
            started = time.monotonic()
            response = await api.client.get(f"/api/v1/jobs/{job_id}", headers=user)
            waited = time.monotonic() - started
        assert response.status_code == 503 and response.json()["details"]["code"] == "DATABASE_UNAVAILABLE"
        assert 0.4 < waited < 5
        assert (await api.client.get(f"/api/v1/jobs/{job_id}", headers=user)).status_code == 200


async def _enqueue_failing_fast(conveyor: Conveyor, within: float) -> BaseException:
    started = time.monotonic()
    with pytest.raises(Exception) as failed:  # which one is database_unavailable's to say
        await conveyor.engine.enqueue("t.echo", {"value": 1})
    assert database_unavailable(failed.value), failed.value
    waited = time.monotonic() - started
    assert waited < within, f"waited {waited:.1f} s for a connection that could not come"
    return failed.value


async def test_while_the_database_refuses_connections_calls_fail_at_once(database_url: str) -> None:
    # The pool's timeout is for waiting on busy connections: while the server refuses new ones
    # (down, restarting), queueing 10 s for a connection that cannot come only holds requests
    # (an API answering its 503 after 10 s, past its clients' patience).
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool is PostgreSQL's")
    conveyor = Conveyor.from_settings(make_settings(database_url, pool_timeout_seconds=10), registries=[jobtypes])
    await conveyor.start()
    try:
        await conveyor.engine.enqueue("t.echo", {"value": 1})
        with refusing_connections(database_url):
            # The first call may still get the pooled connection before the server's goodbye
            # reaches it, and fail on that; by the second the pool knows the server refuses.
            await _enqueue_failing_fast(conveyor, within=3)
            second = await _enqueue_failing_fast(conveyor, within=3)
        assert "not currently accepting connections" in str(second), second
        await _enqueued_soon_after_the_return(conveyor)
    finally:
        await conveyor.close()


async def test_calls_succeed_soon_after_a_long_outage_ends(database_url: str) -> None:
    # psycopg's pool retries a lost connection with a doubling delay (1, 2, 4, 8, 16 s...): after
    # 16 s of outage its next attempt would be ~15 s after the server came back, every call
    # refused meanwhile. A call is answered within moments of the database's return.
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool is PostgreSQL's")
    conveyor = Conveyor.from_settings(make_settings(database_url), registries=[jobtypes])
    await conveyor.start()
    try:
        await conveyor.engine.enqueue("t.echo", {"value": 1})
        with refusing_connections(database_url):
            outage_ends = time.monotonic() + 16
            while time.monotonic() < outage_ends:
                await _enqueue_failing_fast(conveyor, within=3)
                await asyncio.sleep(1)
        await _enqueued_soon_after_the_return(conveyor)
    finally:
        await conveyor.close()


async def _enqueued_soon_after_the_return(conveyor: Conveyor) -> UUID:
    # The pool's attempts to connect come 0.25 s apart, and once it has given up, a caller
    # has one made at once: the first call after the return is answered (~0.02 s measured; 1-1.7
    # s when the pool's attempts came 1, 2, 4 s apart, every call meanwhile refused).
    back = time.monotonic()
    while True:
        try:
            job = await conveyor.engine.enqueue("t.echo", {"value": 2})
            break
        except Exception as exc:  # noqa: BLE001 - asserted to be an outage's
            assert database_unavailable(exc), exc
            await asyncio.sleep(0.05)
    waited = time.monotonic() - back
    assert waited < 0.75, f"still refused {waited:.2f} s after the database came back"
    return job.id


async def test_a_worker_started_while_its_database_refuses_connections_waits_for_it(
    app: Conveyor, database_url: str
) -> None:
    # A worker started with its database (a compose file, a pod) or while it restarts: it
    # waits and then works, rather than exiting for its supervisor to restart it.
    if not database_url.startswith("postgresql"):
        pytest.skip("a server that refuses connections is PostgreSQL's")
    with refusing_connections(database_url):
        process = start_worker_process(database_url, CONVEYOR_STARTUP_WAIT_SECONDS="30")
        try:
            await asyncio.sleep(3)
            assert process.poll() is None, "the worker gave up on its database"
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    try:
        job = await app.engine.enqueue("t.echo", {"value": 1})
        await eventually(lambda: _completed(app, job.id), timeout=20)
    finally:
        assert await stop_worker_process(process) == 0


async def test_a_worker_runs_jobs_again_within_moments_of_its_databases_return(
    app: Conveyor, database_url: str
) -> None:
    # A restart or a failover: every session cut, no connection for a while. The worker's claim
    # loop, its listener and its outcome writes each try again at least once a second, and its
    # pools open a connection when asked, so a job enqueued as the database returns is done
    # within about that (0.7-1.3 s measured by bench.recovery; 2.5-3.4 s when the pools tried 1,
    # 2, 4 s apart and the loops paused up to 5 s).
    if not database_url.startswith("postgresql"):
        pytest.skip("a server that refuses connections is PostgreSQL's")
    process = start_worker_process(database_url)
    try:
        first = await app.engine.enqueue("t.echo", {"value": 1})
        await eventually(lambda: _completed(app, first.id), timeout=20)
        with refusing_connections(database_url):
            await asyncio.sleep(3)
        back = time.monotonic()
        job_id = await _enqueued_soon_after_the_return(app)
        await eventually(lambda: _completed(app, job_id), timeout=10, interval=0.01)
        waited = time.monotonic() - back
        assert waited < 2.0, f"the job was done {waited:.2f} s after the database came back"
    finally:
        assert await stop_worker_process(process) == 0


async def _completed(app: Conveyor, job_id: object) -> bool:
    job = await app.engine.get(job_id)  # type: ignore[arg-type]
    return job.status.value == "completed"


async def test_connections_notice_a_silent_server_and_the_url_has_the_last_word(database_url: str) -> None:
    # A partition or a lost machine closes no socket: without keepalives a connection would
    # wait two hours for its first probe, a connect 130 s.
    if not database_url.startswith("postgresql"):
        pytest.skip("libpq's connection parameters")
    own = sa.make_url(database_url).update_query_dict({"keepalives_idle": "5"}).render_as_string(hide_password=False)
    conveyor = Conveyor.from_settings(make_settings(own), registries=[jobtypes])
    await conveyor.start()
    try:
        async with conveyor.store._raw() as conn:  # type: ignore[attr-defined]
            pooled = conn.info.get_parameters()
        async with conveyor.store._engine.connect() as conn:  # type: ignore[attr-defined]
            raw = await conn.get_raw_connection()
            portable = raw.driver_connection.info.get_parameters()
    finally:
        await conveyor.close()
    for used in (pooled, portable):
        assert used["connect_timeout"] == "10"
        assert (used["keepalives"], used["keepalives_interval"], used["keepalives_count"]) == ("1", "10", "3")
        assert used["keepalives_idle"] == "5"


async def test_at_the_servers_connection_limit_a_call_waits_for_a_busy_connection(database_url: str) -> None:
    # The pool cannot grow (the server refuses a connection more) but one of its connections is
    # lent out: it comes back within moments, and the call waits for it rather than failing.
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool is PostgreSQL's")
    name = sa.make_url(database_url).database
    conveyor = Conveyor.from_settings(
        make_settings(database_url, pool_size=2, pool_timeout_seconds=8), registries=[jobtypes]
    )
    await conveyor.start()
    admin = psycopg.connect(database_url, autocommit=True)
    try:
        job = await conveyor.engine.enqueue("t.echo", {"value": 1})
        async with conveyor.store._raw():  # type: ignore[attr-defined]  # the pool's one connection, lent
            sessions = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()
            assert sessions is not None
            admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT {sessions[0]}')
            waiting = asyncio.create_task(conveyor.engine.get(job.id))
            await asyncio.sleep(2)
            assert not waiting.done(), waiting
        assert (await asyncio.wait_for(waiting, 5)).id == job.id
    finally:
        admin.execute(f'ALTER DATABASE "{name}" CONNECTION LIMIT -1')
        admin.close()
        await conveyor.close()


async def test_a_scheduler_that_cannot_confirm_its_lead_leaves_the_leaders_chores(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A pass that fails (its database away) leaves the scheduler unsure that it still holds the
    # lease, which another node may take once it lapses: the leader's chores (sealing the audit
    # journal, retention, webhooks, alerts) wait for a pass that confirms the lead. An outage
    # then costs the scheduler's log one line a pass, not one more for each chore.
    if not database_url.startswith("postgresql"):
        pytest.skip("refusing connections is PostgreSQL's")
    conveyor = Conveyor.from_settings(make_settings(database_url), registries=[jobtypes])
    await conveyor.start()
    chores_run: list[float] = []

    async def chore() -> None:
        chores_run.append(time.monotonic())

    scheduler = conveyor.scheduler(
        interval=timedelta(milliseconds=50), lease=timedelta(seconds=5), chores=[Chore("probe", 0, chore)]
    )

    async def chores_since(count: int) -> bool:
        return len(chores_run) > count

    try:
        async with running_scheduler(scheduler):
            await eventually(lambda: chores_since(0))
            with caplog.at_level(logging.WARNING, logger="conveyor.scheduler"), refusing_connections(database_url):
                # A pass under way when the outage began ends (its calls fail within 0.5 s).
                await asyncio.sleep(1.0)
                before = len(chores_run)
                caplog.clear()
                await asyncio.sleep(1.5)
                during = len(chores_run) - before
                lines = [r.getMessage() for r in caplog.records if r.name == "conveyor.scheduler"]
            assert during == 0, f"{during} chores run by a scheduler that could not confirm its lead"
            assert lines, "the failed passes were not logged"
            assert all(line.startswith("scheduler pass failed") for line in lines), lines
            await eventually(lambda: chores_since(before))  # the lead confirmed again: the chores resume
    finally:
        await conveyor.close()
