"""How soon conveyor works again once its PostgreSQL database is back from an outage.

    python -m bench.recovery [--json] [--outages 0.5,3,8] [--rounds 3]

A fresh database (`conveyor_recovery` on the server of $CONVEYOR_DATABASE_URL, default
postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor; dropped first, dropped after), one idle
`conveyor worker` process and, in this process, a Conveyor that enqueues. Each round, for each
outage length: the database refuses connections and every session on it is cut (ALTER DATABASE
... ALLOW_CONNECTIONS false, then pg_terminate_backend: what a restart or a failover does to
clients, without restarting a server other databases share) for that many seconds, while the
enqueuer tries an enqueue every 0.25 s (an API still taking requests); then connections are
allowed again, and from that moment:

- enqueue_s: until an enqueue succeeds (the enqueuer tries every 20 ms);
- completed_s: until the worker has completed that job (watched every 10 ms over a connection
  of the script's own).

Per outage length, the median and the largest over the rounds. The worker logs at warning to
stderr. With --json, stdout gets one JSON object and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess  # nosec B404 - the worker is our own command
import sys
import time
from typing import Any
from uuid import UUID

import psycopg

from bench.databases import PostgresDatabase, libpq_url, server_url
from bench.harness import stop_process
from conveyor import Conveyor, Settings

DATABASE = "conveyor_recovery"
TRY_DURING_OUTAGE = 0.25  # seconds between enqueues tried while the database is away
TRY_AFTER_RETURN = 0.02
WATCH_EVERY = 0.01
GIVE_UP_AFTER = 60.0  # seconds after the return: a figure this large is a failure

log = logging.getLogger("bench.recovery")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--outages", default="0.5,3,8", help="outage lengths in seconds, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="times each outage length is measured")
    args = parser.parse_args(argv)
    args.server_url = server_url(parser)
    return args


class Outage:
    """The recovery database refusing connections, its sessions cut, over an administrator's
    connection to another database on the same server."""

    def __init__(self, admin: psycopg.AsyncConnection[Any]) -> None:
        self._admin = admin

    async def begin(self) -> int:
        await self._admin.execute(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS false')
        cursor = await self._admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend'",
            (DATABASE,),
        )
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def end(self) -> None:
        await self._admin.execute(f'ALTER DATABASE "{DATABASE}" ALLOW_CONNECTIONS true')


async def keep_trying(app: Conveyor, until: float) -> int:
    """Enqueue every TRY_DURING_OUTAGE seconds until `until` (monotonic); how many failed."""
    failed = 0
    while time.monotonic() < until:
        try:
            await app.engine.enqueue("noop", {})
        except Exception:  # noqa: BLE001 - what an outage raises is the store's to say
            failed += 1
        await asyncio.sleep(TRY_DURING_OUTAGE)
    return failed


async def first_enqueue(app: Conveyor, back: float) -> UUID:
    while True:
        try:
            return (await app.engine.enqueue("noop", {})).id
        except Exception:
            if time.monotonic() - back > GIVE_UP_AFTER:
                raise
            await asyncio.sleep(TRY_AFTER_RETURN)


async def completed(url: str, job_id: UUID, back: float) -> None:
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while True:
                    cursor = await conn.execute("SELECT status FROM conveyor_jobs WHERE id = %s", (job_id,))
                    row = await cursor.fetchone()
                    if row and row[0] == "completed":
                        return
                    if time.monotonic() - back > GIVE_UP_AFTER:
                        raise TimeoutError(f"job {job_id} not completed {GIVE_UP_AFTER:.0f} s after the return")
                    await asyncio.sleep(WATCH_EVERY)
        except psycopg.OperationalError:
            await asyncio.sleep(WATCH_EVERY)


async def one_outage(app: Conveyor, outage: Outage, url: str, seconds: float) -> dict[str, float]:
    cut = await outage.begin()
    failed = await keep_trying(app, time.monotonic() + seconds)
    await outage.end()
    back = time.monotonic()
    job_id = await first_enqueue(app, back)
    enqueued = time.monotonic() - back
    await completed(url, job_id, back)
    done = time.monotonic() - back
    log.info(
        "outage %.1f s (%d sessions cut, %d enqueues refused): enqueue after %.3f s, completed after %.3f s",
        seconds, cut, failed, enqueued, done,
    )  # fmt: skip
    return {"enqueue_s": enqueued, "completed_s": done}


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "CONVEYOR_AUTO_MIGRATE": "false"}
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--concurrency", "10", "--log-level", "warning"]
    return subprocess.Popen(argv, env=env, start_new_session=True)  # nosec B603 - our own command


def summary(trials: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": len(trials)}
    for key in ("enqueue_s", "completed_s"):
        values = [t[key] for t in trials]
        out[key] = {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server_url = libpq_url(args.server_url)
    database = PostgresDatabase(server_url, DATABASE)
    await database.recreate()
    lengths = [float(s) for s in args.outages.split(",")]
    trials: dict[float, list[dict[str, float]]] = {s: [] for s in lengths}
    app = Conveyor.from_settings(Settings(database_url=database.url))
    worker = None
    try:
        await app.start()  # applies the migrations before the worker starts
        worker = start_worker(database.url)
        async with await psycopg.AsyncConnection.connect(server_url, autocommit=True) as admin:
            outage = Outage(admin)
            warm = await app.engine.enqueue("noop", {})
            await completed(database.url, warm.id, time.monotonic())
            for _ in range(args.rounds):
                for seconds in lengths:
                    trials[seconds].append(await one_outage(app, outage, database.url, seconds))
    finally:
        await app.close()
        if worker is not None:
            code = stop_process(worker)
            log.info("worker exited %d", code)
        await database.drop()
    return {"outages": {f"{s:g}": summary(trials[s]) for s in lengths}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("psycopg").setLevel(logging.ERROR)  # the pool's every failed attempt
    result = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        for seconds, figures in result["outages"].items():
            enqueue, done = figures["enqueue_s"], figures["completed_s"]
            sys.stdout.write(
                f"outage {seconds} s: enqueue after {enqueue['median']:.3f} s (max {enqueue['max']:.3f}),"
                f" completed after {done['median']:.3f} s (max {done['max']:.3f}), {figures['rounds']} rounds\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
