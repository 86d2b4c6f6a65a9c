"""Scratch databases: each phase of the benchmark runs on one made for it and dropped after.

A fresh database per phase means no phase sees another's rows, dead tuples or index bloat, and
nothing is shared with the tests, which use the server's `conveyor` database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Protocol

import psycopg
import sqlalchemy as sa
from psycopg import sql

from conveyor.store.dropping import drop_database


class Database(Protocol):
    url: str

    async def recreate(self) -> None:
        """Make it exist and be empty."""

    async def drop(self) -> None: ...


# The server scripts/postgres-up.sh sets up, where $CONVEYOR_DATABASE_URL names none.
DEFAULT_SERVER_URL = "postgresql://conveyor:conveyor@127.0.0.1:5432/conveyor"


def server_url(parser: argparse.ArgumentParser) -> str:
    """The PostgreSQL server a benchmark makes its databases on: $CONVEYOR_DATABASE_URL's, or
    DEFAULT_SERVER_URL; a usage error (through `parser`) for a database of another kind."""
    url = os.environ.get("CONVEYOR_DATABASE_URL") or DEFAULT_SERVER_URL
    if not url.startswith("postgresql"):
        parser.error(f"CONVEYOR_DATABASE_URL must name the PostgreSQL server to use, not {url!r}")
    return url


def libpq_url(url: str, database: str | None = None) -> str:
    """`postgresql://…` as libpq, psycopg and asyncpg take it (a SQLAlchemy `+driver` is dropped)."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


# The yardstick of a single enqueue: one small row inserted and committed per call, durably
# (PostgreSQL's defaults), with no queue library involved.
COMMIT_PROBE_TABLE = "CREATE TABLE probe (id uuid PRIMARY KEY, data jsonb NOT NULL)"
COMMIT_PROBE_INSERT = "INSERT INTO probe VALUES (gen_random_uuid(), %s)"


class PostgresDatabase:
    """Database `name` on the server `server_url` points at, made by that URL's role (CREATEDB
    is enough: the role owns what it creates, so it may also drop it)."""

    def __init__(self, server_url: str, name: str) -> None:
        self._server_url = libpq_url(server_url)
        self._name = name
        self.url = libpq_url(server_url, name)

    async def recreate(self) -> None:
        await self.drop()
        async with await psycopg.AsyncConnection.connect(self._server_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._name)))

    async def drop(self) -> None:
        # FORCE ends connections a killed worker of an earlier run may have left behind;
        # autovacuum may be in it too (conveyor.store.dropping).
        def drop() -> None:
            with psycopg.connect(self._server_url, autocommit=True) as conn:
                drop_database(conn, self._name, within=10)

        await asyncio.to_thread(drop)


async def server_version(server_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(libpq_url(server_url), autocommit=True) as conn:
        row = await (await conn.execute("SHOW server_version")).fetchone()
    return str(row[0]) if row else "unknown"


class SqliteDatabase:
    """A SQLite file; "dropping" it removes the file and its WAL and shared-memory companions."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.url = f"sqlite:///{path}"

    async def recreate(self) -> None:
        await self.drop()

    async def drop(self) -> None:
        await asyncio.to_thread(self._remove_files)

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._path}{suffix}").unlink(missing_ok=True)
