"""Dropping a PostgreSQL database that sessions (or autovacuum) are still in."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from conftest import _with_database, pg_admin_url

from conveyor.store.dropping import drop_database


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[object]]:
    try:
        conn = psycopg.connect(pg_admin_url(), autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable ({exc}); run scripts/postgres-up.sh")
    with conn:
        yield conn


def _exists(admin: psycopg.Connection[object], name: str) -> bool:
    return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_a_database_with_a_session_left_in_it_is_dropped(admin: psycopg.Connection[object]) -> None:
    # A worker killed mid-run leaves its session behind: a plain DROP would refuse.
    name = f"conveyor_drop_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    left = psycopg.connect(_with_database(pg_admin_url(), name), autocommit=True)
    try:
        left.execute("SELECT 1")
        drop_database(admin, name)
        assert not _exists(admin, name)
        with pytest.raises(psycopg.OperationalError):
            left.execute("SELECT 1")
    finally:
        left.close()


def test_a_database_that_is_not_there_is_no_error(admin: psycopg.Connection[object]) -> None:
    drop_database(admin, f"conveyor_never_{secrets.token_hex(4)}")
