"""Schema migrations: Alembic revisions shipped in the package, applied under a lock.

Several workers may start at once against a fresh database; the lock (an advisory lock on
PostgreSQL, the write lock taken by BEGIN IMMEDIATE on SQLite) makes one of them migrate
while the others wait and then find the schema current.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "conveyor_alembic_version"
# The newest revision in migrations/versions (a test checks it against Alembic's head). Every
# process starts by comparing the database with it, and imports Alembic (some 8 MB in each
# worker) only when a migration is due.
HEAD_REVISION = "0018"
# An arbitrary constant: the key of the advisory lock that serialises migrations.
PG_MIGRATION_LOCK = 7_412_202_611


def sync_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"), poolclass=sa.NullPool, hide_parameters=True
        )
    engine = sa.create_engine(parsed.set(drivername="sqlite"), poolclass=sa.NullPool, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout = 30000")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    if revision == "head" and current_revision(url) == HEAD_REVISION:
        return
    from alembic import command

    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The database's revision, read without Alembic; None for a database never migrated."""
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(VERSION_TABLE):
                return None
            # a constant table name, no input (bandit B608)
            return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()  # nosec B608
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """Alembic's own idea of the newest revision (tests compare it with HEAD_REVISION)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
