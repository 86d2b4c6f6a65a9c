"""Where a single enqueue's time goes on PostgreSQL, against one durable commit per call.

    python -m bench.enqueue_anatomy [--json] [--rounds 7] [--calls 1000]

`bench.engine` compares conveyor's single enqueue with its yardstick, one small row inserted
and committed per call (`postgres/commit`). This script takes both apart, one call at a time,
each subject on a connection of its own, in alternating rounds of `--calls` calls (medians
over the rounds, so that every subject sees the same disk):

- round_trip: `SELECT $1::int`, the protocol's round trip, nothing written;
- commit: the yardstick, as bench.engine runs it;
- commit_unflushed: the same with synchronous_commit off: its difference from commit is the
  WAL flush, the part of a durable commit the disk decides;
- job_row: the job row of a no-op enqueue inserted alone (its columns, its indexes), no
  audit record, no count, no NOTIFY;
- statement: the statement conveyor sends for that enqueue (the job row, its audit journal
  row, its count delta and its NOTIFY in one statement), its parameters made beforehand;
- enqueue: `engine.enqueue("noop", {})`, everything included (validation, the rows, the
  pool, the statement).

For each, microseconds a call, the rate as a share of the commit's (bench.engine's ratio:
the target is 0.8 or more) and WAL bytes a call. The database `conveyor_anatomy` on the
server of $CONVEYOR_DATABASE_URL (default postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor)
is made afresh and dropped after. With --json, stdout gets one JSON object and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.databases import COMMIT_PROBE_INSERT, COMMIT_PROBE_TABLE, PostgresDatabase, libpq_url, server_url
from conveyor import Conveyor, Settings
from conveyor.engine import JobRequest
from conveyor.model import utc_now
from conveyor.store.postgres import one_job_insert
from conveyor.store.rows import created_record, job_of_new, row_of

DATABASE = "conveyor_anatomy"
SUBJECTS = ("round_trip", "commit", "commit_unflushed", "job_row", "statement", "enqueue")
TARGET = 0.8  # the issue's: a single enqueue's rate within 20 % of one durable commit's

log = logging.getLogger("bench.enqueue_anatomy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, each subject's calls in turn")
    parser.add_argument("--calls", type=int, default=1000, help="calls of each subject a round")
    args = parser.parse_args(argv)
    args.server_url = server_url(parser)
    return args


def enqueue_statements(app: Conveyor, calls: int) -> list[tuple[str, dict[str, Any]]]:
    """`calls` no-op enqueues' statements and parameters, as the store would send them."""
    out = []
    for _ in range(calls):
        new = app.engine.prepare(JobRequest("noop", {}))
        now = utc_now()
        out.append(one_job_insert(row_of(new, now), created_record(job_of_new(new, now), new, now)))
    return out


def bare_job_insert(statement: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The job row of an enqueue's statement inserted alone: its columns, without the audit
    journal's parameters (audit_*)."""
    _sql, params = statement
    row = {c: v for c, v in params.items() if not c.startswith("audit_")}
    # column names from our own statement's parameters; values are parameters (bandit B608)
    sql = f"INSERT INTO conveyor_jobs ({', '.join(row)}) VALUES ({', '.join(f'%({c})s' for c in row)})"  # nosec B608
    return sql, row


class Anatomy:
    def __init__(self, app: Conveyor, url: str) -> None:
        self._app = app
        self._url = url
        self._conns: dict[str, psycopg.AsyncConnection[Any]] = {}

    async def open(self) -> None:
        for name in ("round_trip", "commit", "job_row", "statement", "wal"):
            self._conns[name] = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        self._conns["commit_unflushed"] = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, options="-c synchronous_commit=off"
        )
        await self._conns["commit"].execute(COMMIT_PROBE_TABLE)

    async def close(self) -> None:
        for conn in self._conns.values():
            await conn.close()

    async def _wal_lsn(self) -> int:
        cursor = await self._conns["wal"].execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    def calls_of(self, subject: str, calls: int) -> Callable[[], Awaitable[None]]:
        """One round's calls of `subject`, anything they need made beforehand."""
        if subject == "enqueue":
            engine = self._app.engine

            async def enqueues() -> None:
                for _ in range(calls):
                    await engine.enqueue("noop", {})

            return enqueues
        cursor = self._conns[subject].cursor()
        if subject == "round_trip":
            work = [("SELECT %s::int", (i,)) for i in range(calls)]
        elif subject in ("commit", "commit_unflushed"):
            work = [(COMMIT_PROBE_INSERT, (Jsonb({"i": i}),)) for i in range(calls)]
        elif subject == "statement":
            work = enqueue_statements(self._app, calls)
        else:
            work = [bare_job_insert(s) for s in enqueue_statements(self._app, calls)]

        async def statements() -> None:
            for sql, params in work:
                await cursor.execute(sql, params)  # psycopg prepares it from the 5th call on

        return statements

    async def round(self, calls: int) -> dict[str, tuple[float, float]]:
        """Each subject's microseconds and WAL bytes a call, in this round."""
        out = {}
        for subject in SUBJECTS:
            run = self.calls_of(subject, calls)
            lsn = await self._wal_lsn()
            started = time.perf_counter()
            await run()
            elapsed = time.perf_counter() - started
            wal = await self._wal_lsn() - lsn
            out[subject] = (elapsed / calls * 1e6, wal / calls)
        return out


def summary(rounds: list[dict[str, tuple[float, float]]]) -> dict[str, Any]:
    commit_us = statistics.median(r["commit"][0] for r in rounds)
    subjects = {}
    for subject in SUBJECTS:
        times = sorted(r[subject][0] for r in rounds)
        us = statistics.median(times)
        subjects[subject] = {
            "us_per_call": round(us, 1),
            "us_range": [round(times[0], 1), round(times[-1], 1)],
            "rate_against_commit": round(commit_us / us, 3),
            "wal_bytes_per_call": round(statistics.median(r[subject][1] for r in rounds)),
        }
    us = {s: f["us_per_call"] for s, f in subjects.items()}
    return {
        "rounds": len(rounds),
        "subjects": subjects,
        "parts_us": {
            "flush": round(us["commit"] - us["commit_unflushed"], 1),
            "job_row_over_commit": round(us["job_row"] - us["commit"], 1),
            "journal_count_notify": round(us["statement"] - us["job_row"], 1),
            "python": round(us["enqueue"] - us["statement"], 1),
        },
        # What the target allows a single enqueue: the commit's time over 0.8.
        "target_us": round(commit_us / TARGET, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server_url = libpq_url(args.server_url)
    database = PostgresDatabase(server_url, DATABASE)
    await database.recreate()
    app = Conveyor.from_settings(Settings(database_url=database.url))
    anatomy = Anatomy(app, database.url)
    try:
        await app.start()  # applies the migrations
        await anatomy.open()
        await anatomy.round(min(args.calls, 100))  # warm: prepared statements, the pool, caches
        rounds = []
        for i in range(args.rounds):
            rounds.append(await anatomy.round(args.calls))
            log.info("round %d: %s", i + 1, {s: round(us) for s, (us, _wal) in rounds[-1].items()})
    finally:
        await anatomy.close()
        await app.close()
        await database.drop()
    return {**summary(rounds), "calls_per_round": args.calls}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migrations of the fresh database
    result = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    lines = [f"{'':18} {'us/call':>8} {'range':>15} {'rate/commit':>12} {'WAL B/call':>11}"]
    for subject, f in result["subjects"].items():
        low, high = f["us_range"]
        lines.append(
            f"{subject:18} {f['us_per_call']:8.1f} {f'{low:.0f}-{high:.0f}':>15}"
            f" {f['rate_against_commit']:12.3f} {f['wal_bytes_per_call']:11d}"
        )
    parts = result["parts_us"]
    lines.append(
        f"parts, us: the commit's flush {parts['flush']}, the job row over the commit"
        f" {parts['job_row_over_commit']}, its journal row + count + NOTIFY {parts['journal_count_notify']},"
        f" the engine's Python {parts['python']}"
    )
    lines.append(
        f"the target (rate 0.8 of the commit's) allows an enqueue {result['target_us']} us;"
        f" {result['rounds']} rounds of {result['calls_per_round']} calls"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
