"""open_store(url): the Store for a database URL (sqlite:/// or postgresql://)."""

from __future__ import annotations

import sqlalchemy as sa

from conveyor.store.base import Store
from conveyor.store.portable import SqlStore


def open_store(
    url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = 10, pool_timeout: float = 10.0
) -> SqlStore:
    backend = sa.make_url(url).get_backend_name()
    if backend == "sqlite":
        from conveyor.store.sqlite import SqliteStore

        return SqliteStore(url, synchronous=sqlite_synchronous)
    if backend == "postgresql":
        from conveyor.store.postgres import PostgresStore

        return PostgresStore(url, pool_size=pool_size, pool_timeout=pool_timeout)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


__all__ = ["SqlStore", "Store", "open_store"]
