"""The jobs list's query plans and times on PostgreSQL with a million jobs, for every sort key.

    python -m bench.list_plans [--json] [--jobs 1000000] [--keep]

Makes its own database (conveyor_bench_list_plans) on the server of $CONVEYOR_DATABASE_URL,
migrates it and fills it with `--jobs` jobs in one INSERT … SELECT (created over the last 24
hours; 90 % finished, the rest pending or scheduled; ten priorities, four types, two
organisations), then VACUUM ANALYZE. For each sort key of the jobs list, ascending and
descending, it runs the store's own statements (conveyor.store.ordering, the same filter
translation) under EXPLAIN (ANALYZE, BUFFERS): the first page, and the page past a cursor
taken from deep in the list (the 900,000th job), both for a super admin (no filter) and for an
admin of one organisation. It prints, per statement, the execution time and the plan's nodes
(an index scan in order answers in milliseconds; a Sort over the table means an index is
missing). The database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bench.databases import DEFAULT_SERVER_URL, PostgresDatabase, libpq_url
from conveyor import Conveyor, Settings
from conveyor.model import SORT_KEYS, JobFilter, JobOrder, Visibility
from conveyor.store import ordering
from conveyor.store.filters import filter_clauses
from conveyor.store.schema import jobs

DATABASE = "conveyor_bench_list_plans"
PAGE = 50
DEEP = 900_000
log = logging.getLogger("bench.list_plans")

SEED = """
INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts, attempt, run_at, created_at,
                           updated_at, started_at, completed_at, owner_org_id, owner_user_id, cancel_requested,
                           item_errors_dropped)
SELECT gen_random_uuid(),
       (ARRAY['noop', 'report', 'email', 'export'])[1 + n %% 4],
       'default',
       CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.90 THEN 'failed'
            WHEN r < 0.97 THEN 'pending' ELSE 'scheduled' END,
       1 + (n * 7) %% 10,
       '{}'::jsonb, 3, CASE WHEN r < 0.90 THEN 1 ELSE 0 END,
       CASE WHEN r >= 0.97 THEN now() + (n %% 1000) * interval '1 minute' ELSE at END,
       at, at,
       CASE WHEN r < 0.90 THEN at + interval '1 second' END,
       CASE WHEN r < 0.90 THEN at + interval '1 second' + random() * interval '10 minutes' END,
       CASE WHEN random() < 0.1 THEN 'org-b' ELSE 'org-a' END, 'u', false, 0
FROM (SELECT n, random() AS r, now() - interval '24 hours' + n * (interval '24 hours' / %(jobs)s) AS at
      FROM generate_series(1, %(jobs)s) AS n) AS s
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.list_plans", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (seeding takes a while)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    report = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("CONVEYOR_DATABASE_URL", DEFAULT_SERVER_URL)
    database = PostgresDatabase(server, DATABASE)
    url = database.url
    async with await psycopg.AsyncConnection.connect(libpq_url(server), autocommit=True) as conn:
        exists = await (await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))).fetchone()
    if exists and args.keep:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            stored = await (await conn.execute("SELECT count(*) FROM conveyor_jobs")).fetchone()
        exists = stored is not None and stored[0] == args.jobs
    if not (exists and args.keep):
        await database.recreate()
        await seed(url, args.jobs)
    try:
        return await explain_all(url)
    finally:
        if not args.keep:
            await database.drop()


async def seed(url: str, count: int) -> None:
    app = Conveyor.from_settings(Settings(database_url=url))
    await app.start()  # migrates
    await app.close()
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(SEED, {"jobs": count})
        await conn.execute("VACUUM (ANALYZE) conveyor_jobs")
    log.info("seeded %s jobs in %.0f s", f"{count:,}", time.perf_counter() - started)


def statement(order: JobOrder, where: JobFilter, after: ordering.After | None) -> list[str]:
    """The SQL the store runs for a page (one statement per segment), with literal values."""
    out = []
    by_status = ordering.reads_by_status(order, where)
    for segment in ordering.segments(order, after):
        select = ordering.page(filter_clauses(where), order, segment, limit=PAGE, offset=0, by_status=by_status)
        out.append(str(select.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})))
    return out


def nodes(plan: dict[str, Any]) -> list[str]:
    name = plan["Node Type"] + (f" using {plan['Index Name']}" if "Index Name" in plan else "")
    return [name, *(n for child in plan.get("Plans", []) for n in nodes(child))]


async def explain_all(url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    scopes = {"all": JobFilter(), "org-a": JobFilter(visible_to=Visibility(org_id="org-a"))}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for key in SORT_KEYS:
            for descending in (False, True):
                order = JobOrder(key, descending)
                for scope, where in scopes.items():
                    deep = await cursor_at(conn, order, where)
                    for page, after in (("first", None), ("deep", deep)):
                        name = f"{'-' if descending else ''}{key} {scope} {page}"
                        total_ms, plan_nodes = 0.0, []
                        for sql in statement(order, where, after):
                            row = await (
                                await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
                            ).fetchone()
                            plan = row[0][0]
                            total_ms += plan["Execution Time"]
                            plan_nodes.append(" > ".join(nodes(plan["Plan"])))
                        results[name] = {"ms": round(total_ms, 2), "plan": plan_nodes}
                        log.info("%-32s %8.2f ms  %s", name, total_ms, " | ".join(plan_nodes))
    return results


async def cursor_at(conn: psycopg.AsyncConnection[Any], order: JobOrder, where: JobFilter) -> ordering.After:
    """The sort value, created_at and id of the job DEEP rows into the listing (fewer: the last)."""
    select = (
        sa.select(ordering.COLUMNS[order.key], jobs.c.created_at, jobs.c.id)
        .where(*filter_clauses(where))
        .order_by(*ordering.order_by(order))
        .offset(DEEP if where.visible_to is None else DEEP // 2)
        .limit(1)
    )
    sql = str(select.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    row = await (await conn.execute(sql)).fetchone()
    assert row is not None, "fewer jobs than the deep cursor needs"
    return row[0], row[1], row[2]


if __name__ == "__main__":
    raise SystemExit(main())
