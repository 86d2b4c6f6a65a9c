"""The conveyor command against a real `conveyor serve` (SQLite and PostgreSQL): every server-facing
command, `--json` output read back, the exit codes, the rule that picks HTTP or the database,
the config file, shell completion."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import own_database_url
from served import Served, base_env, conveyor_serve, free_port
from typer.testing import CliRunner, Result

from conveyor.cli import app
from conveyor.cli.exits import Exit

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("cli-http")
    with (
        own_database_url(request.param, "conveyor_cli", directory, sqlite_template) as url,
        conveyor_serve(url, directory) as served,
    ):
        yield served


@pytest.fixture
def admin(server: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    """The command pointed at the server with an admin key of a fresh organisation."""
    for name in ("CONVEYOR_DATABASE_URL", "CONVEYOR_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_CONFIG", "/nonexistent/conveyor.toml")
    monkeypatch.setenv("CONVEYOR_URL", server.url)
    monkeypatch.setenv("CONVEYOR_API_KEY", server.key("admin"))
    return server


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def ok_json(*args: str) -> object:
    result = cli(*args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def error(result: Result, code: Exit) -> dict[str, object]:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    parsed: dict[str, object] = json.loads(result.stderr.strip().splitlines()[-1])
    return parsed


# --- jobs ---------------------------------------------------------------------------------------------


def test_submit_wait_show_list_and_logs(admin: Served) -> None:
    job = ok_json("submit", "sleep", "--data", '{"seconds": 0.2}', "--priority", "high", "--label", "country:Kenya")
    assert isinstance(job, dict) and (job["type"], job["priority"], job["labels"]) == (
        "sleep",
        "high",
        {"country": "Kenya"},
    )
    done = ok_json("jobs", "wait", job["id"], "--timeout", "30")
    assert isinstance(done, dict) and (done["status"], done["result"], done["progress"]) == (
        "completed",
        {"slept": 0.2},
        100,
    )

    shown = ok_json("jobs", "show", job["id"])
    assert isinstance(shown, dict) and shown["id"] == job["id"] and shown["completed_at"]
    listed = ok_json("jobs", "list", "--label", "country:Kenya", "--status", "completed")
    assert isinstance(listed, list) and [j["id"] for j in listed] == [job["id"]]
    assert ok_json("jobs", "list", "--type", "noop") == []
    everything = ok_json("jobs", "list", "--all", "--limit", "1")
    assert isinstance(everything, list) and job["id"] in [j["id"] for j in everything]
    logs = ok_json("jobs", "logs", job["id"])
    assert isinstance(logs, dict) and (logs["total"], logs["offset"]) == (len(logs["entries"]), 0)  # sleep logs nothing

    table = cli("jobs", "list")
    assert table.exit_code == 0 and job["id"] in table.stdout and "completed" in table.stdout
    assert table.stdout.splitlines()[1].split("┃")[1].strip() == "ID"  # a rich table, not JSON
    described = cli("jobs", "show", job["id"])
    assert "status" in described.stdout and '{"slept": 0.2}' in described.stdout
    assert "data" not in [line.split()[0] for line in described.stdout.splitlines() if line.strip()]
    with_data = cli("jobs", "show", job["id"], "--data")
    assert any(line.split()[:2] == ["data", '{"seconds":'] for line in with_data.stdout.splitlines())
    later = ok_json("submit", "noop", "--priority", "critical")
    by_priority = ok_json("jobs", "list", "--sort=-priority", "--limit", "1")
    assert isinstance(by_priority, list) and [j["id"] for j in by_priority] == [later["id"]]
    assert [j["id"] for j in ok_json("jobs", "list", "--sort", "oldest", "--all")][-1] == later["id"]
    assert cli("jobs", "logs", job["id"]).exit_code == 0


def test_submit_wait_without_a_terminal_prints_the_outcome(admin: Served, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text('{"seconds": 0.1}')
    result = cli("submit", "sleep", "--data", f"@{data}", "--wait", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"


def test_cancel_retry_and_delete(admin: Served) -> None:
    # a queue no worker serves: the retry (which keeps the queue, not the delay) stays pending
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    waiting = ok_json("submit", "sleep", "--delay", "3600", "--queue", queue)
    assert isinstance(waiting, dict) and waiting["status"] == "scheduled"
    cancelled = ok_json("jobs", "cancel", waiting["id"])
    assert isinstance(cancelled, dict) and cancelled["status"] == "cancelled"
    again = ok_json("jobs", "retry", waiting["id"])
    assert isinstance(again, dict) and again["retry_of"] == waiting["id"] and again["id"] != waiting["id"]
    deleted = ok_json("jobs", "delete", again["id"])
    assert isinstance(deleted, dict) and (deleted["status"], deleted["queue"]) == ("cancelled", queue)
    actions = {(r["object_id"], r["action"]) for r in ok_json("audit", "list", "--object-type", "job")}  # type: ignore[union-attr]
    assert {(waiting["id"], "job.cancelled"), (again["id"], "job.deleted")} <= actions

    refused = error(cli("jobs", "cancel", waiting["id"]), Exit.REFUSED)
    assert (refused["error"], refused["currentStatus"], refused["status"]) == ("JOB_NOT_CANCELLABLE", "cancelled", 409)
    # a job that did not complete: `jobs wait` says so with its own code
    assert cli("jobs", "wait", waiting["id"], "--json").exit_code == Exit.JOB_NOT_COMPLETED


def test_exit_codes_and_errors(admin: Served) -> None:
    missing = error(cli("jobs", "show", str(uuid.uuid4())), Exit.NOT_FOUND)
    assert missing["error"] == "JOB_NOT_FOUND" and str(missing["request_id"]).startswith("req_")
    unknown = error(cli("submit", "nope"), Exit.REFUSED)
    assert unknown["error"] == "INVALID_JOB_TYPE" and unknown["field"] == "type" and "sleep" in unknown["allowedTypes"]  # type: ignore[operator]
    bad = error(cli("submit", "sleep", "--data", '{"seconds": -1}'), Exit.REFUSED)
    assert (bad["error"], bad["field"]) == ("INVALID_JOB_DATA", "seconds")
    assert cli("submit", "sleep", "--data", "{not json").exit_code == Exit.USAGE
    assert cli("submit", "sleep", "--data", "@/nonexistent.json").exit_code == Exit.USAGE
    assert cli("jobs", "frobnicate").exit_code == Exit.USAGE

    pending = ok_json("submit", "sleep", "--delay", "3600")
    timed_out = error(cli("jobs", "wait", pending["id"], "--timeout", "0.3", "--no-progress"), Exit.TIMEOUT)  # type: ignore[index]
    assert (timed_out["error"], timed_out["currentStatus"]) == ("JOB_TIMEOUT", "scheduled")

    anonymous = runner.invoke(app, ["jobs", "list"], env={"CONVEYOR_API_KEY": ""})
    assert error(anonymous, Exit.REFUSED)["error"] == "UNAUTHORIZED"
    viewer = runner.invoke(app, ["--api-key", admin.key("viewer"), "submit", "sleep"])
    assert error(viewer, Exit.REFUSED)["error"] == "FORBIDDEN"
    nobody = runner.invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "jobs", "list"])
    assert error(nobody, Exit.UNAVAILABLE)["error"] == "ERROR" and nobody.stderr


# --- monitoring -----------------------------------------------------------------------------------------


def test_stats_queues_health_and_top(admin: Served) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    ok_json("submit", "sleep", "--queue", queue, "--delay", "3600")
    stats = ok_json("stats")
    assert isinstance(stats, dict) and (stats["total"], stats["scheduled"]) == (1, 1) and "performance" in stats
    assert "SCHEDULED" in cli("stats").stdout and "THROUGHPUT" in cli("stats").stdout

    queues = {q["name"]: q for q in ok_json("queues")}  # type: ignore[union-attr]
    assert queues[queue]["scheduled"] == 1 and queues[queue]["paused"] is False
    paused = ok_json("queues", "pause", queue)
    assert paused == {**paused, "name": queue, "paused": True}  # type: ignore[dict-item]
    assert "paused" in cli("queues").stdout
    assert cli("queues", "resume", queue).stdout.strip() == f"queue {queue} resumed"
    operator_only = runner.invoke(app, ["--api-key", admin.key("user"), "queues", "pause", queue])
    assert error(operator_only, Exit.REFUSED)["status"] == 403

    health = ok_json("health")
    assert isinstance(health, dict) and health["status"] == "healthy" and health["live_workers"] >= 1
    top = cli("top", "--once")
    assert top.exit_code == 0, top.stderr
    assert "queues" in top.stdout and "running jobs (0)" in top.stdout and queue in top.stdout


# --- schedules, batches, cache, audit, API keys ---------------------------------------------------------------


def test_schedules(admin: Served) -> None:
    made = ok_json("schedules", "add", "sleep", "--every", "3600", "--name", "hourly", "--data", '{"seconds": 0}')
    assert isinstance(made, dict) and (made["name"], made["interval_seconds"], made["enabled"]) == (
        "hourly",
        3600,
        True,
    )
    assert [s["id"] for s in ok_json("schedules", "list")] == [made["id"]]  # type: ignore[union-attr]
    assert "every 3600s" in cli("schedules", "list").stdout
    assert ok_json("schedules", "pause", made["id"])["next_run_at"] is None  # type: ignore[index]
    assert ok_json("schedules", "resume", made["id"])["next_run_at"]  # type: ignore[index]
    ran = ok_json("schedules", "run", made["id"])
    assert isinstance(ran, dict) and ran["type"] == "sleep"
    assert ok_json("jobs", "wait", ran["id"])["status"] == "completed"  # type: ignore[index]
    assert "removed" in cli("jobs", "delete", ran["id"], "--purge").stdout
    assert error(cli("jobs", "show", ran["id"]), Exit.NOT_FOUND)["error"] == "JOB_NOT_FOUND"
    assert ok_json("schedules", "show", made["id"])["id"] == made["id"]  # type: ignore[index]
    assert cli("schedules", "delete", made["id"]).exit_code == 0
    assert error(cli("schedules", "show", made["id"]), Exit.NOT_FOUND)["error"] == "SCHEDULE_NOT_FOUND"
    bad = error(cli("schedules", "add", "sleep", "--cron", "0 25 * * *"), Exit.REFUSED)
    assert bad["field"] == "cron"


def test_batches(admin: Served) -> None:
    queue = f"cli-{uuid.uuid4().hex[:8]}"
    ok_json("queues", "pause", queue)  # the jobs wait: the batch is cancelled before any runs
    jobs = json.dumps([{"type": "sleep", "data": {"seconds": 30}, "queue": queue}] * 2)
    batch = ok_json("batches", "submit", "--jobs", jobs, "--name", "nightly", "--parallel-limit", "1")
    assert isinstance(batch, dict) and (batch["name"], batch["total"], batch["parallel_limit"]) == ("nightly", 2, 1)
    assert [b["id"] for b in ok_json("batches", "list")] == [batch["id"]]  # type: ignore[union-attr]
    assert "nightly" in cli("batches", "list").stdout
    assert len(ok_json("batches", "show", batch["id"])["jobs"]) == 2  # type: ignore[index]
    cancelled = ok_json("batches", "cancel", batch["id"])
    assert isinstance(cancelled, dict) and cancelled["status"] == "cancelled"
    assert error(cli("batches", "cancel", batch["id"]), Exit.REFUSED)["error"] == "BATCH_NOT_CANCELLABLE"
    assert cli("batches", "submit", "--jobs", '{"type": "sleep"}').exit_code == Exit.USAGE


def test_cache_audit_and_api_keys(admin: Served, tmp_path: Path) -> None:
    stats = ok_json("cache", "stats")
    assert isinstance(stats, dict) and stats["total_cached_results"] == 0
    assert cli("cache", "clear").exit_code == Exit.USAGE  # needs --yes
    assert ok_json("cache", "clear", "--yes", "--label", "country:Kenya") == {"cleared_results": 0}

    verdict = ok_json("audit", "verify")
    assert isinstance(verdict, dict) and verdict["ok"] is True and verdict["records"] > 0
    assert cli("audit", "verify").stdout.startswith("intact:")
    exported = tmp_path / "audit.csv"
    assert (
        cli("audit", "export", "--format", "csv", "--output", str(exported), "--action", "api_key.created").exit_code
        == 0
    )
    assert exported.read_text().startswith("seq,recordedAt,actorId")
    assert json.loads(cli("audit", "export").stdout)[-1]["action"] == "audit.exported"
    assert cli("audit", "export", "--format", "xml").exit_code == Exit.USAGE

    created = cli("apikey", "create", "--role", "user", "--name", "ci")
    assert created.exit_code == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    key_id = key.split("_")[1]
    listed = {k["id"]: k for k in ok_json("apikey", "list")}  # type: ignore[union-attr]
    assert listed[key_id]["name"] == "ci" and listed[key_id]["active"] is True
    as_user = runner.invoke(app, ["--api-key", key, "submit", "noop", "--json"])
    assert as_user.exit_code == 0, as_user.stderr
    assert ok_json("apikey", "revoke", key_id)["active"] is False  # type: ignore[index]
    assert error(cli("apikey", "revoke", "0123456789abcdef"), Exit.NOT_FOUND)["error"] == "API_KEY_NOT_FOUND"
    forbidden = runner.invoke(app, ["--api-key", key, "audit", "verify"])
    assert forbidden.exit_code == Exit.REFUSED  # a revoked key: 401, refused


# --- where a command goes: the rule, the config file ------------------------------------------------------------


def test_commands_that_work_either_way_follow_the_rule(admin: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    ok_json("submit", "noop")
    over_http = ok_json("stats")
    assert isinstance(over_http, dict) and "performance" in over_http  # the server's shape
    # --database-url: straight in the database (every organisation's jobs, counts by status)
    direct = cli("stats", "--database-url", admin.database_url)
    assert direct.exit_code == 0 and "performance" not in json.loads(direct.stdout)
    # no server configured, CONVEYOR_DATABASE_URL set: the database, as before the HTTP commands
    monkeypatch.delenv("CONVEYOR_URL")
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", admin.database_url)
    assert "performance" not in json.loads(cli("stats").stdout)
    assert json.loads(cli("audit", "verify").stdout)["ok"] is True
    # ... and a server given on the command line wins over CONVEYOR_DATABASE_URL
    assert "performance" in json.loads(cli("--url", admin.url, "stats", "--json").stdout)


def test_the_config_file_names_the_server_and_key(
    admin: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conveyor.toml"
    config.write_text(f'url = "{admin.url}"\napi_key = "{admin.key("operator")}"\ntimeout = 20\n')
    monkeypatch.delenv("CONVEYOR_URL")
    monkeypatch.delenv("CONVEYOR_API_KEY")
    monkeypatch.setenv("CONVEYOR_CONFIG", str(config))
    job = ok_json("submit", "noop")
    assert isinstance(job, dict) and job["status"] in ("pending", "running", "completed")
    config.write_text("url = [broken")
    assert cli("stats").exit_code == Exit.USAGE


def test_help_exit_codes_and_shell_completion() -> None:
    helped = runner.invoke(app, ["--help"])
    assert helped.exit_code == 0
    for command in (
        "submit",
        "jobs",
        "stats",
        "queues",
        "schedules",
        "batches",
        "cache",
        "audit",
        "apikey",
        "users",
        "top",
        "workers",
        "whoami",
    ):
        assert f"  {command} " in helped.stdout
    assert "3 not found" in helped.stdout and "--install-completion" in helped.stdout
    assert "enqueue" not in helped.stdout  # the older database-direct forms are hidden
    script = subprocess.run(
        [sys.executable, "-m", "conveyor", "--show-completion", "bash"],
        capture_output=True, text=True, env=base_env(""), timeout=60,
    )  # fmt: skip
    assert script.returncode == 0 and "complete" in script.stdout and "conveyor" in script.stdout


# --- in a terminal: the progress bar, Ctrl-C ----------------------------------------------------------------


# Run in the child before conveyor: take the terminal as its controlling terminal (so that
# Ctrl-C typed into it interrupts conveyor), then become conveyor. The test process itself is not
# forked (pty.fork): libraries it has loaded (JAX) warn against forking a threaded process.
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    " os.execv(sys.executable, [sys.executable, '-m', 'conveyor', *sys.argv[1:]])"
)


def in_terminal(
    args: list[str], env: dict[str, str], steps: list[tuple[str, bytes]], timeout: float = 90
) -> tuple[str, int]:
    """Runs `conveyor ARGS` in a pseudo-terminal (its controlling terminal, 160 columns wide);
    each time the output shows a step's text, types the step's bytes. Returns what the
    terminal showed and the exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", TAKE_TERMINAL, *args],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child has gone and the terminal closed
                    break
                if not chunk:
                    break
                shown += chunk
            if steps and steps[0][0] in shown.decode(errors="replace"):
                os.write(master, steps.pop(0)[1])
        else:
            child.kill()
            pytest.fail(f"no exit in {timeout} s; the terminal showed:\n{shown.decode(errors='replace')}")
        code = child.wait(timeout=30)
    finally:
        os.close(master)
    return shown.decode(errors="replace"), code


def terminal_env(served: Served, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in base_env("").items() if k not in ("CONVEYOR_DATABASE_URL", "NO_COLOR", "COLUMNS")}
    return {**env, "CONVEYOR_URL": served.url, "CONVEYOR_API_KEY": api_key, "TERM": "xterm-256color"}


def test_submit_wait_shows_a_progress_bar_advancing(server: Served) -> None:
    shown, code = in_terminal(
        ["submit", "sleep", "--data", '{"seconds": 3}', "--wait"], terminal_env(server, server.key("user")), []
    )
    assert code == 0, shown
    text = ANSI.sub("", shown)
    # Nothing done yet (0/3, or 0% before the job has said how many steps it has: the worker
    # reports at most once a second, and a loaded machine may first store 1/3), then 1/3 or
    # 2/3, then 3/3
    start = min((at for at in (text.find("0%"), text.find("0/3")) if at >= 0), default=-1)
    end = text.find("3/3")
    between = [at for at in (text.find("1/3"), text.find("2/3")) if at >= 0]
    assert 0 <= start < min(between, default=-1) <= max(between) < end, text
    assert "items/s" in text and "ETA 0:00:0" in text and "sleep running" in text and "sleep completed" in text
    assert '"slept": 3' in text.replace("\r", "")  # the finished job, described


def test_ctrl_c_offers_to_cancel_the_job(server: Served) -> None:
    api_key = server.key("user")
    shown, code = in_terminal(
        ["submit", "sleep", "--data", '{"seconds": 60}', "--wait"],
        terminal_env(server, api_key),
        [("sleep running", b"\x03"), ("cancel the job", b"y\r")],
    )
    assert code == Exit.INTERRUPTED, shown
    text = ANSI.sub("", shown)
    job_id = re.search(r"cancel the job ([0-9a-f-]{36})\?", text)
    assert job_id and re.search(rf"job {job_id[1]}: (cancelled|cancellation requested)", text), text
    states = runner.invoke(app, ["--url", server.url, "--api-key", api_key, "jobs", "wait", job_id[1], "--json"])
    assert json.loads(states.stdout)["status"] == "cancelled"  # the job stopped at its next checkpoint


def test_ctrl_c_then_no_leaves_the_job_running(server: Served) -> None:
    api_key = server.key("user")
    shown, code = in_terminal(
        ["submit", "sleep", "--data", '{"seconds": 60}', "--wait"],
        terminal_env(server, api_key),
        [("sleep running", b"\x03"), ("cancel the job", b"\r")],  # Enter: the default, no
    )
    assert code == Exit.INTERRUPTED and "goes on" in shown, shown
    job_id = re.search(r"conveyor jobs wait ([0-9a-f-]{36})", ANSI.sub("", shown))
    assert job_id
    job = runner.invoke(app, ["--url", server.url, "--api-key", api_key, "jobs", "cancel", job_id[1], "--json"])
    assert job.exit_code == 0 and json.loads(job.stdout)["status"] == "running"  # it was still running
