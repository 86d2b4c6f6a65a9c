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
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from jobtypes_for_tests import jobtypes

from conveyor import Conveyor, Settings, Worker
from conveyor.store.migrate import upgrade

DEFAULT_PG = "postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor"


def pg_admin_url() -> str:
    return os.environ.get("CONVEYOR_TEST_DATABASE_URL", DEFAULT_PG)


def _with_database(url: str, name: str) -> str:
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Any:
    admin = pg_admin_url()
    name = f"conveyor_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {admin} ({exc}); run scripts/postgres-up.sh")
    url = _with_database(admin, name)
    upgrade(url)
    yield url
    _drop_database(admin, name)


def _drop_database(admin: str, name: str) -> None:
    # An autovacuum worker may be in the database: FORCE cannot end it without superuser
    # rights, and it leaves within moments, so try again for a little while.
    with psycopg.connect(admin, autocommit=True) as conn:
        for _ in range(20):
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                time.sleep(0.5)
    sys.stderr.write(f"warning: could not drop test database {name}\n")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "conveyor.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE conveyor_jobs, conveyor_job_logs")
    return url


def make_settings(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, auto_migrate=False, **overrides)


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
