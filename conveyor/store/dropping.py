"""Dropping a PostgreSQL database that autovacuum may be working in.

A database just filled (a backup restored to verify it, a test's, a benchmark's) is where
autovacuum goes next. `DROP DATABASE ... WITH (FORCE)` ends the sessions in it, but may not end
an autovacuum worker without superuser rights, and then ends none; a plain DROP signals the
worker to leave and waits for it, but refuses while client sessions remain. One, then the
other, and again for a while: between them, they drop it.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

RETRY_PAUSE_SECONDS = 0.5


def drop_database(conn: psycopg.Connection[Any], name: str, *, within: float = 0.0) -> None:
    """Drop database `name` if it exists, through `conn` (autocommit, to another database),
    trying again for `within` seconds; raises the last refusal (InsufficientPrivilege: a
    session the role may not end; ObjectInUse) after that."""
    database = sql.Identifier(name)
    give_up_at = time.monotonic() + within
    while True:
        try:
            try:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
            except psycopg.errors.InsufficientPrivilege:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(database))
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if time.monotonic() >= give_up_at:
                raise
            time.sleep(RETRY_PAUSE_SECONDS)
