"""The schema: migrations equal the declared tables, and the hot queries use their indexes."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import postgresql, sqlite

from conveyor.model import JobFilter, JobOrder
from conveyor.store import ordering
from conveyor.store.filters import filter_clauses
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
    # The store's own statement: every status, newest first, read a status at a time
    # (conveyor.store.ordering.page) and merged.
    "list newest": (lambda dialect: _first_page_sql(dialect), "ix_conveyor_jobs_status_created"),
    "list a time window": (
        lambda dialect: _first_page_sql(dialect, JobFilter(created_after=datetime(2026, 1, 1, tzinfo=UTC))),
        "ix_conveyor_jobs_status_created",
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


def _first_page_sql(dialect: Any, where: JobFilter | None = None) -> str:
    where = where or JobFilter()
    order = JobOrder()
    [segment] = ordering.segments(order, None)
    by_status = ordering.reads_by_status(order, where)
    statement = ordering.page(filter_clauses(where), order, segment, limit=50, offset=0, by_status=by_status)
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _plan_query(name: str, dialect: Any) -> str:
    query = PLANS[name][0]
    return query(dialect) if callable(query) else query


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
    query, index = _plan_query(name, postgresql.dialect()), PLANS[name][1]
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


@pytest.mark.parametrize(
    "name", ["claim", "list newest", "list a time window", "list by status", "stage due", "rescue", "prune"]
)
def test_hot_queries_search_an_index_on_sqlite(sqlite_template: Any, name: str) -> None:
    # Without statistics SQLite may pick a neighbouring index (status, created_at) over the
    # partial one; what matters is that no hot query scans the table.
    query = _plan_query(name, sqlite.dialect())
    query = query.replace(" FOR UPDATE SKIP LOCKED", "").replace("now() - interval '1 hour'", "now()")
    query = query.replace("now()", "'2026-01-01'")
    engine = sa.create_engine(f"sqlite:///{sqlite_template}")
    try:
        with engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query))
    finally:
        engine.dispose()
    assert "USING" in plan and not re.search(r"SCAN conveyor_jobs(?! USING)", plan), plan


def _audit_by_job_statements(dialect: Any) -> list[str]:
    """The page and the count the store runs for the audit records about one job, as SQL."""
    from conveyor.store.audit import AuditFilter
    from conveyor.store.schema import audit

    where = AuditFilter(job_id="job-7", org_id="org7", every_org=False).clauses()
    page = sa.select(audit).where(*where, audit.c.seq > 0).order_by(audit.c.seq).limit(100)
    count = sa.select(sa.func.count()).select_from(audit).where(*where)
    return [str(s.compile(dialect=dialect, compile_kwargs={"literal_binds": True})) for s in (page, count)]


def test_a_jobs_audit_records_are_found_through_indexes_on_postgres(empty_postgres_url: str) -> None:
    """50,000 chained records, each naming 4 jobs in a list: the records about one job are two
    index lookups (its own by object, those naming it by conveyor_audit_subjects' key), united,
    then fetched by seq; the audit table is never read whole."""
    with psycopg.connect(empty_postgres_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO conveyor_audit (seq, recorded_at, actor_id, action, object_type, object_id, after,
                                           org_id, prev_hash, hash)
               SELECT n, now(), 'system', 'job.completed', 'job', CASE WHEN n % 2 = 0 THEN 'job-' || n END,
                      jsonb_build_object('jobIds', jsonb_build_array('job-' || n, 'job-' || n + 1)),
                      'org' || (n % 50), '', ''
               FROM generate_series(1, 50000) AS n"""
        )
        conn.execute(
            """INSERT INTO conveyor_audit_subjects (job_id, seq)
               SELECT 'job-' || (n + k), n FROM generate_series(1, 50000) AS n, generate_series(0, 1) AS k"""
        )
        conn.execute("ANALYZE conveyor_audit")
        conn.execute("ANALYZE conveyor_audit_subjects")
        for statement in _audit_by_job_statements(postgresql.dialect()):
            plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + statement))
            assert "conveyor_audit_subjects_pkey" in plan and "ix_conveyor_audit_object" in plan, plan
            assert "Seq Scan" not in plan, plan


def test_a_jobs_audit_records_are_found_through_indexes_on_sqlite(sqlite_template: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_template}")
    try:
        with engine.connect() as conn:
            for statement in _audit_by_job_statements(sqlite.dialect()):
                plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement))
                assert "conveyor_audit_subjects" in plan and "ix_conveyor_audit_object" in plan, plan
                assert not re.search(r"SCAN conveyor_audit\b(?! USING (INTEGER )?PRIMARY KEY)", plan), plan
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_migration_0014_lists_the_jobs_that_chained_records_name(dialect: str, tmp_path: Any) -> None:
    """Records chained before 0014 are found by job too: it fills conveyor_audit_subjects from
    every record's after.jobIds (and from nothing else)."""
    from conftest import migrated_postgres_database

    with contextlib.ExitStack() as stack:
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / 'before-0014.db'}"
            upgrade(url, "0013")
        else:
            url = stack.enter_context(migrated_postgres_database("conveyor_m14", revision="0013"))
        engine = sync_engine(url)
        stack.callback(engine.dispose)
        after = "CAST(:after AS jsonb)" if dialect == "postgres" else ":after"
        with engine.begin() as conn:
            for seq, value in [
                (1, '{"count": 2, "jobIds": ["a", "b"]}'),
                (2, '{"status": "pending"}'),
                (3, '{"jobIds": ["b", "b", "c"], "name": "batch"}'),
                (4, "null"),
            ]:
                conn.execute(
                    sa.text(
                        "INSERT INTO conveyor_audit (seq, recorded_at, actor_id, action, object_type, after,"
                        f" prev_hash, hash) VALUES (:seq, '2026-01-01 00:00:00', 'system', 'job.created', 'job',"
                        f" {after}, '', '')"
                    ),
                    {"seq": seq, "after": value},
                )
        upgrade(url)
        with engine.connect() as conn:
            named = conn.execute(sa.text("SELECT job_id, seq FROM conveyor_audit_subjects ORDER BY seq, job_id")).all()
        assert [tuple(r) for r in named] == [("a", 1), ("b", 1), ("b", 3), ("c", 3)]


def test_the_audit_tables_json_is_compressed_with_lz4_on_postgres(postgres_url: str) -> None:
    """Migration 0015: a bulk enqueue's journal record (a thousand job ids) is compressed when
    stored; lz4 costs a third of pglz's time there (this server is built with lz4)."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        methods = conn.execute(
            """SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute
               WHERE attrelid IN ('conveyor_audit_journal'::regclass, 'conveyor_audit'::regclass)
                 AND attname IN ('before', 'after')"""
        ).fetchall()
    assert sorted(methods) == [
        ("conveyor_audit", "after", "l"),
        ("conveyor_audit", "before", "l"),
        ("conveyor_audit_journal", "after", "l"),
        ("conveyor_audit_journal", "before", "l"),
    ]


def test_an_outcome_batch_reads_its_jobs_by_key_however_small_the_table(empty_postgres_url: str) -> None:
    """A worker's outcome write locks and updates its jobs through the primary key. Written as
    `id IN (SELECT id FROM v)`, the planner read a table of 10,000 jobs whole for each batch of
    100 and matched the update's rows against the locked ones pairwise: half the statement's
    time in the drain benchmark."""
    from psycopg.types.json import Jsonb

    from conveyor.store.postgres import APPLY_OUTCOMES

    with psycopg.connect(empty_postgres_url, autocommit=True) as conn:
        conn.execute(SEED_ROWS.replace("50000", "10000"))
        conn.execute("ANALYZE conveyor_jobs")
        ids = [str(row[0]) for row in conn.execute("SELECT id FROM conveyor_jobs LIMIT 100")]
        batch = [{"id": i, "attempt": 1, "status": "completed", "finished": True} for i in ids]
        plan = "\n".join(
            row[0] for row in conn.execute("EXPLAIN " + APPLY_OUTCOMES, {"batch": Jsonb(batch), "worker_id": "w"})
        )
    assert "Seq Scan on conveyor_jobs" not in plan, plan
    assert "conveyor_jobs_pkey" in plan, plan


# Every job in one queue, most of them pending: `queue` has a single value in the statistics.
ONE_QUEUE_ROWS = """
    INSERT INTO conveyor_jobs (id, kind, queue, status, priority, data, max_attempts, run_at, created_at, updated_at)
    SELECT gen_random_uuid(), 'noop', 'default', CASE WHEN n % 10 = 0 THEN 'completed' ELSE 'pending' END,
           6, '{}', 4, now(), now(), now()
    FROM generate_series(1, 50000) AS n
"""


@pytest.mark.parametrize("plans", ["custom", "generic"])
@pytest.mark.parametrize("queues", [["default"], ["default", "other"]])
def test_a_claim_reads_the_claim_index_when_every_job_is_in_one_queue(
    empty_postgres_url: str, queues: list[str], plans: str
) -> None:
    """The store's claim statements, as the worker runs them. Their paused-queue check once
    read `queue <> ALL(paused queues)`: with one value of `queue` in the statistics the planner
    expected no row to match and scanned and sorted every pending job (387 ms a claim with
    860,000 pending, `bench.million`), where the index gives the first 100 in 1 ms."""
    from conveyor.store.postgres import CLAIM_ONE_QUEUE, CLAIM_QUEUES

    statement = CLAIM_ONE_QUEUE if len(queues) == 1 else CLAIM_QUEUES
    params = {"limit": 100, "worker_id": "w", "lease": timedelta(seconds=30), "queue": queues[0], "queues": queues}
    with psycopg.connect(empty_postgres_url, autocommit=True) as conn:
        conn.execute(ONE_QUEUE_ROWS)
        conn.execute("ANALYZE conveyor_jobs")
        conn.execute("SET plan_cache_mode = " + ("force_generic_plan" if plans == "generic" else "auto"))
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + statement, params, prepare=True))
    assert "ix_conveyor_jobs_claim" in plan, plan
    assert "Seq Scan on conveyor_jobs" not in plan, plan


def test_migration_0018_keeps_sqlites_journal_and_never_reuses_its_ids(tmp_path: Any) -> None:
    """A seal takes the journal up to the newest id it saw (conveyor.engine.audit): after the
    journal was emptied, new rows must not take ids it already passed."""
    url = f"sqlite:///{tmp_path / 'before-0018.db'}"
    upgrade(url, "0017")
    engine = sync_engine(url)
    insert = sa.text(
        "INSERT INTO conveyor_audit_journal (recorded_at, actor_id, action, object_type)"
        " VALUES ('2026-01-01 00:00:00', 'system', :action, 'job')"
    )
    try:
        with engine.begin() as conn:
            for action in ["a", "b"]:
                conn.execute(insert, {"action": action})
        upgrade(url)
        with engine.begin() as conn:
            kept = conn.execute(sa.text("SELECT id, action FROM conveyor_audit_journal ORDER BY id")).all()
            conn.execute(sa.text("DELETE FROM conveyor_audit_journal"))
            conn.execute(insert, {"action": "c"})
            new_id = conn.execute(sa.text("SELECT id FROM conveyor_audit_journal")).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in kept] == [(1, "a"), (2, "b")]
    assert new_id == 3
