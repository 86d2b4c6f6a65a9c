"""procrastinate 3.x as the benchmark drives it, adapted from the peers harness
(/work/shared/peers-bench/bench_procrastinate.py): the same tasks, the same worker command
(`procrastinate worker --concurrency=10`, one App per process) and the same completion count.
One difference: the workers log at warning, as conveyor's and pgqueuer's do here; the peers
harness left procrastinate at its default, info, which writes two lines per job.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import procrastinate

from bench import pickup
from bench.databases import PostgresDatabase
from bench.harness import WORKERS

CONCURRENCY = 10  # the peers harness's setting
DSN_ENV = "BENCH_PROCRASTINATE_DSN"


async def noop() -> None:
    pass


async def pickup_task(t_enqueued: float) -> None:
    pickup.record(t_enqueued)


def build_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, max_size=CONCURRENCY + 2),
    )
    app.task(name="noop")(noop)
    app.task(name="pickup")(pickup_task)
    return app


# The App the worker processes load (`--app bench.procrastinate_subject.app`). procrastinate
# takes an App object, not a factory, so the database comes from the environment at import.
app = build_app(os.environ.get(DSN_ENV, ""))


class ProcrastinateSession:
    def __init__(self, app: procrastinate.App) -> None:
        self._app = app

    async def enqueue_noop(self) -> None:
        await self._app.tasks["noop"].defer_async()

    async def enqueue_noops(self, n: int) -> None:
        await self._app.tasks["noop"].batch_defer_async(*({} for _ in range(n)))

    async def enqueue_pickup(self, t_enqueued: float) -> None:
        await self._app.tasks["pickup"].defer_async(t_enqueued=t_enqueued)

    async def completed(self) -> int:
        row = await self._app.connector.execute_query_one_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        return int(row["n"])


class ProcrastinateSubject:
    name = "procrastinate"
    workers = f"{WORKERS} x procrastinate worker --concurrency={CONCURRENCY}"

    def __init__(self, server_url: str) -> None:
        self._database = PostgresDatabase(server_url, "conveyor_bench_procrastinate")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[ProcrastinateSession]:
        await self._database.recreate()
        try:
            async with build_app(self._database.url).open_async() as client:
                await client.schema_manager.apply_schema_async()
                yield ProcrastinateSession(client)
        finally:
            await self._database.drop()

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "procrastinate", "--app=bench.procrastinate_subject.app"]
        argv += ["--log-level=warning", "worker", f"--concurrency={CONCURRENCY}"]
        return argv, {DSN_ENV: self._database.url}
