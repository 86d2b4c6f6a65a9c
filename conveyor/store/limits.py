"""Rate windows: counting jobs created per principal across every process, atomically.

A mixin of SqlStore. Each limit is a sliding window estimated from two fixed ones (the
current and the previous, weighted by how much of the previous still overlaps the sliding
window), the way Cloudflare and nginx-style limiters do it: two counters per principal and
window length, no log of timestamps. The count is taken and checked in one transaction that
holds the current window's row: concurrent requests of one principal take turns on it, and
a refused request rolls its own count back, so it does not use up the quota.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import rate_windows


class _Refused(Exception):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after


def window_start(now: datetime, seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def wait_to_fit(n: int, limit: int, current: int, previous: int, elapsed: float, seconds: int) -> float:
    """Seconds until `n` more fit under `limit`, the current window holding `current` (without
    the n), the previous `previous`, `elapsed` seconds into the current window. inf: never."""
    if n > limit:
        return math.inf
    # Within this window the estimate falls as the previous window slides out.
    if previous > 0 and limit - current - n >= 0:
        fraction = 1 - (limit - current - n) / previous
        if fraction * seconds >= elapsed:
            return fraction * seconds - elapsed
    # In the next window, this one is the previous: its weight falls from 1.
    rest = seconds - elapsed
    if current == 0:
        return rest
    fraction = max(0.0, 1 - (limit - n) / current)
    return rest + fraction * seconds


class RateWindows(StoreHooks):
    """Take counts in rate windows (mixed into SqlStore)."""

    async def take_rate(self, principal: str, n: int, limits: Sequence[tuple[int, int]], now: datetime) -> float | None:
        """Count `n` jobs for `principal` in each (window seconds, limit) of `limits` unless
        one would then estimate more than its limit. None: counted; else nothing is counted
        and the answer is the seconds until they would fit (inf: more than a limit at once)."""
        try:
            async with self._write() as conn:
                for seconds, limit in limits:
                    await self._take(conn, principal, n, seconds, limit, now)
        except _Refused as refused:
            return refused.retry_after
        return None

    async def _take(
        self, conn: AsyncConnection, principal: str, n: int, seconds: int, limit: int, now: datetime
    ) -> None:
        start = window_start(now, seconds)
        c = rate_windows.c
        upsert = self._upsert(rate_windows).values(principal=principal, seconds=seconds, window_start=start, count=n)
        upsert = upsert.on_conflict_do_update(
            index_elements=[c.principal, c.seconds, c.window_start], set_={"count": c.count + n}
        ).returning(c.count)
        counted = (await conn.execute(upsert)).scalar_one()
        previous_start = start - timedelta(seconds=seconds)
        previous = (
            await conn.execute(
                sa.select(c.count).where(
                    c.principal == principal, c.seconds == seconds, c.window_start == previous_start
                )
            )
        ).scalar_one_or_none() or 0
        elapsed = (now - start).total_seconds()
        estimate = previous * (1 - elapsed / seconds) + counted
        if estimate > limit + 1e-9:  # (a float's last bit must not refuse an exact fit)
            raise _Refused(wait_to_fit(n, limit, counted - n, previous, elapsed, seconds))

    async def prune_rate_windows(self, before: datetime) -> int:
        """Forget windows that started before `before` (older than any limit looks back)."""
        async with self._write() as conn:
            result = await conn.execute(sa.delete(rate_windows).where(rate_windows.c.window_start < before))
        return result.rowcount or 0
