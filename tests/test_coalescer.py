"""Concurrent single enqueues share statements, and each caller still gets exactly its job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.engine.coalescer import EnqueueCoalescer
from conveyor.model import Job, NewJob


class CountingInsert:
    def __init__(self, app: Conveyor, fail: bool = False) -> None:
        self.app = app
        self.batches: list[int] = []
        self.fail = fail

    async def __call__(self, new_jobs: Sequence[NewJob]) -> list[tuple[Job, bool]]:
        self.batches.append(len(new_jobs))
        if self.fail:
            raise ConnectionError("database went away")
        return await self.app.store.insert_jobs(new_jobs)


async def test_concurrent_enqueues_share_statements_and_get_their_own_jobs(app: Conveyor) -> None:
    counting = CountingInsert(app)
    app.engine._coalescer = EnqueueCoalescer(counting)
    jobs = await asyncio.gather(*(app.engine.enqueue("t.echo", {"value": i}) for i in range(200)))
    assert [j.data["value"] for j in jobs] == list(range(200))
    assert len({j.id for j in jobs}) == 200
    assert sum(counting.batches) == 200 and len(counting.batches) < 50  # shared statements
    assert (await app.engine.counts()) == {"pending": 200}


async def test_one_idempotency_key_in_one_batch_gives_one_job(app: Conveyor) -> None:
    results = await asyncio.gather(*(app.engine.submit("t.echo", {"value": i}, idempotency_key="k") for i in range(20)))
    assert len({job.id for job, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert (await app.engine.counts()) == {"pending": 1}


async def test_a_failed_batch_fails_every_caller_and_stores_nothing(app: Conveyor) -> None:
    app.engine._coalescer = EnqueueCoalescer(CountingInsert(app, fail=True))
    outcomes: list[Any] = await asyncio.gather(
        *(app.engine.enqueue("t.echo", {}) for _ in range(30)), return_exceptions=True
    )
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert (await app.engine.counts()) == {}


async def test_an_idle_enqueue_is_written_at_once(app: Conveyor) -> None:
    counting = CountingInsert(app)
    app.engine._coalescer = EnqueueCoalescer(counting)
    for _ in range(3):
        await app.engine.enqueue("t.echo", {})
    assert counting.batches == [1, 1, 1]


@pytest.mark.parametrize("n", [1, 600])
async def test_batches_never_exceed_their_maximum(app: Conveyor, n: int) -> None:
    counting = CountingInsert(app)
    app.engine._coalescer = EnqueueCoalescer(counting, max_batch=250)
    await asyncio.gather(*(app.engine.enqueue("t.echo", {}) for _ in range(n)))
    assert max(counting.batches) <= 250 and sum(counting.batches) == n
