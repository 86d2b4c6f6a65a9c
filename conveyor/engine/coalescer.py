"""Group enqueue: single enqueues that arrive together are stored by one statement.

Under concurrent load (an API answering many create requests) each single INSERT pays its
own round trip, statement, trigger, NOTIFY and commit. Here an enqueue that arrives while
another batch is being written waits for the next batch instead, so a busy process writes
a few multi-row statements instead of many one-row ones; an enqueue that arrives when
nothing is in flight is written at once, by its own caller (no waiting for company and no
hand-off to another task, so no added latency when idle).

Each job is validated before it joins a batch, so a batch can only fail as a whole for a
reason that is not the job's own (the database is gone); every caller in it then gets that
error, and none of its jobs is stored. Idempotency keys behave as before: the statement
skips known keys, and each caller gets the job its key names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from conveyor.model import Job, NewJob

Insert = Callable[[Sequence[NewJob]], Awaitable[list[tuple[Job, bool]]]]


class EnqueueCoalescer:
    def __init__(self, insert: Insert, *, max_batch: int = 500, max_in_flight: int = 2) -> None:
        self._insert = insert
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[NewJob, asyncio.Future[tuple[Job, bool]]]] = []
        self._in_flight = 0
        # The event loop keeps only weak references to tasks: the writers are kept here until done.
        self._writers: set[asyncio.Task[None]] = set()

    async def insert(self, new_job: NewJob) -> tuple[Job, bool]:
        if self._in_flight < self._max_in_flight and not self._waiting:
            self._in_flight += 1
            try:
                [result] = await self._insert([new_job])
            finally:
                self._in_flight -= 1
                self._hand_over()
            return result
        future: asyncio.Future[tuple[Job, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append((new_job, future))
        self._hand_over()
        return await future

    def _hand_over(self) -> None:
        """Start a writer for the jobs waiting, if a statement may be in flight now."""
        if self._waiting and self._in_flight < self._max_in_flight:
            self._in_flight += 1
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    results = await self._insert([new for new, _ in batch])
                except BaseException as exc:  # every caller learns why its job was not stored
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._in_flight -= 1
