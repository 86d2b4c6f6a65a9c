"""Job-creation limits (seed 002's throughput limits): jobs per principal per minute and per
hour, and pending jobs per queue. The API asks before it creates jobs; the answer says why
not and when to try again. Counts live in the database (conveyor.store.limits), so the
limits hold however many API processes share it.

Library code that enqueues through the engine is not limited: it is trusted, and chooses
its own backpressure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from conveyor.access import Role
from conveyor.model import JobFilter, Status, utc_now
from conveyor.settings import Settings
from conveyor.store.base import Store

QUEUE_FULL_RETRY_SECONDS = 5  # a full queue drains at the workers' pace: look again soon
WINDOWS = (60, 3600)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # "rate" or "queue"
    message: str
    retry_after: int | None  # seconds; None: waiting will not help (more than a limit at once)


class JobLimits:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store: Any = store
        roles = {r.value for r in Role}
        if unknown := sorted(set(settings.role_rate_limits) - roles):
            raise ValueError(
                f"CONVEYOR_ROLE_RATE_LIMITS names no such role: {', '.join(unknown)} (roles: {sorted(roles)})"
            )
        self.per_role = {role: tuple(pair) for role, pair in settings.role_rate_limits.items()}
        self.default = (settings.jobs_per_minute, settings.jobs_per_hour)
        self.max_queue_size = settings.max_queue_size

    def rate_for(self, role: str | None) -> tuple[int, int]:
        """(per minute, per hour) for a principal of `role`; 0: no limit."""
        return self.per_role.get(role or "", self.default)  # type: ignore[return-value]

    async def admit(self, principal: str, role: str | None, n: int, queues: Iterable[str]) -> Refusal | None:
        """Whether `principal` may create `n` jobs into `queues` now; when admitted, the jobs
        count against its rate at once (a creation that then fails still counted)."""
        if refusal := await self._queue_room(n, set(queues)):
            return refusal
        limits = [(seconds, limit) for seconds, limit in zip(WINDOWS, self.rate_for(role), strict=True) if limit]
        if not limits:
            return None
        wait = await self.store.take_rate(principal, n, limits, utc_now())
        if wait is None:
            return None
        per = ", ".join(f"{limit} per {'minute' if seconds == 60 else 'hour'}" for seconds, limit in limits)
        if math.isinf(wait):
            return Refusal("rate", f"{n} jobs at once is more than the job creation limit ({per})", None)
        return Refusal("rate", f"job creation limit reached ({per})", max(1, math.ceil(wait)))

    async def _queue_room(self, n: int, queues: set[str]) -> Refusal | None:
        if not self.max_queue_size or not queues:
            return None
        if n > self.max_queue_size:
            return Refusal("queue", f"{n} jobs at once is more than a queue holds ({self.max_queue_size})", None)
        pending = await self.store.count_grouped(
            JobFilter(statuses=(Status.PENDING,), queues=tuple(sorted(queues))), ("queue",)
        )
        for (queue,), count in sorted(pending.items()):
            if count + n > self.max_queue_size:
                return Refusal(
                    "queue",
                    f"queue {queue!r} is full ({count} pending jobs, at most {self.max_queue_size})",
                    QUEUE_FULL_RETRY_SECONDS,
                )
        return None
