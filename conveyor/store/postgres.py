"""PostgresStore: any number of processes on any number of machines.

Claims lock the rows they take with FOR UPDATE SKIP LOCKED, so concurrent claimers pass over
each other's rows instead of waiting. Leases are measured on the database's clock, the one
clock all machines share. Inserts, cancels and finishes NOTIFY within their statement or
transaction; one LISTEN connection per process hands them on (see listener.py).

The hot paths (enqueue, claim, heartbeat, outcomes) are single statements run on a psycopg
pool of autocommit connections: no BEGIN/COMMIT round trips and no ORM-layer checkout, which
on these paths cost more than the statement itself. Everything else goes through the
portable SQLAlchemy Core statements of SqlStore.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import select
import typing
from collections import Counter
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import sqlalchemy as sa
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from conveyor.audit import AuditEntry
from conveyor.model import FINISHED, Job, LogEntry, NewJob, Outcome, OutcomeKind, ProgressUpdate, Status
from conveyor.store import copytext
from conveyor.store.base import TOPICS, Listener
from conveyor.store.batches import batch_ids_of
from conveyor.store.copytext import copy_text
from conveyor.store.listener import PostgresListener, libpq_dsn
from conveyor.store.outage import first_line
from conveyor.store.portable import SqlStore
from conveyor.store.rollups import COUNT_INTO, COUNT_KEYS, PostgresRollups
from conveyor.store.rows import (
    CLAIMED_COLUMNS,
    OUTCOME_STATUS,
    bulk_created_record,
    claimed_job,
    count_deltas,
    count_key,
    dumps,
    job_from_mapping,
    job_of_new,
)
from conveyor.store.schema import job_counts

# One channel per topic, so that a process hears only what it listens for: an API node that
# never waits for a job does not wake for every insert.
CHANNELS = {topic: f"conveyor_{topic}" for topic in TOPICS}
TOPIC_OF_CHANNEL = {channel: topic for topic, channel in CHANNELS.items()}

_COLUMNS = (
    "id", "kind", "queue", "status", "priority", "data", "max_attempts", "timeout_seconds",
    "run_at", "created_at", "updated_at", "batch_id", "schedule_id", "retry_of", "cache_key",
    "idempotency_key", "labels", "file_info", "owner_user_id", "owner_org_id", "owner_study_id",
    "created_by",
)  # fmt: skip
_JSON_COLUMNS = ("data", "labels", "file_info")
_COLUMN_TYPES = {
    "id": "uuid", "kind": "text", "queue": "text", "status": "text", "priority": "int2",
    "data": "jsonb", "max_attempts": "int4", "timeout_seconds": "float8", "run_at": "timestamptz",
    "created_at": "timestamptz", "updated_at": "timestamptz", "batch_id": "uuid",
    "schedule_id": "text", "retry_of": "uuid", "cache_key": "text", "idempotency_key": "text",
    "labels": "jsonb", "file_info": "jsonb", "owner_user_id": "text", "owner_org_id": "text",
    "owner_study_id": "text", "created_by": "text",
}  # fmt: skip


# The audit journal's row of each job inserted (see conveyor.audit), recorded at the
# statement's time: several jobs' rows travel as one JSON parameter (one to dump, not ten each).
_JOURNAL_COLUMNS = (
    "actor_id", "actor_name", "action", "object_type", "object_id", "after", "request_id", "client_address", "org_id"
)  # fmt: skip
_JOURNAL_INSERT = f"""INSERT INTO conveyor_audit_journal (recorded_at, {", ".join(_JOURNAL_COLUMNS)})
        SELECT now(), {", ".join(f"r.{c}" for c in _JOURNAL_COLUMNS)}"""
# One job's row, its columns as parameters of their own (audit_<column>): ~30 µs less than
# one JSON parameter unpacked by jsonb_populate_record, of a single enqueue's ~400.
_JOURNAL_PARAMS = tuple((f"audit_{c}", c) for c in _JOURNAL_COLUMNS)
# column names from constants; values are parameters (bandit B608)
_JOURNAL_ONE = f"""INSERT INTO conveyor_audit_journal (recorded_at, {", ".join(_JOURNAL_COLUMNS)})
        SELECT now(), {", ".join(f"%({p})s" for p, _c in _JOURNAL_PARAMS)} FROM ins"""  # nosec B608


# The roll-ups' deltas of the jobs a statement stored (`ins`), in the same statement: see
# migration 0017. One job needs no grouping, which would cost its statement a tenth (a hash
# table set up for one row: ~40 µs).
# constants only (bandit B608)
_COUNTED_ONE = f"counted AS ({COUNT_INTO} SELECT {COUNT_KEYS}, 1 FROM ins)"  # nosec B608
_COUNTED = f"counted AS ({COUNT_INTO} SELECT {COUNT_KEYS}, count(*) FROM ins GROUP BY {COUNT_KEYS})"  # nosec B608
_RETURNED = f"id, {COUNT_KEYS}"
COUNT_INSERTED = f"""{COUNT_INTO}
    SELECT org_id, user_id, study_id, kind, queue, priority, status, n
    FROM jsonb_populate_recordset(NULL::conveyor_job_counts, %s)
"""  # nosec B608


def _on_known_key(present: tuple[str, ...]) -> str:
    # Only jobs with an idempotency key can meet a stored one. Without one, a plain insert:
    # ON CONFLICT makes it speculative (the arbiter index probed first, and a second WAL record
    # to confirm the row), ~13 µs of a ~340 µs single enqueue.
    if "idempotency_key" not in present:
        return ""
    return "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"


@functools.cache
def insert_one(present: tuple[str, ...]) -> str:
    """One job with these columns set: NULL ones are left out (most of a job's optional
    columns are NULL; fewer parameters to dump and send), one statement per shape. Its audit
    record, its count and the NOTIFY ride in the same statement (CTEs); ON CONFLICT leaves a
    known idempotency key's job alone and returns nothing for it (and records nothing)."""
    # column names from the schema; values are parameters (bandit B608)
    return f"""
    WITH ins AS (
        INSERT INTO conveyor_jobs ({", ".join(present)})
        VALUES ({", ".join(f"%({c})s" for c in present)})
        {_on_known_key(present)}
        RETURNING {_RETURNED}
    ), journal AS (
        {_JOURNAL_ONE}
    ), {_COUNTED_ONE}
    SELECT id, CASE WHEN status = 'pending' THEN pg_notify('conveyor_insert', queue) END FROM ins
    """  # nosec B608


@functools.cache
def insert_many(present: tuple[str, ...]) -> str:
    """Several jobs, with these columns set in at least one of them (as insert_one): each
    column travels as one binary array parameter."""
    # column names from the schema; values are parameters (bandit B608)
    return f"""
    WITH ins AS (
        INSERT INTO conveyor_jobs ({", ".join(present)})
        SELECT * FROM unnest({", ".join(f"%({c})b::{_COLUMN_TYPES[c]}[]" for c in present)})
        {_on_known_key(present)}
        RETURNING {_RETURNED}
    ), journal AS (
        {_JOURNAL_INSERT}
        FROM jsonb_populate_recordset(NULL::conveyor_audit_journal, %(audit)s) AS r
        JOIN ins ON ins.id::text = r.object_id
    ), {_COUNTED}, notified AS (
        SELECT pg_notify('conveyor_insert', q)
        FROM (SELECT DISTINCT queue AS q FROM ins WHERE status = 'pending') AS ready
    )
    SELECT ins.id, (SELECT count(*) FROM notified) FROM ins
    """  # nosec B608


JOURNAL_MANY = f"{_JOURNAL_INSERT} FROM jsonb_populate_recordset(NULL::conveyor_audit_journal, %(audit)s) AS r"


# Many jobs without keys: COPY, several times quicker than INSERT for big batches.
COPY_THRESHOLD = 100
_PENDING = Status.PENDING
COPY_DUE = f"COPY conveyor_jobs ({', '.join(copytext.COLUMNS)}) FROM STDIN"
COPY_WITH_RUN_AT = f"COPY conveyor_jobs ({', '.join(copytext.COLUMNS_WITH_RUN_AT)}) FROM STDIN"


def _all_pending(batch: Sequence[NewJob]) -> bool:
    return all(n.status is _PENDING for n in batch)


# A claim reads the claim index (queue, priority DESC, id) WHERE status = 'pending' in its
# order and stops at the limit. A paused queue is a condition on the queue alone, not on each
# row: written as `queue <> ALL(paused queues)` it was a row filter the planner could not
# estimate, and with every job in one queue (its only value in the statistics) it counted on
# no row matching and chose a scan and sort of all pending jobs (387 ms a claim with 860,000
# pending, against 1 ms through the index).
CLAIM = """
    WITH {next}
    UPDATE conveyor_jobs AS j SET status = 'running', attempt = j.attempt + 1,
        worker_id = %(worker_id)s, started_at = now(), updated_at = now(),
        lease_expires_at = now() + %(lease)s
    FROM next WHERE j.id = next.id
    RETURNING {returning}
"""
_RETURNING = ", ".join(f"j.{c}" for c in CLAIMED_COLUMNS)
# One queue: its pause is checked once for the statement (a one-time filter).
CLAIM_ONE_QUEUE = CLAIM.format(
    next="""next AS (
        SELECT id FROM conveyor_jobs
        WHERE status = 'pending' AND queue = %(queue)s
          AND NOT EXISTS (SELECT 1 FROM conveyor_queues WHERE name = %(queue)s AND paused)
        ORDER BY priority DESC, id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )""",
    returning=_RETURNING,
)
# Several queues: each unpaused queue's first jobs through the index, then the best of those
# (an index per queue keeps its order; one match on an array of queues would sort them all).
# Each queue locks up to the limit for the statement's few milliseconds; those not taken are
# free again when it ends.
CLAIM_QUEUES = CLAIM.format(
    next="""ready AS (
        SELECT q FROM unnest(%(queues)s::text[]) AS q
        WHERE NOT EXISTS (SELECT 1 FROM conveyor_queues WHERE name = q AND paused)
    ), next AS (
        SELECT c.id FROM ready, LATERAL (
            SELECT id, priority FROM conveyor_jobs
            WHERE status = 'pending' AND queue = ready.q
            ORDER BY priority DESC, id LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS c
        ORDER BY c.priority DESC, c.id LIMIT %(limit)s
    )""",
    returning=_RETURNING,
)

# A heartbeat never waits: rows an outcome write (or a cancel) holds are skipped; the worker
# checks those with a plain read before it calls a lease lost. Outcome writes lock their rows
# in id order (APPLY_OUTCOMES), so two of them never deadlock either.
HEARTBEAT = """
    WITH mine AS MATERIALIZED (
        SELECT id FROM conveyor_jobs
        WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s AND status = 'running'
        ORDER BY id FOR UPDATE SKIP LOCKED
    )
    UPDATE conveyor_jobs AS j SET lease_expires_at = now() + %(lease)s
    FROM mine WHERE j.id = mine.id
    RETURNING j.id, j.attempt, j.cancel_requested
"""

# A batch of outcomes, sent as one JSON array (one C-encoded document instead of seven
# arrays dumped element by element). The guard (same attempt, same worker, still running) is
# what makes a completion count once: a worker whose lease was rescued away matches no row.
# Finished ids are announced 100 to a NOTIFY (payloads hold at most 8000 bytes); released
# jobs announce their queue.
APPLY_OUTCOMES = """
    WITH v AS MATERIALIZED (
        SELECT * FROM jsonb_to_recordset(%(batch)s::jsonb)
            AS v(id uuid, attempt int, status text, finished bool, result jsonb, error jsonb, run_at timestamptz,
                 counters jsonb)
    ),
    -- The ids as an array (= ANY): an index probe per id whatever the table's size; as IN
    -- (SELECT ...) the planner, guessing v's size, read a small table whole, and matched the
    -- update's rows against `locked` one by one (100 x 100): twice the statement's time.
    locked AS MATERIALIZED (
        SELECT id FROM conveyor_jobs WHERE id = ANY(ARRAY(SELECT id FROM v)) ORDER BY id FOR UPDATE
    ),
    done AS (
        UPDATE conveyor_jobs AS j SET
            status = v.status,
            result = CASE WHEN v.finished THEN v.result ELSE j.result END,
            error = CASE WHEN v.status = 'pending' THEN j.error ELSE v.error END,
            completed_at = CASE WHEN v.finished THEN now() ELSE NULL END,
            run_at = COALESCE(v.run_at, j.run_at),
            attempt = CASE WHEN v.status = 'pending' THEN j.attempt - 1 ELSE j.attempt END,
            worker_id = NULL,
            lease_expires_at = NULL,
            updated_at = now()
        FROM v
        WHERE j.id = v.id AND j.id = ANY(ARRAY(SELECT id FROM locked)) AND j.attempt = v.attempt
          AND j.worker_id = %(worker_id)s AND j.status = 'running'
        RETURNING j.id, j.status, j.queue, j.batch_id, j.owner_org_id, j.kind
    ),
    -- The webhook outbox (store/webhooks.py): only for organisations subscribed to the event,
    -- so without subscriptions this is one probe of an empty table per batch.
    events AS (
        INSERT INTO conveyor_webhook_events (id, created_at, org_id, event_type, job_id, batch_id)
        SELECT gen_random_uuid(), now(), d.owner_org_id, 'job.' || d.status, d.id, d.batch_id FROM done d
        WHERE d.status IN ('completed', 'failed', 'cancelled', 'timeout') AND d.kind <> 'webhook_delivery'
          AND EXISTS (
            SELECT 1 FROM conveyor_webhooks w
            WHERE w.enabled AND w.org_id IS NOT DISTINCT FROM d.owner_org_id
              AND (w.events ? ('job.' || d.status) OR (d.batch_id IS NOT NULL AND w.events ? 'batch.completed'))
          )
    ),
    -- The job's counters (Context.count), with the outcome that finished it; null for most jobs,
    -- which the strict jsonb_each_text turns into no rows.
    counted AS (
        INSERT INTO conveyor_job_counters (job_id, org_id, kind, name, value, attempt, recorded_at)
        SELECT d.id, d.owner_org_id, d.kind, c.key, c.value::float8, v.attempt, now()
        FROM done d JOIN v ON v.id = d.id CROSS JOIN LATERAL jsonb_each_text(v.counters) AS c
        WHERE v.finished
    ),
    -- The audit trail: one record per new status and organisation, naming the jobs (the
    -- actions as rows.OUTCOME_ACTIONS names them).
    journal AS (
        INSERT INTO conveyor_audit_journal (recorded_at, actor_id, actor_name, action, object_type, after, org_id)
        SELECT now(), 'system', %(worker_id)s,
               CASE status WHEN 'scheduled' THEN 'job.retry_scheduled' WHEN 'pending' THEN 'job.released'
                           ELSE 'job.' || status END,
               'job', jsonb_build_object('count', count(*), 'jobIds', jsonb_agg(id::text ORDER BY id)), owner_org_id
        FROM done GROUP BY status, owner_org_id
    ),
    numbered AS (SELECT id, (row_number() OVER ()) / 100 AS chunk FROM done WHERE status <> 'pending'),
    chunks AS (SELECT string_agg(id::text, ',') AS ids FROM numbered GROUP BY chunk),
    notified AS (
        SELECT pg_notify('conveyor_finish', ids) FROM chunks
        UNION ALL
        SELECT pg_notify('conveyor_insert', queue)
        FROM (SELECT DISTINCT queue FROM done WHERE status = 'pending') AS released
    )
    SELECT done.id, done.batch_id, (SELECT count(*) FROM notified) FROM done
"""

WRITE_PROGRESS = """
    UPDATE conveyor_jobs AS j SET progress = v.progress, item_errors = v.item_errors,
        item_errors_dropped = v.dropped, updated_at = now()
    FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(progress)s::jsonb[], %(item_errors)s::jsonb[],
                %(dropped)s::int[]) AS v(id, attempt, progress, item_errors, dropped)
    WHERE j.id = v.id AND j.attempt = v.attempt AND j.status = 'running'
"""

INSERT_LOGS = """
    INSERT INTO conveyor_job_logs (job_id, ts, level, component, message, attempt)
    SELECT * FROM unnest(%(job_ids)s::uuid[], %(ts)s::timestamptz[], %(levels)s::int2[],
                         %(components)s::text[], %(messages)s::text[], %(attempts)s::int4[])
"""

NOTIFY = sa.text("SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p")


def async_url(url: str) -> str:
    return sa.make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


# Every connection notices a server gone silent (a network partition, its machine lost without
# closing sockets) within about a minute: libpq's own defaults are no connect timeout (psycopg
# waits 130 s) and the system's keepalive, two hours before the first probe. A connection
# waiting on a long statement still hears the server's keepalive answers. A URL's own values win.
CONNECTION_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def with_connection_defaults(url: str) -> str:
    """`url` with CONNECTION_DEFAULTS for the libpq parameters it does not set."""
    parsed = sa.make_url(url)
    missing = {k: v for k, v in CONNECTION_DEFAULTS.items() if k not in parsed.query}
    return parsed.update_query_dict(missing).render_as_string(hide_password=False)


# psycopg's pool retries a lost connection with a doubling delay (1, 2, 4 s...) for 5 minutes by
# default, and a caller arriving meanwhile waits for its next attempt: after an outage of two
# minutes, that could be a minute after the server came back; after one of half a second, one
# to two seconds. Here it tries once more a moment later and gives up; the next caller to find
# no connection has one opened at once, so a connection is tried as often as callers need one.
RECONNECT_GIVE_UP_SECONDS = 0.25
# How long a caller waits for a pooled connection when the pool's latest attempt to open one
# failed (the server down, restarting, refusing, out of slots): long enough to see the pool's
# second attempt; the pool timeout is for connections that are busy, not for those that cannot
# come.
REFUSED_WAIT_SECONDS = 2 * RECONNECT_GIVE_UP_SECONDS


class PoolState:
    """How a pool's latest attempt to open a connection went, and how many of its connections
    callers hold."""

    def __init__(self) -> None:
        self.refused: psycopg.OperationalError | None = None
        self.lent = 0


class PooledConnection(psycopg.AsyncConnection[Any]):
    """A pool's connection, which runs the hot paths' statements on one cursor of its own.

    `execute` makes a new cursor for every statement, and with it a new adaptation context
    that looks up and makes a dumper for each parameter's type again: ~27 µs of CPU for a
    single enqueue's 19 parameters, on a ~400 µs call. A pooled connection serves one caller
    at a time, so its cursor does too; a statement's rows are read before the next one runs."""

    _cursor: psycopg.AsyncCursor[Any] | None = None
    # Each pool's connections are of a class of their own, with a state of its own (see
    # _connection_class).
    pool_state: typing.ClassVar[PoolState] = PoolState()

    @classmethod
    async def connect(cls, conninfo: str = "", **kwargs: Any) -> typing.Self:
        try:
            conn = await super().connect(conninfo, **kwargs)
        except psycopg.OperationalError as exc:
            cls.pool_state.refused = exc
            raise
        cls.pool_state.refused = None
        return conn

    async def run(self, query: Any, params: Any = None) -> psycopg.AsyncCursor[Any]:
        cursor = self._cursor
        if cursor is None or cursor.closed:
            cursor = self._cursor = self.cursor()
        await cursor.execute(query, params)
        return cursor


def _heard_from_while_idle(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the server wrote to an idle pooled connection. Listening for nothing, such a
    connection hears from the server only when it is being cut (a restart, a failover, an
    administrator terminating it: a FATAL message, then the socket closed) or, rarely, of a
    setting changed. A poll of its socket costs ~1 µs, where a check query is a round trip
    (poll, not select: select cannot watch a descriptor numbered 1024 or more)."""
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


async def _check_if_heard_from(conn: PooledConnection) -> None:
    # The pool's check, before it hands a connection out: raising discards that one and the
    # caller gets another. Without it, a restarted server meant one failed call per
    # connection the pool held.
    if _heard_from_while_idle(conn):
        await AsyncConnectionPool.check_connection(conn)


def _connection_class() -> type[PooledConnection]:
    class Connection(PooledConnection):
        pool_state = PoolState()

    # What the pool's log lines show of a connection: not "_connection_class.<locals>.Connection".
    Connection.__name__ = Connection.__qualname__ = PooledConnection.__qualname__
    return Connection


def _autocommit_pool(url: str, size: int, options: str, timeout: float) -> AsyncConnectionPool[PooledConnection]:
    return AsyncConnectionPool(
        libpq_dsn(url),
        connection_class=_connection_class(),
        min_size=1,
        max_size=size,
        timeout=timeout,
        reconnect_timeout=RECONNECT_GIVE_UP_SECONDS,
        kwargs={"autocommit": True, "options": options},
        check=_check_if_heard_from,
        open=False,
    )


async def _pooled_connection(pool: AsyncConnectionPool[PooledConnection], state: PoolState) -> PooledConnection:
    """A connection from `pool` (whose state is `state`) within its timeout; within
    REFUSED_WAIT_SECONDS when the server refuses new ones and no caller holds one that could
    come back (at the server's connection limit, a busy connection is worth waiting for),
    raising PoolTimeout with the server's words."""
    first_wait = min(REFUSED_WAIT_SECONDS, pool.timeout)
    try:
        return await pool.getconn(first_wait)
    except PoolTimeout:
        if state.refused is not None and state.lent == 0:
            raise PoolTimeout(f"no connection to the database: {first_line(state.refused)}") from state.refused
        if pool.timeout <= first_wait:
            raise
    return await pool.getconn(pool.timeout - first_wait)


def _refuse_if_heard_from(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # SQLAlchemy's pool, likewise: a DisconnectionError on checkout makes it replace the
    # connection and check out again (its "pessimistic" handling, without a ping per checkout).
    if _heard_from_while_idle(dbapi_connection.driver_connection):
        raise sa.exc.DisconnectionError("the server wrote to this idle connection: replaced")


def _read_only_is_a_disconnect(context: sa.engine.ExceptionContext) -> None:
    # SQLAlchemy's pool, likewise: a disconnect makes it replace every connection it holds
    # (all of them point at the same server).
    if isinstance(context.original_exception, psycopg.errors.ReadOnlySqlTransaction):
        context.is_disconnect = True


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps)


def one_job_insert(row: dict[str, Any], record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement that stores one job (`row`, as rows.row_of makes it) with its audit journal
    row (`record`), its count and its NOTIFY (insert_one), and the statement's parameters."""
    params = {c: v for c, v in row.items() if v is not None and c in _COLUMN_TYPES}
    for c in _JSON_COLUMNS:
        if c in params:
            params[c] = Jsonb(params[c], dumps)
    statement = insert_one(tuple(params))
    for param, c in _JOURNAL_PARAMS:
        params[param] = record[c]
    params["audit_after"] = _json(record["after"])
    return statement, params


class PostgresStore(PostgresRollups, SqlStore):
    dialect = "postgresql"
    _echoes_notifications = True

    def __init__(self, url: str, *, pool_size: int = 10, pool_timeout: float = 10.0) -> None:
        url = with_connection_defaults(url)
        # No overflow: connections opened past the pool would be closed on return, and a busy API
        # would open and close a PostgreSQL session per request; callers queue for one instead.
        # hide_parameters: what a statement stores (job data, names) stays out of error messages,
        # and so out of logs.
        engine = create_async_engine(
            async_url(url), pool_size=pool_size, max_overflow=0, pool_timeout=pool_timeout, hide_parameters=True
        )
        sa.event.listen(engine.sync_engine.pool, "checkout", _refuse_if_heard_from)
        sa.event.listen(engine.sync_engine, "handle_error", _read_only_is_a_disconnect)
        super().__init__(engine, url=url)
        self._listener: PostgresListener | None = None
        self._topics: set[str] = set()
        # UTC sessions: timestamps come back in UTC, as SQLAlchemy's reads give them.
        self._pool = _autocommit_pool(url, pool_size, "-c TimeZone=UTC", pool_timeout)
        # Claims and heartbeats need not wait for their commit to reach the disk: if the
        # database lost one in a crash, the job would be pending again (and claimed again)
        # or its lease a little shorter; the outcome guard keeps the recorded completion
        # single either way. Enqueues and outcomes stay fully durable.
        self._claim_pool = _autocommit_pool(url, 2, "-c TimeZone=UTC -c synchronous_commit=off", pool_timeout)
        self._pool_opening = asyncio.Lock()

    async def connect(self) -> None:
        # The enqueue and read pool; the claim pool waits for a worker to claim.
        await self._open(self._pool)

    async def _open(self, pool: AsyncConnectionPool[PooledConnection]) -> None:
        if pool.closed:
            async with self._pool_opening:
                if pool.closed:
                    await pool.open(wait=True)

    @asynccontextmanager
    async def _raw(self, pool: AsyncConnectionPool[PooledConnection] | None = None) -> AsyncIterator[PooledConnection]:
        pool = pool or self._pool
        if pool.closed:
            await self._open(pool)
        # getconn/putconn rather than pool.connection(), whose `async with conn` would commit
        # (a no-op on these autocommit connections, under the connection's lock): half the
        # pool's ~8 µs a call. putconn still rolls back a transaction left open, and closes a
        # connection left mid-statement (a cancelled caller).
        state = pool.connection_class.pool_state
        conn = await _pooled_connection(pool, state)
        state.lent += 1
        try:
            yield conn
        except psycopg.errors.ReadOnlySqlTransaction:
            # Connected to a server that no longer takes writes (a failover's old primary): the
            # pool opens a fresh connection instead of handing this one out again.
            await conn.close()
            raise
        finally:
            state.lent -= 1
            await pool.putconn(conn)

    async def listen(self, listener: Listener, topics: Collection[str] = TOPICS) -> None:
        await super().listen(listener, topics)
        wanted = self._topics | set(topics)
        if self._listener is not None and wanted == self._topics:
            return
        # A new connection for the wider set; the old one listens until the new one does.
        replaced, self._topics = self._listener, wanted
        self._listener = PostgresListener(self._url, [CHANNELS[t] for t in wanted], self._publish_raw)
        await self._listener.start()
        if replaced is not None:
            await replaced.stop()

    def _publish_raw(self, channel: str, payload: str) -> None:
        self._publish(TOPIC_OF_CHANNEL[channel], payload.split(","))

    @property
    def notifies_across_processes(self) -> bool:
        return True

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
        await self._pool.close()
        await self._claim_pool.close()
        await super().close()

    def _now(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    def _now_plus(self, delta: timedelta) -> sa.ColumnElement[Any]:
        return sa.func.now() + sa.literal(delta, sa.Interval())

    def _seconds_between(self, start: Any, end: Any) -> sa.ColumnElement[float]:
        return sa.func.extract("epoch", end - start)

    def _minute_of(self, column: Any) -> sa.ColumnElement[Any]:
        return sa.func.date_trunc("minute", column)

    def _lock_skipping(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update(skip_locked=True)

    async def _notify(self, conn: AsyncConnection, topic: str, payloads: Sequence[str]) -> None:
        if not payloads:
            return
        # A NOTIFY payload holds at most 8000 bytes: ids go in chunks of 100 (3,700 bytes).
        chunks = [",".join(payloads[i : i + 100]) for i in range(0, len(payloads), 100)]
        await conn.execute(NOTIFY, {"channel": CHANNELS[topic], "payloads": chunks})

    # --- enqueue ---------------------------------------------------------------------------

    async def insert_batches(self, batches: Iterable[Sequence[NewJob]]) -> list[Job]:
        # COPY, fed batch by batch: the server stores one batch on its core while this process
        # makes the next on its own. An exception while making one aborts the COPY and with
        # it the transaction.
        remaining = iter(batches)
        first = next(remaining, [])
        if len(first) < COPY_THRESHOLD:  # a small first batch: a plain INSERT is quicker if alone
            second = next(remaining, None)
            if second is None:
                return await super().insert_batches([first])
            remaining = itertools.chain([second], remaining)
        stored: list[Job] = []
        records: list[dict[str, Any]] = []
        ready: set[str] = set()
        counts: Counter[tuple[Any, ...]] = Counter()
        async with self._raw() as conn, conn.transaction():
            # The transaction's now() is the jobs' creation time: the COPY leaves created_at and
            # updated_at (and run_at, where all are due) to the columns' defaults, which are it.
            now = await self._transaction_now(conn)
            # One COPY per run of batches of one shape: all due at once, or some scheduled.
            for all_due, run in itertools.groupby(itertools.chain([first], remaining), key=_all_pending):
                async with conn.cursor().copy(COPY_DUE if all_due else COPY_WITH_RUN_AT) as copy:
                    for batch in run:
                        await copy.write(copy_text(batch, now, with_run_at=not all_due))
                        made = [job_of_new(n, now, now) for n in batch]
                        stored.extend(made)
                        records.append(bulk_created_record(made, batch[0], now))
                        ready.update(n.queue for n in batch if n.status is _PENDING)
                        counts.update(map(count_key, batch))
            await conn.run(COUNT_INSERTED, (Jsonb(count_deltas(counts), dumps),))
            await conn.run(
                JOURNAL_MANY, {"audit": Jsonb([{c: r[c] for c in _JOURNAL_COLUMNS} for r in records], dumps)}
            )
            await conn.run("SELECT pg_notify(%s, q) FROM unnest(%s::text[]) AS q", (CHANNELS["insert"], sorted(ready)))
        return stored

    @staticmethod
    async def _transaction_now(conn: PooledConnection) -> datetime:
        cursor = await conn.run("SELECT now()")
        row = await cursor.fetchone()
        assert row is not None  # nosec B101: SELECT now() always returns its row
        return typing.cast(datetime, row[0])

    async def _count_inserted(self, conn: AsyncConnection, new_jobs: Sequence[NewJob]) -> None:
        if new_jobs:
            await conn.execute(job_counts.insert(), count_deltas(Counter(map(count_key, new_jobs))))

    async def _insert_rows(
        self,
        new_jobs: Sequence[NewJob],
        rows: list[dict[str, Any]],
        records: list[dict[str, Any]],
        also: Sequence[AuditEntry] = (),
    ) -> set[UUID]:
        if also:  # rare (a retry by hand, perhaps signed): the portable transaction journals them
            return await super()._insert_rows(new_jobs, rows, records, also)
        if len(rows) == 1:
            [row], [record] = rows, records
            statement, params = one_job_insert(row, record)
        else:
            present = tuple(c for c in _COLUMNS if any(r[c] is not None for r in rows))
            params = {c: [r[c] for r in rows] for c in present}
            for c in _JSON_COLUMNS:
                if c in params:
                    params[c] = [_json(v) for v in params[c]]
            params["audit"] = Jsonb([{c: rec[c] for c in _JOURNAL_COLUMNS} for rec in records], dumps)
            statement = insert_many(present)
        async with self._raw() as conn:
            cursor = await conn.run(statement, params)
            return {row[0] for row in await cursor.fetchall()}

    # --- reads -------------------------------------------------------------------------------

    async def get_job(self, job_id: UUID) -> Job | None:
        # The API's most frequent read: one statement on an autocommit connection, rows as
        # dicts (SQLAlchemy's transaction and result layers cost several times the query).
        async with self._raw() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute("SELECT * FROM conveyor_jobs WHERE id = %s", (job_id,))
            row = await cursor.fetchone()
        return job_from_mapping(row) if row else None

    # --- the worker's side -------------------------------------------------------------------

    async def claim_jobs(self, queues: Sequence[str], limit: int, worker_id: str, lease: timedelta) -> list[Job]:
        if limit <= 0:
            return []
        params: dict[str, Any] = {"limit": limit, "worker_id": worker_id, "lease": lease}
        if len(queues) == 1:
            statement, params["queue"] = CLAIM_ONE_QUEUE, queues[0]
        else:
            statement, params["queues"] = CLAIM_QUEUES, list(queues)
        async with self._raw(self._claim_pool) as conn:
            cursor = await conn.run(statement, params)
            claimed = [claimed_job(*row, worker_id=worker_id) for row in await cursor.fetchall()]
        claimed.sort(key=lambda j: (-j.priority, j.id))  # RETURNING keeps no order
        return claimed

    async def heartbeat(
        self, worker_id: str, job_ids: Sequence[UUID], lease: timedelta
    ) -> dict[UUID, tuple[int, bool]]:
        if not job_ids:
            return {}
        async with self._raw(self._claim_pool) as conn:
            cursor = await conn.run(HEARTBEAT, {"ids": list(job_ids), "worker_id": worker_id, "lease": lease})
            return {job_id: (attempt, cancel) for job_id, attempt, cancel in await cursor.fetchall()}

    async def flush(
        self,
        outcomes: Sequence[Outcome] = (),
        progress: Sequence[ProgressUpdate] = (),
        logs: Sequence[LogEntry] = (),
    ) -> list[UUID]:
        if not (outcomes or progress or logs):
            return []
        async with self._raw() as conn:
            if not (progress or logs):  # the common case: one statement, no transaction needed
                done = await self._apply_outcomes_raw(conn, outcomes)
            else:
                async with conn.transaction():
                    if logs:
                        await conn.run(INSERT_LOGS, _log_params(logs))
                    if progress:
                        await conn.run(WRITE_PROGRESS, _progress_params(progress))
                    done = await self._apply_outcomes_raw(conn, outcomes)
        # Members of batches finished: settle those (a transaction of their own, after this
        # one committed; see store/batches.py). Jobs of no batch cost nothing here.
        if batch_ids := batch_ids_of(done):
            await self.settle_batches_quietly(batch_ids)
        return [job_id for job_id, _batch_id in done]

    async def _apply_outcomes_raw(
        self, conn: PooledConnection, outcomes: Sequence[Outcome]
    ) -> list[tuple[UUID, UUID | None]]:
        applied: list[tuple[UUID, UUID | None]] = []
        for worker_id in sorted({o.worker_id for o in outcomes}):
            batch = [_outcome_record(o) for o in outcomes if o.worker_id == worker_id]
            cursor = await conn.run(APPLY_OUTCOMES, {"batch": Jsonb(batch, dumps), "worker_id": worker_id})
            applied.extend((row[0], row[1]) for row in await cursor.fetchall())
        return applied


def _outcome_record(o: Outcome) -> dict[str, Any]:
    status = OUTCOME_STATUS[o.kind]
    return {
        "id": str(o.job_id),
        "attempt": o.attempt,
        "status": status.value,
        "finished": status in FINISHED,
        "result": o.result if o.kind is OutcomeKind.COMPLETED else None,
        "error": o.error,
        "run_at": o.run_at.isoformat() if o.run_at else None,
        "counters": dict(o.counters) if o.counters and status in FINISHED else None,
    }


def _log_params(logs: Sequence[LogEntry]) -> dict[str, list[Any]]:
    return {
        "job_ids": [e.job_id for e in logs],
        "ts": [e.timestamp for e in logs],
        "levels": [int(e.level) for e in logs],
        "components": [e.component for e in logs],
        "messages": [e.message for e in logs],
        "attempts": [e.attempt for e in logs],
    }


def _progress_params(updates: Sequence[ProgressUpdate]) -> dict[str, list[Any]]:
    return {
        "ids": [u.job_id for u in updates],
        "attempts": [u.attempt for u in updates],
        "progress": [Jsonb(u.progress.to_json(), dumps) for u in updates],
        "item_errors": [Jsonb(u.item_errors, dumps) for u in updates],
        "dropped": [u.item_errors_dropped for u in updates],
    }
