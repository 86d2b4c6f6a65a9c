"""Scheduler: fires due schedules, from the one process that holds the scheduler's lease.

Every `conveyor worker` and `conveyor serve` process runs one. Each pass (every `interval`)
takes or renews the lease `scheduler` in the database (`Store.elect_leader`, on the
database's clock); the process holding it fires what is due, the others do nothing. A leader
that dies stops renewing, and another process takes over once the lease runs out; on a clean
shutdown it gives the lease up at once. Exactly-once firing does not rest on the lease (two
processes may both believe they lead for a moment): see conveyor.store.schedules.

The leader also seals the audit journal into its chain each pass (conveyor.engine.audit), so
records join the chain within about a pass of being written, whichever process wrote them,
once a minute forgets job-creation rate windows no limit looks at any more, and runs its
chores when due: webhook dispatch (each pass), alerts, retention.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.engine.schedules import Schedules
from conveyor.model import Job
from conveyor.periodic import run_periodically
from conveyor.store.outage import log_failure

log = logging.getLogger("conveyor.scheduler")

LEASE_NAME = "scheduler"
PRUNE_INTERVAL_SECONDS = 60
RATE_WINDOWS_KEPT = timedelta(hours=2)  # the longest limit (an hour) looks back one window more


@dataclass
class Chore:
    """A leader-only task run every `interval` (seconds) from the scheduler's pass: webhook
    dispatch, retention, alerts (see Conveyor.scheduler)."""

    name: str
    interval: float
    run: Callable[[], Awaitable[Any]]
    next_at: float = 0.0


class Scheduler:
    def __init__(
        self,
        schedules: Schedules,
        *,
        node_id: str | None = None,
        interval: timedelta = timedelta(seconds=1),
        lease: timedelta = timedelta(seconds=20),
        chores: Sequence[Chore] = (),
    ) -> None:
        if lease <= interval:
            raise ValueError("the scheduler's lease must outlast the interval it is renewed at")
        self.schedules = schedules
        self.store = schedules.store
        self.node_id = node_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.interval = interval
        self.lease = lease
        self.is_leader = False
        self._next_prune = 0.0
        self.chores = list(chores)

    async def run_once(self, now: datetime | None = None) -> list[Job]:
        """One pass: lead (take or renew the lease), then fire what is due; the jobs made.
        `now` fixes the clock for both (tests step through time with it); by default the
        database's clock decides."""
        if not await self.elect(now):
            return []
        return await self.schedules.fire_due(now or await self.store.database_now())

    async def elect(self, now: datetime | None = None) -> bool:
        """Take or renew the lease; whether this node leads now."""
        leading = await self.store.elect_leader(LEASE_NAME, self.node_id, self.lease, now=now)
        if leading != self.is_leader:
            log.info("scheduler %s: %s", self.node_id, "leading" if leading else "no longer leading")
        self.is_leader = leading
        return leading

    async def run(self) -> None:
        """Pass after pass until cancelled (a pass under way finishes first); then give up the
        lease if held."""
        try:
            # First a pause, as every maintenance loop: a process that starts and stops at once
            # (a command, a test) need not take the lease.
            # jitter between passes, not a secret (bandit B311)
            await run_periodically(lambda: self.interval.total_seconds() * random.uniform(0.9, 1.1), self._pass)  # nosec B311
        finally:
            if self.is_leader:
                with contextlib.suppress(Exception):
                    await self.store.resign_leader(LEASE_NAME, self.node_id)
                self.is_leader = False

    async def _pass(self) -> None:
        try:
            leading = await self.elect()
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "scheduler pass failed")
            # The lease was not renewed, and may lapse to another node: the leader's chores
            # wait for a pass that confirms the lead (in an outage they would fail, a line each).
            return
        if not leading:
            return
        try:
            await self.schedules.fire_due(await self.store.database_now())
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the chores still run
            log_failure(log, exc, "firing due schedules failed")
        # The leader's other chores.
        try:
            await self.schedules.engine.audit.seal()  # chain what the audit journal holds
            if time.monotonic() >= self._next_prune:  # forget rate windows no limit looks at
                self._next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
                await self.store.prune_rate_windows(datetime.now(UTC) - RATE_WINDOWS_KEPT)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "the leader's chores failed")
        await self.run_chores()

    async def run_chores(self, *, every: bool = False) -> None:
        """The leader's chores that are due (`every`: all of them, now); each one's failure is
        logged, and the others still run."""
        for chore in self.chores:
            if not (every or time.monotonic() >= chore.next_at):
                continue
            chore.next_at = time.monotonic() + chore.interval
            try:
                await chore.run()
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                log_failure(log, exc, "the leader's chore %s failed", chore.name)
