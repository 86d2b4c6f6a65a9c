"""One million jobs on PostgreSQL: do reads stay fast, and does worker memory stay flat?

    python -m bench.million [--json] [--jobs 1000000] [--workers 2] [--concurrency 100]

1. Enqueues `--jobs` noop jobs (bulk calls of 10,000) into a database of its own.
2. With all of them stored and pending, times the reads an API serves (median and p99 of
   20 calls each): the newest page, the last page by offset and by key (the dashboard's
   `cursor`), a page filtered by status, a page filtered by kind, counts by status, and one
   claim of 100 jobs.
3. Starts `--workers` worker processes and samples their resident memory (VmRSS) every
   second while everything drains; prints RSS at 10 %, 50 % and 100 % of the drain and the
   growth between 10 % and 100 % (flat memory: growth near zero), and the drain rate.

Slow on purpose (minutes): not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from conveyor import Conveyor, JobFilter, JobRequest, Settings, Status
from conveyor.model import Outcome, OutcomeKind

ROOT = Path(__file__).resolve().parent.parent
BATCH = 10_000
DRAIN_LIMIT_SECONDS = 1800


def log(message: str) -> None:
    sys.stderr.write(f"million: {message}\n")


async def enqueue_all(app: Conveyor, jobs: int) -> float:
    started = time.perf_counter()
    for done in range(0, jobs, BATCH):
        n = min(BATCH, jobs - done)
        await app.engine.enqueue_many([JobRequest("noop", {}) for _ in range(n)])
        if (done // BATCH) % 20 == 0:
            log(f"enqueued {done + n:,}")
    return jobs / (time.perf_counter() - started)


async def timed(call: Any, repeat: int = 20) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[-1], 2)}


async def time_reads(app: Conveyor) -> dict[str, dict[str, float]]:
    engine, store = app.engine, app.store

    async def claim_and_release() -> None:
        # Claim 100 and put them straight back, so the drain still has every job.
        claimed = await store.claim_jobs(["default"], 100, "bench-million-probe", timedelta(seconds=30))
        await store.flush([Outcome(j.id, j.attempt, "bench-million-probe", OutcomeKind.RELEASED) for j in claimed])

    # The dashboard's deep pages: the last page by offset, and the same page by key (the
    # `cursor` of GET /api/v1/jobs: the created_at and id of the job before it).
    total = sum((await engine.counts()).values())
    deep = (await engine.list(limit=1, offset=max(total - 51, 0)))[0][0]
    return {
        "list_newest": await timed(lambda: engine.list(limit=50)),
        "list_last_page_by_offset": await timed(lambda: engine.list(limit=50, offset=max(total - 50, 0)), repeat=3),
        "list_last_page_by_cursor": await timed(
            lambda: engine.list(limit=50, after=(deep.created_at, deep.created_at, deep.id))
        ),
        "list_by_status": await timed(lambda: engine.list(JobFilter(statuses=(Status.PENDING,)), limit=50)),
        "list_by_kind": await timed(lambda: engine.list(JobFilter(kinds=("noop",)), limit=50)),
        "count_by_status": await timed(lambda: engine.counts(), repeat=5),
        "claim_100": await timed(claim_and_release),
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_workers(url: str, workers: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "CONVEYOR_AUTO_MIGRATE": "false", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--concurrency", str(concurrency), "--log-level", "warning"]
    return [subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True) for _ in range(workers)]


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for p in processes:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


async def drain(app: Conveyor, url: str, jobs: int, workers: int, concurrency: int) -> dict[str, Any]:
    processes = start_workers(url, workers, concurrency)
    samples: list[tuple[int, float]] = []  # (completed, largest worker RSS in MB)
    started = time.perf_counter()
    try:
        while True:
            await asyncio.sleep(1)
            completed = (await app.engine.counts()).get("completed", 0)
            sizes = [m for m in (rss_mb(p.pid) for p in processes) if m is not None]
            if sizes:
                samples.append((completed, max(sizes)))
            if completed >= jobs:
                break
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a worker exited during the drain")
            if time.perf_counter() - started > DRAIN_LIMIT_SECONDS:
                raise RuntimeError(f"drain not finished after {DRAIN_LIMIT_SECONDS} s: {completed:,} of {jobs:,}")
            if len(samples) % 15 == 0:
                log(f"drained {completed:,}; worker RSS {samples[-1][1]:.1f} MB")
        seconds = time.perf_counter() - started
    finally:
        stop_workers(processes)

    def rss_at(fraction: float) -> float:
        return next(rss for done, rss in samples if done >= fraction * jobs)

    return {
        "drain_per_s": round(jobs / seconds),
        "rss_mb_at_10pct": round(rss_at(0.1), 1),
        "rss_mb_at_50pct": round(rss_at(0.5), 1),
        "rss_mb_at_100pct": round(rss_at(1.0), 1),
        "rss_growth_mb_10_to_100pct": round(rss_at(1.0) - rss_at(0.1), 1),
        "rss_mb_peak": round(max(rss for _, rss in samples), 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (a `timeout` wrapper, a CI limit) cancels the run like Ctrl-C does, so the worker
    # processes are stopped and the database dropped instead of draining on, orphaned.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    server = os.environ.get("CONVEYOR_DATABASE_URL", DEFAULT_SERVER_URL)
    database = PostgresDatabase(server, "conveyor_bench_million")
    await database.recreate()
    app = Conveyor.from_settings(Settings(database_url=database.url))
    try:
        await app.start()
        result: dict[str, Any] = {"jobs": args.jobs, "workers": args.workers, "concurrency": args.concurrency}
        result["bulk_enqueue_per_s"] = round(await enqueue_all(app, args.jobs))
        log("timing reads with every job stored")
        result["reads_with_all_stored"] = await time_reads(app)
        log("draining")
        result.update(await drain(app, database.url, args.jobs, args.workers, args.concurrency))
        return result
    finally:
        await app.close()
        try:
            await database.drop()
        except psycopg.Error as exc:  # the figures above matter more than the clean-up
            log(f"could not drop {database.url}: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args()
    try:
        result = asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("million: stopped before the end; workers stopped, database dropped\n")
        raise SystemExit(130) from None
    sys.stdout.write((json.dumps(result) if args.json else json.dumps(result, indent=2)) + "\n")


if __name__ == "__main__":
    main()
