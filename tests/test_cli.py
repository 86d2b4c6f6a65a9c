"""The conveyor command against a real database."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from conveyor.cli import app, local
from conveyor.store.migrate import HEAD_REVISION

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url)
    return url


def test_migrate_enqueue_show_cancel_and_stats(db: str) -> None:
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0 and f"revision {HEAD_REVISION}" in migrated.output
    recounted = runner.invoke(app, ["migrate", "--recount"])
    assert recounted.exit_code == 0 and "nothing to recount" in recounted.output  # SQLite keeps no roll-ups
    enqueued = runner.invoke(app, ["enqueue", "sleep", "--data", '{"seconds": 5}', "--priority", "9"])
    assert enqueued.exit_code == 0, enqueued.output
    job = json.loads(enqueued.output)
    assert (job["kind"], job["status"], job["priority_class"]) == ("sleep", "pending", "critical")
    shown = json.loads(runner.invoke(app, ["show", job["id"]]).output)
    assert shown["id"] == job["id"]
    assert json.loads(runner.invoke(app, ["cancel", job["id"]]).output)["status"] == "cancelled"
    assert json.loads(runner.invoke(app, ["stats"]).output) == {"cancelled": 1}


def test_migrate_recount_counts_the_jobs_afresh(empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    postgres_url = empty_postgres_url
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(  # a job stored without its count, as SQL by hand would
            "INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts, run_at, created_at,"
            " updated_at) VALUES (gen_random_uuid(), 'noop', 'default', 'pending', 5, '{}', 1, now(), now(), now())"
        )
    result = runner.invoke(app, ["migrate", "--recount"])
    assert result.exit_code == 0, result.output
    assert "job counts recounted: 1 groups" in result.output
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT sum(n) FROM conveyor_job_counts WHERE status = 'pending'").fetchone() == (1,)
        recorded = conn.execute("SELECT after FROM conveyor_audit_journal WHERE action = 'rollups.recounted'")
        assert recorded.fetchall() == [({"groups": 1},)]


def test_invalid_input_exits_non_zero_naming_the_field(db: str) -> None:
    result = runner.invoke(app, ["enqueue", "sleep", "--data", '{"seconds": -1}'])
    assert result.exit_code == 4  # refused
    error = json.loads(result.stderr)
    assert error["error"] == "INVALID_JOB_DATA" and error["errors"][0]["field"] == "seconds"
    assert runner.invoke(app, ["enqueue", "sleep", "--data", "{not json"]).exit_code == 2
    unknown = runner.invoke(app, ["enqueue", "nope"])
    assert unknown.exit_code == 4 and "INVALID_JOB_TYPE" in unknown.stderr


def test_show_unknown_job_is_an_error(db: str) -> None:
    result = runner.invoke(app, ["show", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 3 and "JOB_NOT_FOUND" in result.stderr
    assert runner.invoke(app, ["show", "not-a-uuid"]).exit_code == 3


def test_apikey_create_prints_the_key_alone_on_the_last_line(db: str) -> None:
    created = runner.invoke(app, ["apikey", "create", "--role", "operator", "--org", "org-a", "--name", "ci"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"cvk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", key)
    listed = [json.loads(line) for line in runner.invoke(app, ["apikey", "list"]).stdout.splitlines()]
    assert [(k["role"], k["org_id"], k["name"]) for k in listed] == [("operator", "org-a", "ci")]
    key_id = key.split("_")[1]
    assert runner.invoke(app, ["apikey", "revoke", key_id]).exit_code == 0
    assert runner.invoke(app, ["apikey", "revoke", "nosuchkey"]).exit_code == 3
    bad_role = runner.invoke(app, ["apikey", "create", "--role", "wizard"])
    assert bad_role.exit_code == 4 and "role" in bad_role.stderr


def test_schedule_add_list_pause_resume_delete(db: str) -> None:
    added = runner.invoke(
        app,
        ["schedule", "add", "sleep", "--data", '{"seconds": 1}', "--cron", "0 9 * * *", "--timezone", "Europe/Berlin"],
    )
    assert added.exit_code == 0, added.output
    schedule = json.loads(added.stdout)
    next_run = datetime.fromisoformat(schedule["next_run_at"])
    assert next_run.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
    every = json.loads(runner.invoke(app, ["schedule", "add", "noop", "--every", "30", "--name", "pulse"]).stdout)

    def row(schedule_id: str) -> str:
        listed = runner.invoke(app, ["schedule", "list"])
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.splitlines()[0].split() == [
            "ID", "NAME", "JOB", "TYPE", "WHEN", "MISSED", "STATE", "NEXT", "RUN", "LAST", "RUN",
        ]  # fmt: skip
        return next(line for line in listed.stdout.splitlines() if line.startswith(schedule_id))

    line = row(schedule["id"])
    assert f"{next_run:%Y-%m-%d %H:%M:%S} UTC (09:00 CE" in line  # CET or CEST: the local time shown too
    assert "0 9 * * * Europe/Berlin" in line and "enabled" in line
    assert "every 30s" in row(every["id"]) and "pulse" in row(every["id"])

    paused = runner.invoke(app, ["schedule", "pause", schedule["id"]])
    assert paused.exit_code == 0 and json.loads(paused.stdout)["enabled"] is False
    assert "paused" in row(schedule["id"]) and " UTC" not in row(schedule["id"])  # no next run while paused
    assert json.loads(runner.invoke(app, ["schedule", "resume", schedule["id"]]).stdout)["next_run_at"]
    assert runner.invoke(app, ["schedule", "delete", schedule["id"]]).exit_code == 0
    assert schedule["id"] not in runner.invoke(app, ["schedule", "list"]).stdout

    unknown = runner.invoke(app, ["schedule", "delete", schedule["id"]])
    assert unknown.exit_code == 3 and json.loads(unknown.stderr)["error"] == "SCHEDULE_NOT_FOUND"
    bad = runner.invoke(app, ["schedule", "add", "sleep", "--cron", "0 25 * * *"])
    assert bad.exit_code == 4 and json.loads(bad.stderr)["field"] == "cron"


def test_batch_submit_list_show_cancel(db: str) -> None:
    jobs = json.dumps([{"type": "sleep", "data": {"seconds": 5}, "priority": 8}] * 3)
    submitted = runner.invoke(app, ["batch", "submit", "--jobs", jobs, "--name", "nightly", "--parallel-limit", "2"])
    assert submitted.exit_code == 0, submitted.output
    batch = json.loads(submitted.stdout)
    assert (batch["name"], batch["status"], batch["parallel_limit"], batch["total"]) == ("nightly", "pending", 2, 3)
    assert (batch["counts"]["pending"], batch["counts"]["waiting_for_slot"]) == (2, 1)

    listed = runner.invoke(app, ["batch", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "STATUS"]
    line = next(line for line in listed.stdout.splitlines() if line.startswith(batch["id"]))
    assert line.split()[1:6] == ["nightly", "pending", "2", "no", "0/3"]

    shown = json.loads(runner.invoke(app, ["batch", "show", batch["id"]]).stdout)
    assert [j["id"] for j in shown["jobs"]] == [j["id"] for j in batch["jobs"]]
    cancelled = json.loads(runner.invoke(app, ["batch", "cancel", batch["id"]]).stdout)
    assert (cancelled["status"], cancelled["counts"]["cancelled"], cancelled["cancel_reason"]) == (
        "cancelled", 3, "cancelled",
    )  # fmt: skip
    again = runner.invoke(app, ["batch", "cancel", batch["id"]])
    assert again.exit_code == 4 and json.loads(again.stderr)["error"] == "BATCH_NOT_CANCELLABLE"
    missing = runner.invoke(app, ["batch", "show", "nope"])
    assert missing.exit_code == 3 and json.loads(missing.stderr)["error"] == "BATCH_NOT_FOUND"
    too_big = runner.invoke(app, ["batch", "submit", "--jobs", json.dumps([{"type": "noop"}] * 51)])
    assert too_big.exit_code == 4 and "at most 50 jobs" in json.loads(too_big.stderr)["message"]


def test_cache_stats_and_clear(db: str) -> None:
    empty = json.loads(runner.invoke(app, ["cache", "stats"]).stdout)
    assert (empty["entries"], empty["hit_rate"], empty["oldest"]) == (0, 0.0, None)
    refused = runner.invoke(app, ["cache", "clear"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert runner.invoke(app, ["cache", "clear", "--label", "nocolon", "--yes"]).exit_code == 2
    cleared = runner.invoke(app, ["cache", "clear", "--yes", "--org", "org-a", "--label", "country:Kenya"])
    assert cleared.exit_code == 0 and json.loads(cleared.stdout) == {"cleared_results": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("processes", [1, 2])
def test_serve_runs_api_and_worker_and_prints_a_bootstrap_key(tmp_path: Path, processes: int) -> None:
    port = _free_port()
    env = {**os.environ, "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}", "API_PORT": str(port)}
    server = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", "--workers", str(processes)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        key = None
        deadline = time.monotonic() + 30
        assert server.stdout is not None
        while not any("conveyor serve" in line for line in lines) and time.monotonic() < deadline:
            line = server.stdout.readline()
            lines.append(line)
            if line.strip().startswith("cvk_"):
                key = line.strip()
        assert key, "".join(lines)
        assert any(f"http://127.0.0.1:{port}" in line for line in lines)
        assert sum(line.startswith("  cvk_") for line in lines) == 1  # one key, however many processes
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=10) as client:
            ready_by = time.monotonic() + 60  # the API processes start after the line above
            while True:
                try:
                    if client.get("/api/v1/jobs/health").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < ready_by, "the API did not answer in 60 s"
                    time.sleep(0.1)
            created = client.post("/api/v1/jobs", json={"type": "sleep", "data": {"seconds": 0.1}}, headers=headers)
            assert created.status_code == 201, created.text
            job_id = created.json()["data"]["jobId"]
            done = client.post(f"/api/v1/jobs/{job_id}/wait", json={"timeout": 10000}, headers=headers)
            assert done.json()["data"]["status"] == "completed"
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it ended
    assert server.returncode in (0, -15)
    assert "Application shutdown complete" in rest


def test_the_command_loads_no_engine_until_a_command_needs_it() -> None:
    # What keeps `conveyor --help` quick (bench/cli_startup.py): the engine, the store, the
    # client, pydantic, SQLAlchemy, httpx and rich are imported by the commands that use them.
    heavy = (
        "conveyor.engine", "conveyor.store", "conveyor.runtime", "conveyor.client", "pydantic", "sqlalchemy",
        "asyncio", "httpx", "rich",
    )  # fmt: skip
    probe = f"import sys, conveyor.cli; print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_services_log_leaves_out_the_pools_failed_connection_attempts(caplog: pytest.LogCaptureFixture) -> None:
    # While the database is away, each loop that needs it says so in a line with the driver's
    # words; each pool's attempts to connect would add two or three lines a second.
    pool_log, alembic_log = logging.getLogger("psycopg.pool"), logging.getLogger("alembic")
    filters, alembic_level = list(pool_log.filters), alembic_log.level
    try:
        local.configure_logging("warning")
        local.configure_logging("warning")  # a second call adds nothing
        assert len(pool_log.filters) == len(filters) + 1
        with caplog.at_level(logging.INFO, logger="psycopg.pool"):
            pool_log.warning("error connecting in %r: %s", "pool-1", "connection refused")
            pool_log.warning("reconnection attempt in pool %r failed after %s sec", "pool-1", 0.25)
            pool_log.warning("rolling back returned connection: %s", "<connection>")
    finally:
        pool_log.filters[:] = filters
        alembic_log.setLevel(alembic_level)
    assert [r.getMessage() for r in caplog.records] == ["rolling back returned connection: <connection>"]


def test_a_worker_stopped_while_it_starts_exits_at_once_with_0() -> None:
    # A deploy or a scale-down may stop a worker still starting (here: waiting for its database):
    # it holds no job yet, so it ends as a drain with nothing to drain would, not dead of the
    # signal (143, which a supervisor may count as a crash).
    unreachable = "postgresql://conveyor:secret@127.0.0.1:1/conveyor"
    with subprocess.Popen(
        [sys.executable, "-m", "conveyor", "worker"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CONVEYOR_DATABASE_URL": unreachable, "CONVEYOR_STARTUP_WAIT_SECONDS": "60"},
    ) as process:
        try:
            assert process.stderr is not None
            while "database unavailable" not in (line := process.stderr.readline()):
                assert line, "the worker ended before it waited for its database"
            stopped = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) == 0
            assert time.monotonic() - stopped < 3
        finally:
            process.kill()  # a no-op once it has ended


@pytest.mark.parametrize(("command", "wait"), [(["worker"], 0), (["migrate"], 0), (["serve"], 2.5)])
def test_a_database_that_cannot_be_reached_is_said_in_one_line(command: list[str], wait: float) -> None:
    # Nothing listens on port 1: the driver's own words, as one JSON line, and exit code 6
    # (not a traceback through SQLAlchemy and psycopg); after a warning line per attempt for
    # CONVEYOR_STARTUP_WAIT_SECONDS (pauses of at most 0.25 s, 0.5 s, then 1 s, each drawn between
    # half and all of that: 4 to 6 in 2.5 s).
    unreachable = "postgresql://conveyor:secret@127.0.0.1:1/conveyor"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "CONVEYOR_DATABASE_URL": unreachable, "CONVEYOR_STARTUP_WAIT_SECONDS": str(wait)},
        timeout=60,
    )
    assert done.returncode == 6, done.stderr
    assert wait <= time.monotonic() - started < wait + 15
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
    *warnings, last = done.stderr.strip().splitlines()
    said = json.loads(last)
    assert said["error"] == "DATABASE_UNAVAILABLE"
    attempts = len([w for w in warnings if "database unavailable" in w])
    assert (4 <= attempts <= 6) if wait else attempts == 0, done.stderr
    assert 'server at "127.0.0.1", port 1 failed: Connection refused' in said["message"]
