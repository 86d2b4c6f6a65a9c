"""Periodic chores (maintenance, the scheduler) are never cut off half-way by a shutdown."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.periodic import run_periodically


async def test_a_cancel_lets_the_chore_under_way_finish() -> None:
    started, finished = asyncio.Event(), []

    async def chore() -> None:
        started.set()
        await asyncio.sleep(0.2)  # a statement in flight
        finished.append(True)

    loop_task = asyncio.create_task(run_periodically(lambda: 0.01, chore))
    await started.wait()
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop_task
    assert finished == [True]  # ended after the chore, not in the middle of it


async def test_a_cancel_during_the_pause_ends_at_once() -> None:
    ran = []

    async def chore() -> None:
        ran.append(True)

    loop_task = asyncio.create_task(run_periodically(lambda: 10, chore))
    await asyncio.sleep(0.05)
    loop_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(loop_task, 1)
    assert ran == []
