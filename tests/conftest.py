"""Fixtures: every engine test runs against a real SQLite file and the real PostgreSQL.

PostgreSQL: one database per test run (`conveyor_test_<pid>_<random>`), migrated once and
emptied with TRUNCATE between tests, dropped at the end. SQLite: a migrated file copied into
each test's tmp_path. The server is found through CONVEYOR_TEST_DATABASE_URL (an admin URL
whose role may create databases); scripts/test.sh sets it up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor, Settings, Worker
from conveyor.scheduler import Scheduler
from conveyor.store.dropping import drop_database
from conveyor.store.migrate import upgrade

DEFAULT_PG = "postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor"
# Emptied between tests (every table a test may fill).
TABLES = (
    "conveyor_jobs", "conveyor_job_logs", "conveyor_api_keys", "conveyor_queues", "conveyor_workers",
    "conveyor_job_counts", "conveyor_job_minutes", "conveyor_schedules", "conveyor_leaders", "conveyor_batches",
    "conveyor_cache_entries", "conveyor_rate_windows", "conveyor_users", "conveyor_webhooks",
    "conveyor_webhook_events", "conveyor_webhook_deliveries", "conveyor_alerts", "conveyor_job_counters",
    "conveyor_interaction_tables", "conveyor_interactions", "conveyor_interaction_synonyms", "conveyor_pack_state",
    "conveyor_notifications", "conveyor_audit_subjects",
)  # fmt: skip
# Append-only: their triggers refuse TRUNCATE, so tests switch them off around it (as the
# tables' owner may; see the README's "Audit trail").
AUDIT_TABLES = ("conveyor_audit_journal", "conveyor_audit", "conveyor_audit_checkpoints", "conveyor_signatures")


def truncate_all(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        for table in AUDIT_TABLES:
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute(f"TRUNCATE {', '.join(TABLES + AUDIT_TABLES)}")
        for table in AUDIT_TABLES:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def pg_admin_url() -> str:
    return os.environ.get("CONVEYOR_TEST_DATABASE_URL", DEFAULT_PG)


def _with_database(url: str, name: str) -> str:
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def migrated_postgres_database(prefix: str, revision: str = "head") -> Iterator[str]:
    """A PostgreSQL database of its own (`<prefix>_<pid>_<random>`) migrated to `revision`,
    dropped after."""
    admin = pg_admin_url()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {admin} ({exc}); run scripts/postgres-up.sh")
    url = _with_database(admin, name)
    try:
        upgrade(url, revision)
        yield url
    finally:
        _drop_database(admin, name)


@contextlib.contextmanager
def own_database_url(kind: str, prefix: str, directory: Path, sqlite_template: Path) -> Iterator[str]:
    """A database of one module's own, on `kind` ("sqlite" or "postgres")."""
    if kind == "sqlite":
        path = directory / "conveyor.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
    else:
        with migrated_postgres_database(prefix) as url:
            yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with migrated_postgres_database("conveyor_test") as url:
        yield url


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> Iterator[str]:
    """The session's PostgreSQL database emptied before the test (the tests before it on this
    worker leave their rows behind: `database_url` empties it as it starts) and after it."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        truncate_all(conn)
    yield postgres_url
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        truncate_all(conn)


def _drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        try:
            drop_database(conn, name, within=10)
        except psycopg.Error as exc:
            sys.stderr.write(f"warning: could not drop test database {name}: {exc}\n")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


# PostgreSQL's job counts by status (and owner, type, queue, priority) are sums of the deltas
# each insert, change and delete appends to conveyor_job_counts. Every test on PostgreSQL ends
# by checking that they still agree with counting the jobs, so that a way of storing, changing
# or removing jobs that forgets its deltas fails whichever test takes it.
ROLLUP_KEYS = "org_id, user_id, study_id, kind, queue, priority, status"
ROLLUPS_DISAGREE = f"""
WITH rolled AS (
    SELECT {ROLLUP_KEYS}, sum(n) AS n FROM conveyor_job_counts GROUP BY {ROLLUP_KEYS} HAVING sum(n) <> 0
), counted AS (
    SELECT owner_org_id AS org_id, owner_user_id AS user_id, owner_study_id AS study_id, kind, queue, priority,
           status, count(*) AS n
    FROM conveyor_jobs GROUP BY 1, 2, 3, 4, 5, 6, 7
)
(SELECT 'rolled up' AS side, * FROM rolled EXCEPT SELECT 'rolled up', * FROM counted)
UNION ALL
(SELECT 'counted', * FROM counted EXCEPT SELECT 'counted', * FROM rolled)
"""


def assert_rollups_agree(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        disagreeing = conn.execute(ROLLUPS_DISAGREE).fetchall()
    assert not disagreeing, f"job counts roll-up disagrees with the jobs table: {disagreeing}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "conveyor.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    with psycopg.connect(url, autocommit=True) as conn:
        truncate_all(conn)
    yield url
    assert_rollups_agree(url)


# argon2id at its production cost takes ~0.4 s a hash on the test machine: the tests hash
# cheaply (tests/test_users.py times the real cost where it matters).
FAST_HASHING = {"password_hash_time_cost": 1, "password_hash_memory_kib": 8192, "password_hash_parallelism": 1}


def cut_sessions(admin: psycopg.Connection[Any], database: str) -> int:
    """Terminate the client sessions of `database` (but `admin`'s own), as a server restart or
    a failover ends them (its autovacuum workers are the server's, not a client's to signal)."""
    row = admin.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        (database,),
    ).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def refusing_connections(database_url: str) -> Iterator[None]:
    """The test's PostgreSQL database refusing connections, its sessions cut, as while its
    server restarts; accepting them again on leaving."""
    name = sa.make_url(database_url).database
    assert name is not None
    with psycopg.connect(_with_database(database_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            cut_sessions(admin, name)
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def make_settings(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, auto_migrate=False, **{**FAST_HASHING, **overrides})


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Conveyor]:
    conveyor = Conveyor.from_settings(make_settings(database_url), registries=[jobtypes])
    await conveyor.start()
    yield conveyor
    await conveyor.close()


FAST_WORKER: dict[str, Any] = {
    "poll_interval": timedelta(milliseconds=20),
    "maintenance_interval": timedelta(milliseconds=100),
    "heartbeat_interval": timedelta(milliseconds=100),
    "progress_interval": timedelta(milliseconds=100),
    "cancel_grace": timedelta(seconds=1),
    "shutdown_grace": timedelta(seconds=2),
}


def start_worker_process(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    """`conveyor worker` in a process (and session) of its own, with the tests' job types;
    `env` adds to or overrides its environment."""
    environment = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_JOBTYPES": "jobtypes_for_tests:jobtypes",
        "CONVEYOR_AUTO_MIGRATE": "false",
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor.cli", "worker", "--log-level", "warning"],
        env=environment,
        start_new_session=True,
    )


async def stop_worker_process(process: subprocess.Popen[bytes], timeout: float = 20) -> int | None:
    """SIGTERM a worker of start_worker_process (it drains) and wait for it: its exit code, or
    None when it was still up `timeout` seconds later and had to be killed."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        return None


@contextlib.asynccontextmanager
async def running_worker(app: Conveyor, **options: Any) -> AsyncIterator[Worker]:
    """A worker running in this event loop for the duration of the block, then drained."""
    worker = app.worker(**{**FAST_WORKER, **options})
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=30)


@contextlib.asynccontextmanager
async def running_scheduler(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """`scheduler` passing in this event loop for the duration of the block, then stopped (it
    gives its lease up)."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10, interval: float = 0.02) -> Any:
    """Wait until `check()` returns something truthy; its value, or AssertionError at timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


# --- the HTTP API ---------------------------------------------------------------------------

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
JWT_AUDIENCE = "conveyor-tests"
JWT_ISSUER = "https://issuer.example"


class ApiHarness:
    """An app over the test database, an httpx client into it, and credentials on demand."""

    def __init__(self, conveyor: Conveyor, fastapi_app: Any, client: Any) -> None:
        self.conveyor = conveyor
        self.fastapi = fastapi_app
        self.client = client

    async def key(self, role: str, org: str | None = None, study: str | None = None) -> dict[str, str]:
        from conveyor.apikeys import ApiKeys

        new = await ApiKeys(self.conveyor.store).create(role=role, name=f"{role} test key", org_id=org, study_id=study)
        return {"Authorization": f"Bearer {new.key}"}

    @staticmethod
    def jwt(sub: str = "user-1", roles: Any = ("user",), org: str | None = "org-a", **claims: Any) -> dict[str, str]:
        import jwt as pyjwt

        payload = {
            "sub": sub,
            "name": f"Test {sub}",
            "org_id": org,
            "roles": list(roles),
            "exp": int(time.time()) + 6 * 3600,  # module-level tokens outlive a slow suite
            "aud": JWT_AUDIENCE,
            "iss": JWT_ISSUER,
            **claims,
        }
        return {"Authorization": f"Bearer {pyjwt.encode(payload, JWT_SECRET, algorithm='HS256')}"}


API_MAX_BODY_BYTES = 64 * 1024  # the test apps' body limit
# The test apps create jobs faster and in bigger queues than the creation limits allow;
# tests/test_api_limits.py turns them back on.
NO_CREATION_LIMITS = {"jobs_per_minute": 0, "jobs_per_hour": 0, "max_queue_size": 0}
# Sensitive job types (the workbench's sentiment analysis) are stored encrypted and refused
# without a key: the test apps have one (tests/test_encryption.py checks the refusal).
TEST_ENCRYPTION = {"encryption_keys": {"test": "dGhpcyBpcyBhIHRlc3Qga2V5LCBub3QgYSBzZWNyZXQ="}}
# Critical operations need an e-signature by default (a local user's password); the test apps
# of other features run without that demand, tests/test_signatures.py puts it back.
NO_SIGNATURES = {"critical_operations": "none"}


@contextlib.asynccontextmanager
async def api_harness(
    database_url: str, *, raise_app_exceptions: bool = True, **overrides: Any
) -> AsyncIterator[ApiHarness]:
    """The app over `database_url` (JWTs as `ApiHarness.jwt` makes them), started, with a client.
    `raise_app_exceptions=False`: a server error comes back as a 500 instead of being raised.
    Files (uploads, results) go to a data directory of the harness's own; `overrides` are
    further settings."""
    import tempfile

    import httpx

    from conveyor.api import create_app

    with tempfile.TemporaryDirectory(prefix="conveyor-data-") as data_dir:
        settings = make_settings(
            database_url,
            jwt_secret=JWT_SECRET,
            jwt_audience=JWT_AUDIENCE,
            jwt_issuer=JWT_ISSUER,
            max_body_bytes=API_MAX_BODY_BYTES,
            **{"data_dir": data_dir, **NO_CREATION_LIMITS, **TEST_ENCRYPTION, **NO_SIGNATURES, **overrides},
        )
        conveyor = Conveyor.from_settings(settings, registries=[jobtypes])
        fastapi_app = create_app(conveyor, bootstrap_keys=False)
        async with fastapi_app.router.lifespan_context(fastapi_app):
            transport = httpx.ASGITransport(app=fastapi_app, raise_app_exceptions=raise_app_exceptions)
            async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.test") as client:
                yield ApiHarness(conveyor, fastapi_app, client)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[ApiHarness]:
    async with api_harness(database_url) as harness:
        yield harness
