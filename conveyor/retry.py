"""Retry policy: how many times a job runs again and how long it waits in between (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from conveyor.model import Priority


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_retries` further attempts after the first, waiting `base * factor**(n-1)` before
    retry n, capped at `max_delay`, each delay spread by +/- `jitter` so that jobs failing
    together do not all come back in the same second."""

    max_retries: int
    base: timedelta
    factor: float = 2.0
    max_delay: timedelta = timedelta(hours=24)
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def delay(self, retry_number: int, rng: random.Random | None = None) -> timedelta:
        """The wait before retry `retry_number` (1 for the first retry)."""
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        nominal = min(
            self.base.total_seconds() * self.factor ** (retry_number - 1),
            self.max_delay.total_seconds(),
        )
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return timedelta(seconds=nominal * (1 + spread))


# Seed 001's table: critical 5 retries from 60 s, high 3 from 300 s, medium 3 from 600 s,
# low 2 from 1800 s.
DEFAULT_POLICIES: dict[Priority, RetryPolicy] = {
    Priority.CRITICAL: RetryPolicy(max_retries=5, base=timedelta(seconds=60)),
    Priority.HIGH: RetryPolicy(max_retries=3, base=timedelta(seconds=300)),
    Priority.MEDIUM: RetryPolicy(max_retries=3, base=timedelta(seconds=600)),
    Priority.LOW: RetryPolicy(max_retries=2, base=timedelta(seconds=1800)),
}


def policy_for(priority: int, overrides: dict[Priority, RetryPolicy] | None = None) -> RetryPolicy:
    cls = Priority.of(priority)
    if overrides and cls in overrides:
        return overrides[cls]
    return DEFAULT_POLICIES[cls]
