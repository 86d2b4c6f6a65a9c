"""Completer: buffers outcomes, progress and log lines and writes them in batches.

One flush in flight at a time; whatever arrives meanwhile goes in the next one, so a busy
worker writes hundreds of outcomes per transaction and an idle one writes each at once.
A failed write keeps the buffer and tries again: an outcome is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from uuid import UUID

from conveyor.model import LogEntry, Outcome, ProgressUpdate
from conveyor.store.base import Store
from conveyor.store.outage import RetryPauses, log_failure

log = logging.getLogger("conveyor.worker")
MAX_BATCH = 1000


class Completer:
    def __init__(
        self, store: Store, *, linger: float = 0.002, on_flushed: Callable[[int], None] = lambda _n: None
    ) -> None:
        self._linger = linger
        self._store = store
        self._outcomes: list[Outcome] = []
        self._progress: dict[object, ProgressUpdate] = {}
        self._logs: list[LogEntry] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_flushed = on_flushed

    def add(
        self,
        outcome: Outcome | None = None,
        progress: ProgressUpdate | None = None,
        logs: Sequence[LogEntry] = (),
    ) -> None:
        if progress is not None:
            self._progress[progress.job_id] = progress  # the newest report wins
        self._logs.extend(logs)
        if outcome is not None:
            self._outcomes.append(outcome)
        if outcome is not None or progress is not None or logs:
            self._idle.clear()
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._outcomes)

    def unwritten(self) -> list[UUID]:
        """The jobs whose outcomes wait to be written: still running in the store."""
        return [o.job_id for o in self._outcomes]

    async def run(self) -> None:
        pauses = RetryPauses(0.05)
        while True:
            await self._wake.wait()
            if len(self._outcomes) < MAX_BATCH // 10:
                # Outcomes of jobs finishing together come within a moment of each other:
                # waiting that moment writes them in one transaction instead of many.
                await asyncio.sleep(self._linger)
            self._wake.clear()
            while self._outcomes or self._progress or self._logs:
                try:
                    await self._flush_once()
                    pauses.reset()
                except Exception as exc:  # noqa: BLE001 - logged by log_failure
                    pause = pauses.next()
                    log_failure(log, exc, "writing job outcomes failed; retrying in %.2fs", pause)
                    await asyncio.sleep(pause)
            self._idle.set()

    async def _flush_once(self) -> None:
        outcomes = self._outcomes[:MAX_BATCH]
        progress = list(self._progress.values())
        logs = self._logs[: MAX_BATCH * 10]
        await self._store.flush(outcomes, progress, logs)
        # Only now drop what was written: a failed flush leaves everything in place.
        del self._outcomes[: len(outcomes)]
        del self._logs[: len(logs)]
        for update in progress:
            if self._progress.get(update.job_id) is update:
                del self._progress[update.job_id]
        self._on_flushed(len(outcomes))

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered so far is written; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
