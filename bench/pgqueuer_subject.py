"""pgqueuer 1.x as the benchmark drives it, adapted from the peers harness
(/work/shared/peers-bench/bench_pgqueuer.py): the same entrypoints, the same worker
(`pgqueuer.run(factory, batch_size=10)`) and the same completion count.

The worker is this module run as a program. pgqueuer 1.6.0's own `pgq run` crashes at start
with typer 0.29 (its logger set-up gets a str and calls .name on it), so, as the peers harness
does, it calls pgqueuer.run(), the supervisor that command calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer, Queries
from pgqueuer.models import Job

from bench import pickup
from bench.databases import PostgresDatabase
from bench.harness import WORKERS

BATCH_SIZE = 10  # `pgq run`'s default --batch-size, as in the peers harness
DSN_ENV = "BENCH_PGQUEUER_DSN"


@contextlib.asynccontextmanager
async def worker_factory() -> AsyncIterator[PgQueuer]:
    conn = await asyncpg.connect(os.environ[DSN_ENV])
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        pass

    @pgq.entrypoint("pickup")
    async def pickup_entrypoint(job: Job) -> None:
        pickup.record(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()


class PgqueuerSession:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._queries = Queries.from_asyncpg_connection(conn)

    async def enqueue_noop(self) -> None:
        await self._queries.enqueue("noop", None)

    async def enqueue_noops(self, n: int) -> None:
        await self._queries.enqueue(["noop"] * n, [None] * n, [0] * n)

    async def enqueue_pickup(self, t_enqueued: float) -> None:
        await self._queries.enqueue("pickup", repr(t_enqueued).encode())

    async def completed(self) -> int:
        # A finished job leaves the queue table; its outcome is logged in pgqueuer_log.
        return await self._conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")


class PgqueuerSubject:
    name = "pgqueuer"
    workers = f"{WORKERS} x pgqueuer.run(factory, batch_size={BATCH_SIZE})"

    def __init__(self, server_url: str) -> None:
        self._database = PostgresDatabase(server_url, "conveyor_bench_pgqueuer")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[PgqueuerSession]:
        await self._database.recreate()
        try:
            conn = await asyncpg.connect(self._database.url)
            try:
                await Queries.from_asyncpg_connection(conn).install()
                yield PgqueuerSession(conn)
            finally:
                await conn.close()
        finally:
            await self._database.drop()

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "bench.pgqueuer_subject"], {DSN_ENV: self._database.url}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(pgqueuer.run(worker_factory, batch_size=BATCH_SIZE))


if __name__ == "__main__":
    main()
