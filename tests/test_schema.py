"""The schema: migrations equal the declared tables, and the hot queries use their indexes."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from conveyor.store.migrate import HEAD_REVISION, VERSION_TABLE, current_revision, head_revision, sync_engine, upgrade
from conveyor.store.schema import metadata

# Alembic cannot compare an index on an expression (`priority DESC`); the claim index is
# checked by name here and by the query-plan tests below.
EXPRESSION_INDEXES = {"ix_conveyor_jobs_claim"}


def _comparable(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _diff_and_indexes(url: str) -> tuple[list[Any], set[str]]:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            opts = {"version_table": VERSION_TABLE, "include_object": _comparable}
            diff = compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)
            indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("conveyor_jobs")}
            return diff, indexes
    finally:
        engine.dispose()


@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_build_exactly_the_declared_schema(database_url: str) -> None:
    assert current_revision(database_url) == head_revision()
    diff, indexes = _diff_and_indexes(database_url)
    assert diff == []
    assert indexes >= EXPRESSION_INDEXES


def test_head_revision_constant_is_alembics_head() -> None:
    # Processes skip importing Alembic when the database is at HEAD_REVISION: it must be the newest.
    assert head_revision() == HEAD_REVISION


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    upgrade(database_url)
    assert current_revision(database_url) == head_revision()


# With 50,000 jobs in the table the planner picks indexes over scans where they pay off, so
# these plans are the ones a large table gets (pgqueuer's query-plan guards do the same).
SEED_ROWS = """
    INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts, run_at,
                               created_at, updated_at, owner_org_id, labels, completed_at)
    SELECT gen_random_uuid(), 'k' || (n % 5), 'q' || (n % 3),
           CASE WHEN n % 500 = 0 THEN 'failed'  -- rare, as failures are: an index beats a scan
                ELSE (ARRAY['pending','completed','completed','completed','running','scheduled'])[n % 6 + 1] END,
           n % 10 + 1, '{}', 4, now(), now() - n * interval '1 second', now(), 'org' || (n % 50), '{}',
           now() - n * interval '1 second'
    FROM generate_series(1, 50000) AS n
"""

PLANS = {
    "claim": (
        """SELECT id FROM conveyor_jobs WHERE status = 'pending' AND queue IN ('q1')
           ORDER BY priority DESC, id LIMIT 100 FOR UPDATE SKIP LOCKED""",
        "ix_conveyor_jobs_claim",
    ),
    "list newest": (
        "SELECT * FROM conveyor_jobs ORDER BY created_at DESC, id DESC LIMIT 50",
        "ix_conveyor_jobs_created",
    ),
    "list by status": (
        "SELECT * FROM conveyor_jobs WHERE status = 'failed' ORDER BY created_at DESC LIMIT 50",
        "ix_conveyor_jobs_status_created",
    ),
    "list by organisation": (
        "SELECT * FROM conveyor_jobs WHERE owner_org_id = 'org7' ORDER BY created_at DESC LIMIT 50",
        "ix_conveyor_jobs_org_created",
    ),
    # Counting one status reads its index range; counting every status reads the whole table
    # however it is indexed (O(rows)), which the stats endpoints answer from a roll-up instead.
    "count one status": (
        "SELECT count(*) FROM conveyor_jobs WHERE status = 'failed'",
        "ix_conveyor_jobs_status_created",
    ),
    "stage due": (
        "SELECT id FROM conveyor_jobs WHERE status = 'scheduled' AND run_at <= now()",
        "ix_conveyor_jobs_scheduled",
    ),
    "rescue": (
        "SELECT id FROM conveyor_jobs WHERE status = 'running' AND lease_expires_at < now()",
        "ix_conveyor_jobs_running",
    ),
    # Retention's delete and the alerts' window read finished jobs by status and completion.
    "prune": (
        """SELECT id FROM conveyor_jobs WHERE status = 'completed' AND completed_at < now() - interval '1 hour'
           AND batch_id IS NULL ORDER BY completed_at LIMIT 500 FOR UPDATE SKIP LOCKED""",
        "ix_conveyor_jobs_finished",
    ),
    "alert window": (
        """SELECT owner_org_id, kind, status FROM conveyor_jobs
           WHERE status IN ('completed', 'failed', 'timeout') AND completed_at >= now() - interval '5 minutes'""",
        "ix_conveyor_jobs_finished",
    ),
}


@pytest.fixture(scope="module")
def large_postgres(postgres_url: str) -> Any:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor_jobs, conveyor_job_logs")
        conn.execute(SEED_ROWS)
        conn.execute("VACUUM ANALYZE conveyor_jobs")
    yield postgres_url
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor_jobs, conveyor_job_logs")


@pytest.mark.parametrize("name", list(PLANS))
def test_hot_queries_use_their_index_on_postgres(large_postgres: str, name: str) -> None:
    query, index = PLANS[name]
    with psycopg.connect(large_postgres) as conn:
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query))
    assert index in plan, plan
    assert "Seq Scan on conveyor_jobs" not in plan, plan


def test_owner_lookups_use_the_partial_owner_indexes_with_parameters(large_postgres: str) -> None:
    # The owner indexes leave out NULL owners; a lookup by a bound parameter (as the store's
    # prepared statements make) must still prove `owner = $1` implies NOT NULL and use them.
    with psycopg.connect(large_postgres) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for column, index in [
            ("owner_org_id", "ix_conveyor_jobs_org_created"),
            ("owner_user_id", "ix_conveyor_jobs_user_created"),
        ]:
            conn.execute(
                f"PREPARE by_owner_{column} AS SELECT * FROM conveyor_jobs WHERE {column} = $1"
                " ORDER BY created_at DESC LIMIT 50"
            )
            plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN EXECUTE by_owner_{column}('org7')"))
            assert index in plan, plan


@pytest.mark.parametrize("name", ["claim", "list newest", "list by status", "stage due", "rescue", "prune"])
def test_hot_queries_search_an_index_on_sqlite(sqlite_template: Any, name: str) -> None:
    # Without statistics SQLite may pick a neighbouring index (status, created_at) over the
    # partial one; what matters is that no hot query scans the table.
    query, _index = PLANS[name]
    query = query.replace(" FOR UPDATE SKIP LOCKED", "").replace("now() - interval '1 hour'", "now()")
    query = query.replace("now()", "'2026-01-01'")
    engine = sa.create_engine(f"sqlite:///{sqlite_template}")
    try:
        with engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query))
    finally:
        engine.dispose()
    assert "USING" in plan and not re.search(r"SCAN conveyor_jobs(?! USING)", plan), plan
