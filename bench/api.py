"""The HTTP API on PostgreSQL: job creation throughput and the latency of reads with many jobs stored.

    python -m bench.api [--json] [--jobs 1000000] [--connections 32] [--duration 10] [--repeats 3]

1. Makes a database of its own, conveyor_bench_api, on the server of $CONVEYOR_DATABASE_URL
   (default postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor; its role needs CREATEDB),
   and drops it at the end, also when something failed.
2. Seeds `--jobs` noop jobs in this process through the library (`enqueue_many`, 10,000 a call,
   COPY), then one UPDATE spreads their creation over the last 24 hours (in id order)
   and marks a random 90 % completed (started 0-2 s after creation, ran 10-510 ms), and
   VACUUM ANALYZE tidies up after it, as autovacuum would.
3. Creates an admin API key with `conveyor apikey create`, then starts
   `conveyor serve --no-worker --workers N --log-level warning` (N: `--server-workers`) and waits for
   GET /api/v1/jobs/health.
4. From another process (bench/httpload.py: HTTP/1.1 keep-alive on asyncio streams, spawned),
   over loopback:
   - reads with every seeded job stored, `--read-requests` each (at most 60 s) on
     `--read-connections` connections after a warm-up: GET /api/v1/jobs?limit=50, the same
     with &status=pending, and GET /api/v1/jobs/stats/summary;
   - create: POST /api/v1/jobs {"type": "noop", "data": {}} on `--connections` connections,
     `--warmup` s then `--duration` s, `--repeats` times; the run with the median req/s is
     reported (with its own p50 and p99);
   - get: GET /api/v1/jobs/{id} over ids the create runs returned, the same way.

Latency is from the request's first byte written to its answer's last byte read, as the load
process sees it; req/s is measured requests over the time from the first measured send to the
last measured answer. p99 is nearest-rank. Everything runs on one machine (the server, its
PostgreSQL and the load process share the cores), so figures move with whatever else runs.

With --json, stdout gets one JSON object and nothing else; progress and the table go to stderr.
Exit status 1 when a phase had transport errors or non-2xx answers (they are in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import os
import platform
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from bench import httpload
from bench.databases import PostgresDatabase, server_url, server_version
from conveyor import Conveyor, JobRequest, Settings
from conveyor.model import Owner

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "conveyor_bench_api"
HOST = "127.0.0.1"
SEED_BATCH = 10_000
SEED_SPREAD_HOURS = 24
SEED_COMPLETED = 0.9
READ_MAX_SECONDS = 60.0
READ_WARMUP_REQUESTS = 5
GET_IDS = 10_000
START_LIMIT_S = 60.0
CREATE_BODY = b'{"type": "noop", "data": {}}'
TARGETS = {  # figure: (comparison, bound), from the HTTP API's issue
    "create_rps": (">=", 1500),
    "create_p99_ms": ("<=", 50),
    "list_p99_ms": ("<=", 50),
    "list_status_p99_ms": ("<=", 50),
    "stats_p99_ms": ("<=", 50),
}

log = logging.getLogger("bench.api")


class BenchError(Exception):
    pass


def main() -> int:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s: %(message)s")
    log.setLevel(logging.INFO)
    try:
        report = asyncio.run(run(args))
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except asyncio.CancelledError:  # SIGTERM: the server and the database were cleaned up
        log.error("terminated")
        return 143
    except BenchError as exc:
        log.error("%s", exc)
        return 1
    table = render_table(report)
    if args.json:
        sys.stderr.write(table)
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(table)
    return 1 if report["errors"] else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs stored for the reads (default 1000000)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections for create and get")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per create/get run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each create/get run")
    parser.add_argument("--repeats", type=int, default=3, help="create and get runs; the median run is reported")
    parser.add_argument("--read-connections", type=int, default=1, help="connections for list and stats")
    parser.add_argument("--read-requests", type=int, default=200, help="measured requests per list/stats phase")
    parser.add_argument("--server-workers", type=int, default=1, help="API processes (conveyor serve --workers)")
    args = parser.parse_args()
    for name in ("jobs", "connections", "repeats", "read_connections", "read_requests", "server_workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be above 0 and --warmup at least 0")
    args.server_url = server_url(parser)
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so the server is stopped and the database dropped.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    started = time.monotonic()
    env = await environment(args.server_url)
    notes: list[str] = []
    database = PostgresDatabase(args.server_url, DATABASE)
    await database.recreate()
    try:
        seeded = await seed(database.url, args.jobs)
        key = await create_api_key(database.url)
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-api-") as workdir:
            async with Server(database.url, Path(workdir) / "serve.log", args.server_workers) as server:
                figures = await measure(args, server, key)
    finally:
        try:
            await database.drop()
        except psycopg.Error as exc:
            log.error("could not drop %s: %s", DATABASE, exc)
    env["loadgen_event_loop"] = figures.pop("loadgen_event_loop")
    env["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return {
        **figures,
        "jobs_stored": args.jobs,
        "connections": args.connections,
        "read_connections": args.read_connections,
        "server_workers": args.server_workers,
        "seeded": seeded,
        "targets": {k: f"{op} {bound}" for k, (op, bound) in TARGETS.items()},
        "meets_targets": {k: meets(figures.get(k), op, bound) for k, (op, bound) in TARGETS.items()},
        "notes": notes,
        "run_seconds": round(time.monotonic() - started, 1),
        "environment": env,
    }


# --- seeding -----------------------------------------------------------------------------------

SPREAD_AND_FINISH = """
WITH ordered AS (
    SELECT id, now() - %(spread)s::interval + (row_number() OVER (ORDER BY id)) * %(step)s::interval AS created,
           random() < %(completed)s AS done,
           random() * interval '2 seconds' AS wait,
           (0.01 + random() * 0.5) * interval '1 second' AS took
    FROM conveyor_jobs
)
UPDATE conveyor_jobs AS j
SET created_at = o.created,
    run_at = o.created,
    status = CASE WHEN o.done THEN 'completed' ELSE j.status END,
    attempt = CASE WHEN o.done THEN 1 ELSE j.attempt END,
    started_at = CASE WHEN o.done THEN o.created + o.wait END,
    completed_at = CASE WHEN o.done THEN o.created + o.wait + o.took END,
    updated_at = CASE WHEN o.done THEN o.created + o.wait + o.took ELSE o.created END
FROM ordered AS o
WHERE j.id = o.id
"""


async def seed(url: str, jobs: int) -> dict[str, Any]:
    """`jobs` noop jobs of no organisation (what the CLI's admin key sees), a realistic mix."""
    log.info("seeding %s jobs", f"{jobs:,}")
    app = Conveyor.from_settings(Settings(database_url=url))
    started = time.perf_counter()
    try:
        await app.start()
        owner = Owner(org_id=None)
        for done in range(0, jobs, SEED_BATCH):
            batch = [JobRequest("noop", {}, owner=owner) for _ in range(min(SEED_BATCH, jobs - done))]
            await app.engine.enqueue_many(batch)
            if (done // SEED_BATCH) % 20 == 19:
                log.info("enqueued %s", f"{done + len(batch):,}")
        enqueue_s = time.perf_counter() - started
        # Chained now, as a running service would have done by the time anyone looks: else the
        # server measured next would be sealing the seeding's records (and filing the million
        # job ids they name) while it answers.
        sealing = time.perf_counter()
        await app.engine.audit.seal()
        seal_s = time.perf_counter() - sealing
    finally:
        await app.close()
    log.info("audit journal sealed in %.1f s", seal_s)
    log.info("enqueued %s in %.0f s; spreading and finishing 90 %% of them", f"{jobs:,}", enqueue_s)
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        params = {
            "spread": timedelta(hours=SEED_SPREAD_HOURS),
            "step": timedelta(hours=SEED_SPREAD_HOURS) / jobs,
            "completed": SEED_COMPLETED,
        }
        await conn.execute(SPREAD_AND_FINISH, params)
        await conn.execute("VACUUM (ANALYZE) conveyor_jobs")
        rows = await (await conn.execute("SELECT status, count(*) FROM conveyor_jobs GROUP BY status")).fetchall()
    update_s = time.perf_counter() - started
    by_status = {str(status): int(n) for status, n in sorted(rows)}
    log.info("seeded %s in %.0f s + %.0f s", by_status, enqueue_s, update_s)
    return {
        "jobs": jobs,
        "kind": "noop",
        "owner": "no organisation (the admin key's scope)",
        "by_status": by_status,
        "created_over_hours": SEED_SPREAD_HOURS,
        "enqueue_many_seconds": round(enqueue_s, 1),
        "audit_seal_seconds": round(seal_s, 1),
        "update_and_vacuum_seconds": round(update_s, 1),
        "how": (
            f"enqueue_many in batches of {SEED_BATCH:,}; then one UPDATE spread created_at evenly over the last "
            f"{SEED_SPREAD_HOURS} h in id order and marked a random {SEED_COMPLETED:.0%} completed (started 0-2 s "
            "after creation, ran 10-510 ms); then VACUUM ANALYZE"
        ),
    }


# One principal creates jobs as fast as the server takes them, into a queue a million deep:
# the point is the server's speed, not its creation limits (which would answer 429 and 503).
NO_CREATION_LIMITS = {"CONVEYOR_JOBS_PER_MINUTE": "0", "CONVEYOR_JOBS_PER_HOUR": "0", "CONVEYOR_MAX_QUEUE_SIZE": "0"}


async def create_api_key(url: str) -> str:
    argv = [sys.executable, "-m", "conveyor", "apikey", "create", "--role", "admin", "--name", "bench-api"]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "CONVEYOR_DATABASE_URL": url},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines or not lines[-1].startswith("cvk_"):
        raise BenchError(f"conveyor apikey create failed ({process.returncode}): {err.decode()[-2000:]}")
    return lines[-1].strip()


# --- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """`conveyor serve --no-worker` on a free port, its output in a log file; stopped on exit."""

    def __init__(self, database_url: str, log_path: Path, workers: int = 1) -> None:
        self.database_url = database_url
        self.workers = workers
        self.log_path = log_path
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        argv = [sys.executable, "-m", "conveyor", "serve", "--no-worker", "--host", HOST, "--port", str(self.port)]
        argv += ["--workers", str(self.workers), "--log-level", "warning"]
        log.info("starting %s", " ".join(["conveyor", *argv[3:]]))
        with self.log_path.open("wb") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv,
                env={**os.environ, "CONVEYOR_DATABASE_URL": self.database_url, **NO_CREATION_LIMITS},
                cwd=ROOT,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches us; we stop the server ourselves
            )
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _wait_ready(self) -> None:
        health = httpload.request_bytes("GET", "/api/v1/jobs/health", HOST, self.port)
        deadline = time.monotonic() + START_LIMIT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.returncode is not None:
                raise BenchError(f"conveyor serve exited ({self.process.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError, httpload.ProtocolError):
                status, _ = await httpload.fetch(HOST, self.port, health, timeout=2)
                if status == 200:
                    return
            await asyncio.sleep(0.1)
        raise BenchError(
            f"conveyor serve did not answer /api/v1/jobs/health in {START_LIMIT_S:.0f} s:\n{self.log_tail()}"
        )

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float | None:
        """CPU of the server and its API processes (uvicorn's workers are its children)."""
        if self.process is None:
            return None
        pids = [self.process.pid, *children(self.process.pid)]
        times = [t for t in map(process_cpu_seconds, pids) if t is not None]
        return sum(times) if times else None


def children(pid: int) -> list[int]:
    try:
        direct = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []
    return direct + [grand for c in direct for grand in children(c)]


def process_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies over all cores since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None
    total = sum(values[:8])
    return total - values[3] - values[4], total  # idle, iowait


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Measured:
    result: httpload.PhaseResult
    server_cpu_pct: float | None
    loadgen_cpu_pct: float | None
    machine_busy_pct: float | None
    db_sessions_opened: int | None

    def figures(self) -> dict[str, Any]:
        lat = self.result.latencies_ms
        return {
            "requests": len(lat),
            "rps": round(self.result.rps, 1),
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "max_ms": round(max(lat), 2) if lat else None,
            "non_2xx": self.result.failed,
            "server_cpu_pct": self.server_cpu_pct,
            "loadgen_cpu_pct": self.loadgen_cpu_pct,
            "machine_busy_pct": self.machine_busy_pct,
            "db_sessions_opened": self.db_sessions_opened,
        }


def percentile(samples: list[float], p: float) -> float | None:
    """Nearest rank."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)], 2)


class LoadGenerator:
    """A spawned process running bench.httpload.serve: phases go to it one at a time over a pipe."""

    def __init__(self, server: Server, stats: psycopg.AsyncConnection[Any]) -> None:
        self.server = server
        self.stats = stats  # on the benchmark database, to count the sessions the server opens
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=httpload.serve, args=(child,), name="bench-httpload", daemon=True)
        self.process.start()
        child.close()
        self.errors: list[str] = []

    def _call(self, request: httpload.Phase | str) -> Any:
        self.conn.send(request)
        outcome = self.conn.recv()
        if isinstance(outcome, Exception):
            raise BenchError(f"the load process failed: {type(outcome).__name__}: {outcome}")
        return outcome

    async def call(self, request: httpload.Phase | str) -> Any:
        try:
            return await asyncio.to_thread(self._call, request)
        except EOFError:
            raise BenchError(f"the load process ended (exit status {self.process.exitcode})") from None

    async def event_loop(self) -> str:
        return await self.call("event_loop")

    async def phase(self, name: str, requests: list[bytes], connections: int, **limits: Any) -> Measured:
        spec = httpload.Phase(name, HOST, self.server.port, tuple(requests), connections, **limits)
        sessions_before = await self.sessions()
        server_before, machine_before = self.server.cpu_seconds(), machine_cpu()
        wall = time.perf_counter()
        result: httpload.PhaseResult = await self.call(spec)
        wall = time.perf_counter() - wall
        server_after, machine_after = self.server.cpu_seconds(), machine_cpu()
        sessions_after = await self.sessions()
        sessions = None if sessions_before is None or sessions_after is None else sessions_after - sessions_before
        server_pct = None
        if server_before is not None and server_after is not None:
            server_pct = round(100 * (server_after - server_before) / wall, 1)
        machine_pct = None
        if machine_before and machine_after and machine_after[1] > machine_before[1]:
            machine_pct = round(
                100 * (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1]), 1
            )
        for error in result.errors:
            self.errors.append(f"{name}: {error}")
        if result.failed:
            self.errors.append(f"{name}: {result.failed} of {len(result.latencies_ms)} answers not 2xx")
        measured = Measured(result, server_pct, round(100 * result.cpu_s / wall, 1), machine_pct, sessions)
        figures = measured.figures()
        log.info(
            "%s: %s requests, %.0f req/s, p50 %s ms, p99 %s ms (server CPU %s%%, load %s%%, machine %s%%; "
            "%s new database sessions)",
            name,
            f"{figures['requests']:,}",
            figures["rps"],
            figures["p50_ms"],
            figures["p99_ms"],
            figures["server_cpu_pct"],
            figures["loadgen_cpu_pct"],
            figures["machine_busy_pct"],
            figures["db_sessions_opened"],
        )
        if server_after is None or (self.server.process and self.server.process.returncode is not None):
            raise BenchError(f"conveyor serve exited during {name}:\n{self.server.log_tail()}")
        return measured

    async def sessions(self) -> int | None:
        """Sessions ever opened on the database (PostgreSQL 14+; its statistics lag by up to a second)."""
        with contextlib.suppress(psycopg.Error):
            await asyncio.sleep(1.1)  # let the server's backends flush their statistics
            await self.stats.execute("SELECT pg_stat_clear_snapshot()")
            cursor = await self.stats.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            row = await cursor.fetchone()
            return int(row[0]) if row and row[0] is not None else None
        return None

    def close(self) -> None:
        """Ends the process at once, also in the middle of a phase (Ctrl-C, SIGTERM, a failure)."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(10)
        self.conn.close()


async def sanity_check(server: Server, key: str, jobs: int) -> None:
    """The API answers before anything is timed, and the admin key sees every seeded job."""
    listing = httpload.request_bytes("GET", "/api/v1/jobs?limit=50", HOST, server.port, token=key)
    status, body = await httpload.fetch(HOST, server.port, listing, timeout=120)
    if status != 200:
        raise BenchError(f"GET /api/v1/jobs answered {status}: {body[:500]!r}")
    total = json.loads(body)["data"]["total"]
    if total != jobs:
        raise BenchError(f"GET /api/v1/jobs counts {total} jobs, {jobs} were seeded")
    stats = httpload.request_bytes("GET", "/api/v1/jobs/stats/summary", HOST, server.port, token=key)
    status, body = await httpload.fetch(HOST, server.port, stats, timeout=120)
    if status != 200:
        raise BenchError(f"GET /api/v1/jobs/stats/summary answered {status}: {body[:500]!r}")


async def measure(args: argparse.Namespace, server: Server, key: str) -> dict[str, Any]:
    def req(method: str, path: str, body: bytes | None = None) -> bytes:
        return httpload.request_bytes(method, path, HOST, server.port, token=key, body=body)

    stats = await psycopg.AsyncConnection.connect(server.database_url, autocommit=True)
    load = LoadGenerator(server, stats)
    try:
        loop_name = await load.event_loop()
        await sanity_check(server, key, args.jobs)
        reads = {}
        read_limits = {
            "count": args.read_requests,
            "duration_s": READ_MAX_SECONDS,
            "warmup_count": READ_WARMUP_REQUESTS * args.read_connections,
        }
        for name, path in (
            ("list", "/api/v1/jobs?limit=50"),
            ("list_status", "/api/v1/jobs?limit=50&status=pending"),
            ("stats", "/api/v1/jobs/stats/summary"),
        ):
            reads[name] = (await load.phase(name, [req("GET", path)], args.read_connections, **read_limits)).figures()

        timed = {"duration_s": args.duration, "warmup_s": args.warmup}
        creates = []
        ids: list[str] = []
        for i in range(args.repeats):
            measured = await load.phase(
                f"create {i + 1}/{args.repeats}",
                [req("POST", "/api/v1/jobs", CREATE_BODY)],
                args.connections,
                capture_ids=GET_IDS - len(ids),
                **timed,
            )
            ids += measured.result.ids
            creates.append(measured.figures())
        if not ids:
            raise BenchError("no job ids came back from the create runs")
        gets = []
        get_requests = [req("GET", f"/api/v1/jobs/{job_id}") for job_id in ids]
        for i in range(args.repeats):
            measured = await load.phase(f"get {i + 1}/{args.repeats}", get_requests, args.connections, **timed)
            gets.append(measured.figures())
    finally:
        load.close()
        await stats.close()
    create, get = median_run(creates), median_run(gets)
    return {
        "create_rps": create["rps"],
        "create_p50_ms": create["p50_ms"],
        "create_p99_ms": create["p99_ms"],
        "get_rps": get["rps"],
        "get_p50_ms": get["p50_ms"],
        "get_p99_ms": get["p99_ms"],
        "list_p50_ms": reads["list"]["p50_ms"],
        "list_p99_ms": reads["list"]["p99_ms"],
        "list_status_p50_ms": reads["list_status"]["p50_ms"],
        "list_status_p99_ms": reads["list_status"]["p99_ms"],
        "stats_p50_ms": reads["stats"]["p50_ms"],
        "stats_p99_ms": reads["stats"]["p99_ms"],
        "phases": {"create_runs": creates, "get_runs": gets, **reads},
        "workload": {
            "create": f"POST /api/v1/jobs {CREATE_BODY.decode()}",
            "get": f"GET /api/v1/jobs/{{id}} over {len(ids):,} ids created by the create runs",
            "list": "GET /api/v1/jobs?limit=50",
            "list_status": "GET /api/v1/jobs?limit=50&status=pending",
            "stats": "GET /api/v1/jobs/stats/summary",
            "create_get_runs": f"{args.repeats} x ({args.warmup:g} s warm-up + {args.duration:g} s) each",
            "reads": (
                f"{args.read_requests} requests each (at most {READ_MAX_SECONDS:g} s) after "
                f"{READ_WARMUP_REQUESTS} warm-up requests per connection, before the create runs"
            ),
        },
        "errors": load.errors,
        "loadgen_event_loop": loop_name,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median req/s (the lower middle one of an even number)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[(len(ordered) - 1) // 2]


def meets(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value >= bound if op == ">=" else value <= bound


# --- the environment and the table -----------------------------------------------------------------


async def environment(server_url: str) -> dict[str, Any]:
    try:
        postgres = await server_version(server_url)
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL is not reachable ({exc}); scripts/postgres-up.sh starts it") from None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": postgres,
        "conveyor": _version("conveyor"),
        "libraries": {name: _version(name) for name in ("fastapi", "uvicorn", "uvloop", "httptools", "psycopg")},
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "git": await _git_state(),
    }


async def _git_state() -> dict[str, Any] | None:
    """The commit measured, and whether the working tree differed from it (read-only git calls)."""
    try:
        head = await _run_quietly("git", "rev-parse", "HEAD")
        changed = await _run_quietly("git", "status", "--porcelain", "--", "conveyor")
    except (OSError, BenchError):
        return None
    return {"commit": head.strip(), "conveyor_has_uncommitted_changes": bool(changed.strip())}


async def _run_quietly(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise BenchError(f"{argv[0]} exited {process.returncode}")
    return out.decode()


def _version(distribution: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(distribution)
    return None


def render_table(report: dict[str, Any]) -> str:
    env, seeded, phases = report["environment"], report["seeded"], report["phases"]
    conns, read_conns = report["connections"], report["read_connections"]
    rows = [
        ("create_rps", f"create, req/s ({conns} connections)", ",.0f", ">= 1,500"),
        ("create_p50_ms", "create p50, ms", ".1f", ""),
        ("create_p99_ms", "create p99, ms", ".1f", "<= 50"),
        ("get_rps", f"get, req/s ({conns} connections)", ",.0f", ""),
        ("get_p50_ms", "get p50, ms", ".1f", ""),
        ("get_p99_ms", "get p99, ms", ".1f", ""),
        ("list_p50_ms", f"list p50, ms ({read_conns} conn.)", ".1f", ""),
        ("list_p99_ms", "list p99, ms", ".1f", "<= 50"),
        ("list_status_p50_ms", "list status=pending p50, ms", ".1f", ""),
        ("list_status_p99_ms", "list status=pending p99, ms", ".1f", "<= 50"),
        ("stats_p50_ms", "stats/summary p50, ms", ".1f", ""),
        ("stats_p99_ms", "stats/summary p99, ms", ".1f", "<= 50"),
    ]
    by_status = ", ".join(f"{n:,} {s}" for s, n in seeded["by_status"].items())
    lines = [
        f"conveyor {env['conveyor']} HTTP API on PostgreSQL {env['postgresql']}, {env['cpu_count']} CPUs, "
        f"{report['server_workers']} server process (serve --no-worker), load from another process over loopback",
        f"stored: {report['jobs_stored']:,} noop jobs created over the last {seeded['created_over_hours']} h "
        f"({by_status}); seeding took {seeded['enqueue_many_seconds']:.0f} s + "
        f"{seeded['update_and_vacuum_seconds']:.0f} s",
        "",
        f"{'':32}  {'measured':>10}  {'target':>9}",
    ]
    for key, label, fmt, target in rows:
        value = report.get(key)
        cell = "-" if value is None else format(value, fmt)
        verdict = ""
        if key in report["meets_targets"]:
            verdict = {True: "ok", False: "MISSED", None: "?"}[report["meets_targets"][key]]
        lines.append(f"{label:32}  {cell:>10}  {target:>9}  {verdict}".rstrip())
    lines += ["", "every phase (the create and get figures above are the runs with the median req/s):"]
    lines.append(
        f"{'':14}{'requests':>9}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'server CPU':>12}{'load CPU':>10}{'machine':>9}{'new PG sessions':>17}"
    )
    named = [(name, phases[name]) for name in ("list", "list_status", "stats")]
    named += [(f"create {i + 1}", run) for i, run in enumerate(phases["create_runs"])]
    named += [(f"get {i + 1}", run) for i, run in enumerate(phases["get_runs"])]
    for name, f in named:
        lines.append(
            f"{name:14}{f['requests']:>9,}{f['rps']:>8,.0f}{_cell(f['p50_ms'])}{_cell(f['p99_ms'])}{_cell(f['max_ms'])}"
            f"{_pct(f['server_cpu_pct'], 12)}{_pct(f['loadgen_cpu_pct'], 10)}{_pct(f['machine_busy_pct'], 9)}"
            f"{'-' if f['db_sessions_opened'] is None else f['db_sessions_opened']:>17}"
        )
    lines.append(
        "CPU: server and load generator in % of one core, machine in % of all cores (other work included); "
        f"load average {env['load_average_1m_at_start']} at the start, {env['load_average_1m_at_end']} at the end"
    )
    lines.append(f"the whole run took {report['run_seconds']:.0f} s")
    lines += [f"note: {note}" for note in report["notes"]]
    lines += [f"error: {error}" for error in report["errors"][:20]]
    return "\n".join(lines) + "\n"


def _cell(value: float | None, width: int = 9) -> str:
    return f"{'-' if value is None else format(value, '.1f'):>{width}}"


def _pct(value: float | None, width: int) -> str:
    return f"{'-' if value is None else format(value, '.0f') + '%':>{width}}"


if __name__ == "__main__":
    sys.exit(main())
