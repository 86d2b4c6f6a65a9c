"""Analytics: roll-ups of one organisation's finished jobs over a time range, for job types
that report on them (the medication pack's analytics_roll_up), offered as the worker service
"analytics". Core, no HTTP; the figures are the store's (conveyor.store.analytics).

The organisation is an argument, not a default: a job type passes its own job's
(`ctx.owner.org_id`), so that a report never reaches across organisations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from conveyor.store.analytics import CounterSum, KindRollUp

__all__ = ["Analytics", "CounterSum", "KindRollUp"]


class Analytics:
    def __init__(self, store: Any) -> None:
        self.store = store

    async def counter_sums(
        self, org_id: str | None, start: datetime, end: datetime, names: Sequence[str]
    ) -> list[CounterSum]:
        """Job counters (Context.count) named, summed per name and job type over the jobs of
        `org_id` that finished in [start, end)."""
        _check_range(start, end)
        return await self.store.counter_sums(org_id, start, end, names)  # type: ignore[no-any-return]

    async def job_types(self, org_id: str | None, start: datetime, end: datetime) -> list[KindRollUp]:
        """Per job type, the jobs of `org_id` that finished in [start, end): outcomes, retries
        and run times (mean, p50, p95)."""
        _check_range(start, end)
        return await self.store.kind_roll_ups(org_id, start, end)  # type: ignore[no-any-return]


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("give the range in timezone-aware datetimes")
    if start >= end:
        raise ValueError("the range must start before it ends")
