"""How long the claim (and the outcome write after it) takes on PostgreSQL, in one process.

A small probe, not a load test: 20,000 pending no-op jobs in the claimed queue beside 10,000
in another (so that the planner sees more than one queue, as in any real table), then rounds
of one claim of 10 and one flush of their 10 completions, timed separately (medians and p90
over the rounds). With `--held N` it also stores N jobs waiting for a slot in batches with a
parallel_limit (what batches add to the table), to show what they cost the claim. Run it against two
checkouts to compare them (PYTHONPATH chooses the code):

    PYTHONPATH=/path/to/checkout .venv/bin/python -m bench.claim_timing [--held 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from datetime import timedelta
from typing import Any

import conveyor
from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase
from conveyor import Conveyor, Settings
from conveyor.model import Outcome, OutcomeKind
from conveyor.store.migrate import upgrade

SERVER = os.environ.get("CONVEYOR_BENCH_DATABASE_URL", DEFAULT_SERVER_URL)
LEASE = timedelta(seconds=30)


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 3),
        "mean_ms": round(1000 * statistics.fmean(ordered), 3),
    }


async def store_held(app: Conveyor, held: int) -> None:
    """`held` jobs waiting for a slot: batches of 50 with parallel_limit 1 (49 of each wait)."""
    from conveyor.engine import JobRequest

    per_batch = 50
    for _ in range(held // (per_batch - 1)):
        requests = [JobRequest("noop", {}, queue="batched") for _ in range(per_batch)]
        await app.batches.submit("bench", requests, parallel_limit=1)


async def measure(url: str, *, jobs: int, rounds: int, batch: int, held: int) -> dict[str, Any]:
    app = Conveyor.from_settings(Settings(database_url=url, auto_migrate=False))
    async with app:
        if held:
            await store_held(app, held)
        from conveyor.engine import JobRequest

        for _ in range(2):
            await app.engine.enqueue_many([JobRequest("noop", {}, queue="other") for _ in range(5000)])
        for start in range(0, jobs, 5000):
            await app.engine.enqueue_many([JobRequest("noop", {}) for _ in range(min(5000, jobs - start))])
        async with app.store._raw() as conn:  # type: ignore[attr-defined]
            await conn.execute("VACUUM ANALYZE conveyor_jobs")
        claims: list[float] = []
        flushes: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            claimed = await app.store.claim_jobs(["default"], batch, "bench-worker", LEASE)
            claims.append(time.perf_counter() - started)
            outcomes = [Outcome(j.id, j.attempt, "bench-worker", OutcomeKind.COMPLETED, result=None) for j in claimed]
            started = time.perf_counter()
            await app.store.flush(outcomes)
            flushes.append(time.perf_counter() - started)
    return {"claim": quantiles(claims), "flush": quantiles(flushes)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--held", type=int, default=0, help="jobs waiting in batches (needs batches)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    database = PostgresDatabase(SERVER, f"conveyor_claim_timing_{os.getpid()}")
    await database.recreate()
    try:
        await asyncio.to_thread(upgrade, database.url)
        figures = await measure(database.url, jobs=args.jobs, rounds=args.rounds, batch=args.batch, held=args.held)
    finally:
        await database.drop()
    report = {"code": os.path.dirname(os.path.dirname(conveyor.__file__)), **vars(args), **figures}
    if args.json:
        print(json.dumps(report))  # noqa: T201
        return
    print(f"code: {report['code']}; {args.jobs} pending, {args.held} held, {args.rounds} rounds of {args.batch}")  # noqa: T201
    for name in ("claim", "flush"):
        q = figures[name]
        print(f"{name:6} p50 {q['p50_ms']:.3f} ms  p90 {q['p90_ms']:.3f} ms  mean {q['mean_ms']:.3f} ms")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
