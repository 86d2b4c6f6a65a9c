"""conveyor, on PostgreSQL or SQLite, as the benchmark drives it.

Its workers are the real command, `python -m conveyor.cli worker`, configured through the
environment as in production; they load this module's `registry` (CONVEYOR_JOBTYPES) for the
latency job. The no-op job is conveyor's built-in `noop`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator

from pydantic import BaseModel

from bench import pickup
from bench.databases import Database
from bench.harness import WORKERS
from conveyor import Context, Conveyor, Engine, Registry, Settings

CONCURRENCY = 100  # jobs one worker process runs at once

registry = Registry()


class PickupInput(BaseModel):
    t_enqueued: float


@registry.job_type("bench.pickup")
async def pickup_job(ctx: Context, data: PickupInput) -> None:
    pickup.record(data.t_enqueued)


class ConveyorSession:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def enqueue_noop(self) -> None:
        await self._engine.enqueue("noop", {})

    async def enqueue_noops(self, n: int) -> None:
        # The bulk call for many jobs of one type, n empty inputs (as pgqueuer's is given lists
        # of n entrypoints and n payloads); enqueue_many takes a JobRequest per job, for jobs
        # that differ.
        await self._engine.enqueue_each("noop", [{}] * n)

    async def enqueue_pickup(self, t_enqueued: float) -> None:
        await self._engine.enqueue("bench.pickup", {"t_enqueued": t_enqueued})

    async def completed(self) -> int:
        return (await self._engine.counts()).get("completed", 0)


class ConveyorSubject:
    workers = f"{WORKERS} x conveyor worker --concurrency {CONCURRENCY}"

    def __init__(self, name: str, database: Database) -> None:
        self.name = name
        self._database = database

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[ConveyorSession]:
        await self._database.recreate()
        app = Conveyor.from_settings(Settings(database_url=self._database.url), registries=[registry])
        try:
            await app.start()  # applies the migrations
            yield ConveyorSession(app.engine)
        finally:
            await app.close()
            await self._database.drop()

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "conveyor.cli", "worker"]
        argv += ["--concurrency", str(CONCURRENCY), "--log-level", "warning"]
        env = {
            "CONVEYOR_DATABASE_URL": self._database.url,
            "CONVEYOR_QUEUES": "default",  # where noop and bench.pickup go, whatever our environment says
            "CONVEYOR_JOBTYPES": "bench.conveyor_subject:registry",
        }
        return argv, env
