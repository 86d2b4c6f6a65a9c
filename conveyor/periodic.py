"""Chores run again and again (maintenance, the scheduler) until their task is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def run_periodically(pause: Callable[[], float], chore: Callable[[], Awaitable[None]]) -> None:
    """After each pause of `pause()` seconds, run `chore()`; until cancelled.

    A cancel lets the chore under way finish first: a statement cut off half-way would leave
    its pooled connection behind (SQLite's driver thread would still be running it). The chore
    handles its own errors; one that escapes ends the loop.
    """
    current: asyncio.Future[None] | None = None
    try:
        while True:
            await asyncio.sleep(pause())
            current = asyncio.ensure_future(chore())
            await asyncio.shield(current)
    finally:
        if current is not None and not current.done():
            await asyncio.wait([current])
