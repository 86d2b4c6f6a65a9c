"""Snapshots of a whole database, and restoring them, for SQLite and PostgreSQL.

A snapshot is consistent while jobs run, and its row counts and audit head are read from that
same snapshot, so that a restore can be checked against them:

- SQLite: the online backup API copies the database in one step, under one read transaction
  (WAL: writers go on meanwhile); the counts are read from the copy.
- PostgreSQL: a REPEATABLE READ transaction exports its snapshot (pg_export_snapshot), reads
  the counts, and holds the snapshot open while `pg_dump --snapshot` dumps exactly it (custom
  format). pg_dump and pg_restore are found on PATH or in Debian's /usr/lib/postgresql/*/bin;
  the password reaches them in their environment, never on a command line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess  # nosec B404: runs pg_dump/pg_restore with argument lists, never a shell
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.audit import GENESIS
from conveyor.backup.errors import BackupError, BackupStopped, RestoreRefused
from conveyor.store.migrate import VERSION_TABLE

log = logging.getLogger("conveyor.backup")

AUDIT_TABLE = "conveyor_audit"
DEBIAN_PG_BIN = Path("/usr/lib/postgresql")
BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    """What a snapshot holds, read from the snapshot itself."""

    dialect: str
    revision: str | None
    tables: dict[str, int]
    audit_seq: int
    audit_hash: str


def dialect_of(url: str) -> str:
    backend = sa.make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"unsupported database URL for a backup: {backend}")
    return backend


def sqlite_path(url: str) -> Path:
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database has nothing to back up or restore into")
    return Path(database)


def snapshot(url: str, dest: Path, *, pg_bin: str = "", stop: threading.Event | None = None) -> Snapshot:
    """Dump the whole database at `url` into `dest` (a new file). Setting `stop` (from another
    thread) stops pg_dump and raises BackupStopped."""
    if dialect_of(url) == "sqlite":
        return _sqlite_snapshot(sqlite_path(url), dest)
    return _pg_snapshot(url, dest, pg_bin, stop)


def restore(
    dump: Path, dialect: str, url: str, *, force: bool = False, pg_bin: str = "", stop: threading.Event | None = None
) -> None:
    """Restore a snapshot of `dialect` into the database at `url`. Refuses a target that holds
    tables unless `force` (then the dump's tables replace theirs). Setting `stop` stops
    pg_restore (its single transaction rolls back) and raises BackupStopped."""
    if dialect_of(url) != dialect:
        raise RestoreRefused(f"a {dialect} backup restores into a {dialect} database, not {dialect_of(url)}")
    if dialect == "sqlite":
        _sqlite_restore(dump, sqlite_path(url), force)
    else:
        _pg_restore(dump, url, force, pg_bin, stop)


def describe(url: str) -> Snapshot:
    """The row counts, revision and audit head of the database at `url` as it is now."""
    if dialect_of(url) == "sqlite":
        with contextlib.closing(_sqlite_connect(sqlite_path(url))) as conn:
            return _sqlite_describe(conn)
    import psycopg

    with psycopg.connect(**_pg_params(url)) as conn:
        conn.read_only = True
        return _pg_describe(conn)


@contextlib.contextmanager
def scratch_database(url: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database beside the one at `url`, dropped afterwards: a SQLite file
    in `directory`, or a PostgreSQL database on the same server (the role needs CREATEDB)."""
    if dialect_of(url) == "sqlite":
        path = directory / f"verify-{secrets.token_hex(4)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg

    name = f"conveyor_verify_{secrets.token_hex(6)}"
    params = _pg_params(url)
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name made here, no input
    except psycopg.Error as exc:
        raise BackupError(f"cannot create a scratch database to verify the backup in (CREATEDB?): {exc}") from None
    try:
        yield sa.make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_scratch(params, name)


def _drop_scratch(params: dict[str, Any], name: str) -> None:
    """Drop the scratch database `name` (autovacuum may be in it: conveyor.store.dropping). A
    database still not dropped is a warning, never an error: the verification's own outcome
    stands."""
    import psycopg

    from conveyor.store.dropping import drop_database

    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            drop_database(conn, name, within=5)
    except psycopg.Error as exc:
        log.warning("could not drop the scratch database %s (drop it by hand): %s", name, exc)


# --- SQLite -----------------------------------------------------------------------------------


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _sqlite_snapshot(source: Path, dest: Path) -> Snapshot:
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    with contextlib.closing(_sqlite_connect(source)) as src, contextlib.closing(_sqlite_connect(dest)) as dst:
        src.backup(dst)  # pages=-1: the whole database in one step, one read transaction
        # One self-contained file (the copy inherits WAL mode from the source's header).
        dst.execute("PRAGMA journal_mode = DELETE")
        return _sqlite_describe(dst)


def _sqlite_describe(conn: sqlite3.Connection) -> Snapshot:
    names = [
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    tables = {}
    for name in sorted(names):
        quoted = '"' + name.replace('"', '""') + '"'
        tables[name] = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]  # nosec B608: a quoted name
    return Snapshot("sqlite", _revision(conn, names), tables, *_audit_head(conn, names))


def _revision(conn: Any, names: list[str]) -> str | None:
    if VERSION_TABLE not in names:
        return None
    row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()  # nosec B608: a constant
    return None if row is None else str(row[0])


def _audit_head(conn: Any, names: list[str]) -> tuple[int, str]:
    if AUDIT_TABLE not in names:
        return 0, GENESIS
    row = conn.execute(f"SELECT seq, hash FROM {AUDIT_TABLE} ORDER BY seq DESC LIMIT 1").fetchone()  # nosec B608
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _sqlite_has_tables(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with contextlib.closing(_sqlite_connect(path)) as conn:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0


def _sqlite_restore(dump: Path, target: Path, force: bool) -> None:
    if _sqlite_has_tables(target) and not force:
        raise RestoreRefused(f"{target} holds tables already: restore into an empty database, or force")
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(_sqlite_connect(dump)) as src, contextlib.closing(_sqlite_connect(target)) as dst:
        # Page by page under the target's write lock: a reader of the target sees the old
        # database or the restored one, never a mix.
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = WAL")


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_params(url: str) -> dict[str, Any]:
    """libpq keyword parameters of a SQLAlchemy-style URL (the driver part dropped)."""
    parsed = sa.make_url(url)
    params: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
        **{k: v for k, v in parsed.query.items() if isinstance(v, str)},
    }
    return {k: v for k, v in params.items() if v is not None}


def _pg_tool_env(url: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password, and an environment that carries it (PGPASSWORD)."""
    from psycopg.conninfo import make_conninfo

    params = _pg_params(url)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items()}), env


def pg_tool(name: str, pg_bin: str = "") -> str:
    """The path of pg_dump or pg_restore: in `pg_bin` when given, else on PATH, else in the
    newest of Debian's /usr/lib/postgresql/<version>/bin."""
    if pg_bin:
        candidate = Path(pg_bin) / name
        if not candidate.is_file():
            raise BackupError(f"{name} is not in {pg_bin} (CONVEYOR_BACKUP_PG_BIN)")
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        (p for p in DEBIAN_PG_BIN.glob(f"*/bin/{name}") if p.parent.parent.name.isdigit()),
        key=lambda p: int(p.parent.parent.name),
    )
    if versions:
        return str(versions[-1])
    raise BackupError(f"{name} not found: install PostgreSQL's client programs or set CONVEYOR_BACKUP_PG_BIN")


# How often a running tool looks at its stop event, and how long it has to exit once asked.
STOP_POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0


def _run_tool(argv: list[str], env: dict[str, str], what: str, stop: threading.Event | None = None) -> None:
    # Polled rather than waited on: the thread that runs this cannot be cancelled, and a worker
    # stopping (or a job cancelled, or timed out) would otherwise wait for a dump of hours.
    # stderr goes to a file, so a chatty tool never blocks on a full pipe while nobody reads it.
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True)  # nosec B603
        try:
            while True:
                try:
                    returncode = process.wait(timeout=STOP_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if stop is not None and stop.is_set():
                        raise BackupStopped(f"{what} stopped: its job was cancelled or its worker stopped") from None
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if returncode != 0:
            errors.seek(0)
            detail = errors.read().strip().splitlines()[-3:]
            raise BackupError(f"{what} failed (exit {returncode}): {' / '.join(detail)}")


def _pg_snapshot(url: str, dest: Path, pg_bin: str, stop: threading.Event | None) -> Snapshot:
    import psycopg

    pg_dump = pg_tool("pg_dump", pg_bin)
    conninfo, env = _pg_tool_env(url)
    with psycopg.connect(**_pg_params(url)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            exported = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert exported is not None  # nosec B101: the function always returns a row
            described = _pg_describe(conn)
            # The transaction stays open (and with it the exported snapshot) while pg_dump runs.
            argv = [pg_dump, "--format=custom", f"--snapshot={exported[0]}", "--no-password", f"--file={dest}"]
            _run_tool([*argv, f"--dbname={conninfo}"], env, "pg_dump", stop)
    return described


def _pg_describe(conn: Any) -> Snapshot:
    from psycopg import sql

    rows = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY schemaname, tablename"
    ).fetchall()
    tables = {}
    for schema, name in rows:
        key = name if schema == "public" else f"{schema}.{name}"
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        tables[key] = conn.execute(query).fetchone()[0]
    names = list(tables)
    return Snapshot("postgresql", _revision(conn, names), tables, *_audit_head(conn, names))


def _pg_has_tables(url: str) -> bool:
    import psycopg

    with psycopg.connect(**_pg_params(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        return bool(row and row[0])


def _pg_restore(dump: Path, url: str, force: bool, pg_bin: str, stop: threading.Event | None) -> None:
    if _pg_has_tables(url) and not force:
        raise RestoreRefused("the target database holds tables already: restore into an empty database, or force")
    conninfo, env = _pg_tool_env(url)
    # One transaction: a restore that fails half-way leaves the target as it was.
    argv = [pg_tool("pg_restore", pg_bin), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            "--no-password"]  # fmt: skip
    if force:
        argv += ["--clean", "--if-exists"]
    _run_tool([*argv, f"--dbname={conninfo}", str(dump)], env, "pg_restore", stop)
