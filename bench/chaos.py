"""Chaos: SIGKILL conveyor workers at random moments while jobs drain on PostgreSQL, then count
the jobs lost and the jobs completed twice. Both must be 0.

    python -m bench.chaos [--json] [--jobs 10000] [--kills 100] [--cuts 10] [--restarts 0] [--workers 3]

What happens: a fresh database (`conveyor_chaos`, dropped first) gets the schema and `--jobs`
`chaos.work` jobs (bench/chaos_jobs.py: each sleeps about `--job-ms`, with 50 retries, since
every kill costs the jobs it held an attempt). `--workers` worker processes drain them. At
random moments one of those holding running jobs is SIGKILLed and a replacement started,
until `--kills` kills; the gaps are spread over the expected rest of the drain so the
kills land throughout it. Spread among the kills, `--cuts` times every connection to the
database is cut (pg_terminate_backend), as a server restart or a failover cuts them: the
workers' claims, heartbeats and outcome writes in flight fail, and they must carry on.
`--restarts` times (none by default: it restarts the whole server, every database on it), the
server itself is restarted with `--restart-command`: for a while no connection can be made.
Workers use a short lease (`--lease`) so the jobs a dead worker held are rescued quickly.
Once the kills are done the run waits for the drain to settle (bounded by
`--settle-timeout`), stops the survivors with SIGTERM (they drain), and measures.

What is measured, independently of conveyor's own code:
- lost: jobs not `completed` once the run has settled (what is left is shown by status);
- completed_twice: jobs that entered `completed` more than once. A trigger on conveyor_jobs,
  installed after the schema migration, inserts the job id into `chaos_completions` on every
  transition into `completed`, so a second recorded completion cannot hide;
- rescued: transitions out of `running` that conveyor's rescue of expired leases made (a
  second trigger, into `chaos_rescues`);
- executions, executed_more_than_once: bodies of jobs that ran to their end (each inserts a row
  into `chaos_executions` over its own connection). More than once is allowed, since execution
  is at-least-once; completed_unexecuted (a completion with no execution) is not, beyond
  executions_unrecorded: bodies whose row could not be inserted (its connection cut by the run:
  they log it, and the job completes all the same);
- per kill, the running jobs the dead worker held (kills_mid_job, jobs_orphaned);
- the workers' logs: tracebacks, errors and warnings, with samples (the logs are kept).
The database is left in place for inspection; the next run drops it.

Progress goes to stderr; the result to stdout (one JSON object with --json). The exit code is
1 when a job was lost, completed twice or completed without having run (beyond the executions
that could not be recorded), 2 when the run could not make its `--kills` kills
before the jobs drained (raise --job-ms or --jobs), else 0. Every worker process is killed on
the way out, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shlex
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.chaos_jobs import EXECUTIONS_TABLE, QUEUE, UNRECORDED, jobtypes
from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from conveyor import Conveyor, JobRequest, Settings

REPO = Path(__file__).resolve().parents[1]
CHAOS_DATABASE = "conveyor_chaos"
# This machine's server (Debian's cluster, as scripts/postgres-up.sh starts it).
RESTART_COMMAND = "pg_ctlcluster --skip-systemctl-redirect 15 main restart"
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})
ENQUEUE_CHUNK = 1000
MAX_RETRIES = 50

TICK = 0.1  # seconds between looks at the fleet and the clock
PROGRESS_EVERY = 5.0
FIRST_GAP = 1.0  # mean gap before the drain's pace is known
MIN_GAP, MAX_GAP = 0.2, 5.0
# Spread the kills over this share of the expected drain, leaving its tail to the survivors.
DRAIN_SHARE = 0.8
SHUTDOWN_GRACE = 5.0  # what surviving workers get to finish their jobs on SIGTERM
STOP_WAIT = SHUTDOWN_GRACE + 15.0
# Workers that die by themselves this often are broken (say, conveyor mid-edit): stop restarting.
MAX_UNEXPECTED_EXITS = 10
LOG_SAMPLES = 5

log = logging.getLogger("bench.chaos")

# The trigger functions only INSERT: they run inside conveyor's own transactions and must
# neither fail nor change what conveyor writes.
RECORDERS = (
    "CREATE TABLE chaos_completions (job_id uuid NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    """CREATE FUNCTION chaos_note_completion() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO chaos_completions (job_id) VALUES (NEW.id); RETURN NULL; END $$""",
    """CREATE TRIGGER chaos_completion AFTER UPDATE ON conveyor_jobs FOR EACH ROW
       WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM 'completed')
       EXECUTE FUNCTION chaos_note_completion()""",
    """CREATE TABLE chaos_rescues (job_id uuid NOT NULL, attempt int NOT NULL, worker_id text,
       status text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())""",
    """CREATE FUNCTION chaos_note_rescue() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO chaos_rescues (job_id, attempt, worker_id, status)
             VALUES (NEW.id, NEW.attempt, OLD.worker_id, NEW.status); RETURN NULL; END $$""",
    # A rescue leaves `running` keeping the attempt and recording a WorkerLost error; a worker's
    # own release gives the attempt back, and its other outcomes record their own error.
    """CREATE TRIGGER chaos_rescue AFTER UPDATE ON conveyor_jobs FOR EACH ROW
       WHEN (OLD.status = 'running' AND NEW.status <> 'running' AND NEW.attempt = OLD.attempt
             AND NEW.error ->> 'type' = 'WorkerLost')
       EXECUTE FUNCTION chaos_note_rescue()""",
    f"""CREATE TABLE {EXECUTIONS_TABLE} (job_id uuid NOT NULL, attempt int NOT NULL, pid int NOT NULL,
        at timestamptz NOT NULL DEFAULT clock_timestamp())""",
)


# --- options and database ---------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to drain")
    parser.add_argument("--kills", type=int, default=100, help="workers to SIGKILL during the drain")
    parser.add_argument("--cuts", type=int, default=10, help="times to cut every connection to the database")
    parser.add_argument("--restarts", type=int, default=0, help="times to restart the PostgreSQL server")
    parser.add_argument(
        "--restart-command", default=RESTART_COMMAND, help="how to restart it (run as given, without a shell)"
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes kept alive")
    parser.add_argument("--concurrency", type=int, default=20, help="jobs each worker runs at once")
    parser.add_argument("--job-ms", type=int, default=50, help="mean job duration (each is 0.5x-1.5x of it)")
    parser.add_argument("--lease", type=float, default=2.0, help="CONVEYOR_LEASE_SECONDS for the workers")
    parser.add_argument("--settle-timeout", type=float, default=120.0, help="longest wait for the drain to end")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="longest the killing may go on")
    parser.add_argument("--seed", type=int, default=None, help="seed for job durations, gaps and victims")
    args = parser.parse_args(argv)
    if min(args.jobs, args.kills, args.workers, args.concurrency) < 1:
        parser.error("--jobs, --kills, --workers and --concurrency must be at least 1")
    if not (0 <= args.cuts <= args.kills and 0 <= args.restarts <= args.kills):
        parser.error("--cuts and --restarts must be between 0 and --kills (they are made among the kills)")
    if args.lease <= 0 or args.job_ms < 0:
        parser.error("--lease must be positive and --job-ms not negative")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def database_urls() -> tuple[str, str]:
    """(the database to connect to while recreating the chaos one, the chaos one), as libpq URLs."""
    given = sa.make_url(os.environ.get("CONVEYOR_DATABASE_URL", DEFAULT_SERVER_URL))
    if given.get_backend_name() != "postgresql":
        raise SystemExit(f"chaos needs PostgreSQL, not {given.get_backend_name()}")
    base = given.set(drivername="postgresql")  # psycopg takes libpq URLs, without a +driver
    chaos = base.set(database=CHAOS_DATABASE)
    return base.render_as_string(hide_password=False), chaos.render_as_string(hide_password=False)


async def recreate_database(admin_url: str) -> None:
    await PostgresDatabase(admin_url, CHAOS_DATABASE).recreate()


async def prepare_jobs(url: str, args: argparse.Namespace, rng: random.Random) -> None:
    """Schema (conveyor migrates it), the recorders, then the jobs: all before any worker starts."""
    app = Conveyor.from_settings(Settings(database_url=url), registries=[jobtypes])
    await app.start()
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for statement in RECORDERS:
                await conn.execute(statement)
        low, high = args.job_ms // 2, args.job_ms * 3 // 2
        for start in range(0, args.jobs, ENQUEUE_CHUNK):
            count = min(ENQUEUE_CHUNK, args.jobs - start)
            requests = [
                JobRequest("chaos.work", {"ms": rng.randint(low, high)}, max_retries=MAX_RETRIES) for _ in range(count)
            ]
            await app.engine.enqueue_many(requests)
    finally:
        await app.close()


class Monitor:
    """The script's own connection to the chaos database, which it opens again after it
    restarts the server."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection | None = None

    async def open(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def execute(self, query: str, params: Any = None) -> psycopg.AsyncCursor[Any]:
        assert self._conn is not None, "the monitor is not open"  # nosec B101 - a bug in this script
        return await self._conn.execute(query, params)


async def status_counts(db: Monitor) -> dict[str, int]:
    rows = await (await db.execute("SELECT status, count(*) FROM conveyor_jobs GROUP BY status")).fetchall()
    return {status: n for status, n in rows}


def unfinished(counts: dict[str, int]) -> int:
    return sum(n for status, n in counts.items() if status not in TERMINAL)


async def running_by_pid(db: Monitor) -> dict[int, int]:
    """Running jobs by the pid of the worker that claimed them (conveyor's worker ids are
    host:pid:tag). Includes dead workers' jobs until they are rescued."""
    cur = await db.execute("SELECT worker_id, count(*) FROM conveyor_jobs WHERE status = 'running' GROUP BY 1")
    return {int(worker_id.rsplit(":", 2)[1]): n for worker_id, n in await cur.fetchall()}


async def scalar(db: Monitor, query: str) -> Any:
    return (await (await db.execute(query)).fetchone())[0] or 0


async def measure(db: Monitor, jobs: int) -> dict[str, Any]:
    counts = await status_counts(db)
    twice = "SELECT count(*) FROM (SELECT job_id FROM {} GROUP BY job_id HAVING count(*) > 1) AS t"
    return {
        "lost": jobs - counts.get("completed", 0),
        "completed_twice": await scalar(db, twice.format("chaos_completions")),
        "completions_recorded": await scalar(db, "SELECT count(*) FROM chaos_completions"),
        "rescued": await scalar(db, "SELECT count(*) FROM chaos_rescues"),
        "executions": await scalar(db, f"SELECT count(*) FROM {EXECUTIONS_TABLE}"),
        "executed_more_than_once": await scalar(db, twice.format(EXECUTIONS_TABLE)),
        "completed_unexecuted": await scalar(
            db,
            f"""SELECT count(*) FROM conveyor_jobs j WHERE j.status = 'completed'
                AND NOT EXISTS (SELECT 1 FROM {EXECUTIONS_TABLE} e WHERE e.job_id = j.id)""",
        ),
        "attempts_max": await scalar(db, "SELECT max(attempt) FROM conveyor_jobs"),
        "attempts_mean": round(float(await scalar(db, "SELECT avg(attempt) FROM conveyor_jobs")), 3),
        "statuses": counts,
    }


# --- the workers ------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    started: float  # time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal_group(self, sig: signal.Signals) -> None:
        # Each worker leads its own process group: the signal reaches any child it started too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)


@dataclass
class Fleet:
    """`size` worker processes, each in its own session, logging to its own file."""

    size: int
    env: dict[str, str]
    command: list[str]
    log_dir: Path
    alive: list[WorkerProcess] = field(default_factory=list)
    started_total: int = 0
    killed: int = 0
    unexpected_exits: list[dict[str, int]] = field(default_factory=list)

    async def start_one(self) -> None:
        self.started_total += 1
        log_path = self.log_dir / f"worker-{self.started_total:04d}.log"
        with log_path.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=REPO,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.alive.append(WorkerProcess(process, time.monotonic()))

    async def fill(self) -> None:
        """Replace workers that exited on their own (noted: a worker should never just die)."""
        for worker in [w for w in self.alive if w.process.returncode is not None]:
            self.alive.remove(worker)
            self.unexpected_exits.append({"pid": worker.pid, "returncode": worker.process.returncode})
            log.warning("worker %d exited on its own with %d", worker.pid, worker.process.returncode)
        if len(self.unexpected_exits) >= MAX_UNEXPECTED_EXITS:
            raise RuntimeError(f"{len(self.unexpected_exits)} workers exited on their own: see {self.log_dir}")
        while len(self.alive) < self.size:
            await self.start_one()

    def pick_victim(self, rng: random.Random, running: dict[int, int]) -> WorkerProcess | None:
        """A random live worker among those running jobs: a worker still importing conveyor
        (seconds, on a busy machine) or idle would make a kill that tests little."""
        working = [w for w in self.alive if running.get(w.pid) and w.process.returncode is None]
        return rng.choice(working) if working else None

    async def kill(self, worker: WorkerProcess) -> None:
        worker.signal_group(signal.SIGKILL)
        self.alive.remove(worker)
        self.killed += 1
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a Ctrl-C's cancellation.
        async with asyncio.timeout(10):
            await worker.process.wait()

    async def stop(self) -> list[int | None]:
        """SIGTERM every worker (they drain); SIGKILL those still up STOP_WAIT later. Returns
        their exit codes, None for those that had to be killed."""
        for worker in self.alive:
            worker.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        codes: list[int | None] = []
        for worker in self.alive:
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    codes.append(await worker.process.wait())
            except TimeoutError:
                log.warning("worker %d did not stop within %.0fs of SIGTERM: killing it", worker.pid, STOP_WAIT)
                worker.signal_group(signal.SIGKILL)
                codes.append(None)
        self.alive.clear()
        return codes

    def kill_all_now(self) -> None:
        """The last resort on the way out (errors, Ctrl-C): synchronous, needs no event loop."""
        for worker in self.alive:
            worker.signal_group(signal.SIGKILL)
        self.alive.clear()


def worker_environment(url: str, args: argparse.Namespace) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "CONVEYOR_DATABASE_URL": url,
        "CONVEYOR_QUEUES": QUEUE,
        "CONVEYOR_JOBTYPES": "bench.chaos_jobs:jobtypes",
        "CONVEYOR_LEASE_SECONDS": str(args.lease),
        "CONVEYOR_SHUTDOWN_GRACE_SECONDS": str(SHUTDOWN_GRACE),
        # The schema is in place before any worker starts; skipping the check makes restarts quicker.
        "CONVEYOR_AUTO_MIGRATE": "false",
        # A worker that crashes in C code (an unexpected exit by a signal) leaves its Python
        # stack in its log.
        "PYTHONFAULTHANDLER": "1",
    }


def worker_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "conveyor.cli", "worker",
        "--concurrency", str(args.concurrency), "--log-level", "warning",
    ]  # fmt: skip


# --- the chaos --------------------------------------------------------------------------------


@dataclass
class Pacer:
    """Spreads the kills still to make over the expected rest of the drain, at random gaps."""

    jobs: int
    kills: int
    rng: random.Random
    started: float = field(default_factory=time.monotonic)

    def gap(self, finished: int, kills_done: int) -> float:
        elapsed = time.monotonic() - self.started
        if finished == 0 or elapsed <= 0:
            mean = FIRST_GAP
        else:
            expected_rest = (self.jobs - finished) / (finished / elapsed)
            mean = min(max(DRAIN_SHARE * expected_rest / max(self.kills - kills_done, 1), MIN_GAP), MAX_GAP)
        return mean * self.rng.uniform(0.5, 1.5)


@dataclass
class Progress:
    """A line on stderr every PROGRESS_EVERY seconds."""

    started: float = field(default_factory=time.monotonic)
    last: float = 0.0

    def report(self, phase: str, counts: dict[str, int], fleet: Fleet) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        by_status = " ".join(f"{s}={n}" for s, n in sorted(counts.items()))
        log.info(
            "%6.1fs %s kills=%d workers=%d %s", now - self.started, phase, fleet.killed, len(fleet.alive), by_status
        )


async def cut_connections(db: Monitor) -> int:
    """Terminate every other client session of the chaos database, as a restart or a failover
    would end them (its autovacuum workers are the server's own); how many were cut."""
    return int(
        await scalar(
            db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
    )


async def restart_server(db: Monitor, command: str) -> float:
    """Restart the server with `command`; the seconds until the chaos database answered again."""
    started = time.monotonic()
    await db.close()
    process = await asyncio.create_subprocess_exec(*shlex.split(command))
    if await process.wait() != 0:
        raise RuntimeError(f"{command!r} exited with {process.returncode}")
    await db.open()
    return round(time.monotonic() - started, 2)


async def kill_during_drain(
    db: Monitor,
    fleet: Fleet,
    args: argparse.Namespace,
    rng: random.Random,
    progress: Progress,
    cuts: list[int],
    restarts: list[float],
) -> list[dict[str, Any]]:
    """SIGKILL a random working worker at random gaps until `--kills` kills, the jobs run out,
    or `--max-seconds` pass; cut every connection once every (kills/cuts)th kill is done and
    some worker has a session to cut (the sessions cut appended to `cuts`), and restart the
    server after every (kills/restarts)th kill (the seconds it took appended to `restarts`).
    Returns one record per kill."""
    pacer = Pacer(args.jobs, args.kills, rng)
    kills: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.max_seconds
    next_kill = time.monotonic() + pacer.gap(0, 0)
    while len(kills) < args.kills and time.monotonic() < deadline:
        await fleet.fill()
        counts = await status_counts(db)
        progress.report("chaos", counts, fleet)
        if not unfinished(counts):
            log.warning("the jobs drained after %d of %d kills", len(kills), args.kills)
            break
        victim = fleet.pick_victim(rng, await running_by_pid(db)) if time.monotonic() >= next_kill else None
        if victim is not None:
            uptime = time.monotonic() - victim.started
            await fleet.kill(victim)
            # Counted after the kill: what the dead worker left for the rescue.
            held = (await running_by_pid(db)).get(victim.pid, 0)
            kills.append({"pid": victim.pid, "uptime": round(uptime, 2), "held": held})
            if len(restarts) < args.restarts and len(kills) * args.restarts >= (len(restarts) + 1) * args.kills:
                restarts.append(await restart_server(db, args.restart_command))
                log.info("server restarted in %.1fs", restarts[-1])
            finished = sum(counts.values()) - unfinished(counts)
            next_kill = time.monotonic() + pacer.gap(finished, len(kills))
        # Workers spend much of their short lives starting up, without a session yet: a cut
        # that ended none is tried again on the next tick rather than counted.
        cut_due = len(cuts) < args.cuts and len(kills) * args.cuts >= (len(cuts) + 1) * args.kills
        if cut_due and (cut := await cut_connections(db)):
            cuts.append(cut)
        await asyncio.sleep(TICK)
    return kills


async def wait_for_settling(db: Monitor, fleet: Fleet, args: argparse.Namespace, progress: Progress) -> bool:
    """Let the survivors finish the drain, rescues of the last kills' jobs included. True once
    no job is left unfinished; False if `--settle-timeout` passed first."""
    deadline = time.monotonic() + args.settle_timeout
    while time.monotonic() < deadline:
        await fleet.fill()
        counts = await status_counts(db)
        progress.report("settle", counts, fleet)
        if not unfinished(counts):
            return True
        await asyncio.sleep(TICK * 5)
    return False


# --- worker logs and the report ---------------------------------------------------------------

LEVEL = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) ")


def scan_worker_logs(log_dir: Path) -> dict[str, Any]:
    """Tracebacks and log lines by level over every worker's log, with the first few samples."""
    found: dict[str, Any] = {"tracebacks": 0, "errors": 0, "warnings": 0, "samples": []}
    for path in sorted(log_dir.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if UNRECORDED in line:
                found["executions_unrecorded"] = found.get("executions_unrecorded", 0) + 1
            level = LEVEL.match(line)
            if "Traceback (most recent call last)" in line:
                found["tracebacks"] += 1
            elif level is None:
                continue
            elif level.group(1) == "WARNING":
                found["warnings"] += 1
                continue
            else:
                found["errors"] += 1
            if len(found["samples"]) < LOG_SAMPLES:
                found["samples"].append(f"{path.name}: {line[:300]}")
    return found


def exit_code(result: dict[str, Any]) -> int:
    if result["lost"] or result["completed_twice"] or result["completed_unexecuted"] > result["executions_unrecorded"]:
        return 1
    return 2 if result["kills"] < result["kills_target"] else 0


def print_text(result: dict[str, Any]) -> None:
    width = max(map(len, result))
    for key, value in result.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        sys.stdout.write(f"{key:<{width}}  {shown}\n")


async def run(args: argparse.Namespace, fleet: Fleet, admin_url: str, url: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    log.info("preparing %s with %d jobs (seed %d)", CHAOS_DATABASE, args.jobs, args.seed)
    await recreate_database(admin_url)
    await prepare_jobs(url, args, rng)
    db = Monitor(url)
    await db.open()
    try:
        progress = Progress()
        await fleet.fill()
        cuts: list[int] = []
        restarts: list[float] = []
        kills = await kill_during_drain(db, fleet, args, rng, progress, cuts, restarts)
        settled = await wait_for_settling(db, fleet, args, progress)
        drain_seconds = time.monotonic() - progress.started
        log.info(
            "%s after %.1fs; stopping %d workers",
            "settled" if settled else "NOT settled",
            drain_seconds,
            len(fleet.alive),
        )
        stop_codes = await fleet.stop()
        measured = await measure(db, args.jobs)
    finally:
        await db.close()
    worker_log = scan_worker_logs(fleet.log_dir)
    return {
        "kills": len(kills),
        "kills_target": args.kills,
        "jobs": args.jobs,
        "lost": measured.pop("lost"),
        "completed_twice": measured.pop("completed_twice"),
        "seconds": round(drain_seconds, 1),
        "settled": settled,
        **measured,
        "cuts": len(cuts),
        "sessions_cut": sum(cuts),
        "sessions_cut_each": cuts,
        "restarts": len(restarts),
        "restart_seconds": restarts,
        "kills_mid_job": sum(1 for k in kills if k["held"]),
        "held_per_kill": [k["held"] for k in kills],
        "jobs_orphaned": sum(k["held"] for k in kills),
        "victim_uptime_mean": round(sum(k["uptime"] for k in kills) / len(kills), 2) if kills else None,
        "workers_started": fleet.started_total,
        "unexpected_exits": fleet.unexpected_exits,
        "survivors_exit_codes": stop_codes,  # after SIGTERM; None: had to be killed
        "executions_unrecorded": worker_log.pop("executions_unrecorded", 0),
        "worker_log": worker_log,
        "worker_logs_dir": str(fleet.log_dir),
        "workers": args.workers,
        "concurrency": args.concurrency,
        "job_ms": args.job_ms,
        "lease_seconds": args.lease,
        "seed": args.seed,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Progress from this script only: conveyor and alembic log through the root logger too.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="chaos: %(message)s")
    log.setLevel(logging.INFO)
    # SIGTERM to the chaos run ends it like Ctrl-C: through the `finally` that kills the workers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    admin_url, url = database_urls()
    log_dir = Path(tempfile.mkdtemp(prefix="conveyor-chaos-"))
    fleet = Fleet(args.workers, worker_environment(url, args), worker_command(args), log_dir)
    started = time.monotonic()
    try:
        result = asyncio.run(run(args, fleet, admin_url, url))
    except KeyboardInterrupt:
        log.warning("interrupted; worker logs in %s, database %s left as it was", log_dir, CHAOS_DATABASE)
        return 130
    finally:
        fleet.kill_all_now()
    result["total_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print_text(result)
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
