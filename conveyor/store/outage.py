"""Which failures mean "the database cannot serve this call now" rather than a bug.

A restart, a failover (also the old primary, read-only now, still answering), a cut
connection, a server refusing connections or out of them, a deadlock or a statement timeout on
PostgreSQL; a locked file on SQLite; no pooled connection within the pool's timeout. The same
call may succeed a moment later: the API answers these 503 with Retry-After instead of 500,
and the loops that retry log them without calling them a bug.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time

import psycopg
import sqlalchemy as sa
from psycopg_pool import PoolTimeout

# SQLite's own "try again" conditions; its other OperationalErrors (no such table, a bad
# statement) are not passing.
_SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside SQLAlchemy's wrapping (whose text adds the statement)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (raised by psycopg, its pool, SQLAlchemy or sqlite3) is such a failure."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    exc = driver_error(exc)
    if isinstance(
        exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction | PoolTimeout | sa.exc.TimeoutError
    ):
        return True
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(_SQLITE_BUSY)


def first_line(exc: BaseException) -> str:
    """What `exc` says, in a line (a server's message may go on with DETAIL and HINT lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log a failed pass of a loop that will try again (claims, heartbeats, outcome writes,
    the scheduler): an outage as one warning line, since every retry until the database is
    back would repeat its traceback; anything else as an error with its traceback."""
    if database_unavailable(exc):
        logger.warning(f"{message} (database unavailable: %s)", *args, first_line(exc))
    else:
        logger.error(message, *args, exc_info=exc)


# The loops that retry what the database failed (claims, outcome writes, the listener, the wait
# for a database at start) pause at most this long between attempts: a database back from a
# restart or a failover is used again within a second, and an attempt a second from each loop is
# nothing to a server refusing them. (They used to double their pause to 5 s: a database away for
# half a second cost a worker 2-3 s.)
LONGEST_RETRY_PAUSE_SECONDS = 1.0
# The first pause of the wait for a database at start; it doubles from there.
FIRST_PAUSE_SECONDS = 0.25


class RetryPauses:
    """The pauses of a loop that retries what the database failed: from `first`, doubling up
    to LONGEST_RETRY_PAUSE_SECONDS, back to `first` after a success (reset). Each pause is drawn
    between half and all of that bound: the processes one outage cut off (a fleet of workers,
    their listeners) would otherwise try again in step, every one of them at the same moments,
    on a server just back."""

    def __init__(self, first: float) -> None:
        self._first = self._bound = first

    def next(self) -> float:
        bound = self._bound
        self._bound = min(bound * 2, LONGEST_RETRY_PAUSE_SECONDS)
        return bound * random.uniform(0.5, 1.0)  # nosec B311 - spreading retries, not a secret

    def reset(self) -> None:
        self._bound = self._first


def wait_until_reachable(url: str, within: float, logger: logging.Logger) -> None:
    """Return once a connection to the PostgreSQL database at `url` opens; try again for
    `within` seconds (a process started with its database, or during a restart), one warning
    line per failed attempt, then raise the last attempt's error. SQLite's file is always there."""
    if not url.startswith("postgresql"):
        return
    from conveyor.store.listener import libpq_dsn

    give_up_at = time.monotonic() + within
    pauses = RetryPauses(FIRST_PAUSE_SECONDS)
    while True:
        # libpq's own connect timeout is none: a host that drops packets would hold the attempt.
        connect_timeout = max(1, min(10, round(give_up_at - time.monotonic())))
        try:
            psycopg.connect(libpq_dsn(url), connect_timeout=connect_timeout).close()
            return
        except psycopg.OperationalError as exc:
            left = give_up_at - time.monotonic()
            if left <= 0:
                raise
            pause = min(pauses.next(), left)
            logger.warning("database unavailable: %s; trying again in %.2f s", first_line(exc), pause)
            time.sleep(pause)
