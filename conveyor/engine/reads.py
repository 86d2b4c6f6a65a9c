"""Reads of sealed data, recorded: a `job.read` audit record each time a reader opens a
sensitive job's data, result, errors or log lines; with a window set, once per reader, job and fields
within it.

A reader who polls (the dashboard's live job page, a script's status loop, a client's `wait`)
opens the same job every second or two; a record per poll would bury the reads an auditor looks
for under thousands that say nothing new. Within `window` a repeated read by the same reader
(user and client address) of the same fields of the same job is not recorded again; a new
reader, a new field or the window's end records again. Window zero (the default): every read
is recorded, as seed 001 asks of medication data; the dashboard follows a job through its event
stream, which opens no sealed field, so a watched job does not flood the trail.
The memory of recent reads is per process and bounded; several API processes each record a
reader's first read in their window.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
from uuid import UUID

from conveyor.audit import current_actor
from conveyor.engine.audit import Audit
from conveyor.model import Job

DEFAULT_WINDOW = timedelta(0)
CAPACITY = 100_000  # (reader, job, fields) remembered; the oldest are forgotten first


class Reads:
    def __init__(
        self,
        audit: Audit,
        window: timedelta = DEFAULT_WINDOW,
        *,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._audit = audit
        self._window = window.total_seconds()
        self._capacity = capacity
        self._clock = clock
        self._recent: OrderedDict[tuple[str | None, str | None, UUID, tuple[str, ...]], float] = OrderedDict()

    def _new(self, job_id: UUID, fields: Sequence[str]) -> bool:
        """True when this read is to be recorded (and remember that it was)."""
        if self._window <= 0:
            return True
        actor = current_actor()
        key = (actor.user_id, actor.client_address, job_id, tuple(fields))
        now = self._clock()
        seen = self._recent.get(key)
        if seen is not None and now - seen < self._window:
            return False
        self._recent[key] = now
        self._recent.move_to_end(key)
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
        return True

    async def job(self, job: Job, fields: Sequence[str]) -> None:
        """`fields` of `job` (data, result, error, item_errors, logs) opened for the current reader."""
        if fields and self._new(job.id, fields):
            await self._audit.record("job.read", "job", job.id, after={"fields": list(fields)}, org_id=job.owner.org_id)

    async def page(self, jobs: Sequence[Job]) -> None:
        """A page of a list with these sensitive jobs on it: one record naming those new to
        the reader."""
        fresh = [j for j in jobs if self._new(j.id, ("list",))]
        if fresh:
            orgs = {j.owner.org_id for j in fresh}
            await self._audit.record(
                "job.read", "job", None, after={"count": len(fresh), "jobIds": [str(j.id) for j in fresh]},
                org_id=orgs.pop() if len(orgs) == 1 else None,
            )  # fmt: skip
