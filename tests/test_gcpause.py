"""The collector's pause around bulk enqueue: overlapping pauses, and the collector left as
found (also when the enqueue fails)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, InvalidJobData, JobRequest
from conveyor.gcpause import gc_paused


@pytest.fixture
def collector_running() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_overlapping_pauses_resume_the_collector_when_the_last_ends(collector_running: None) -> None:
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # not nested: the first to begin ends first
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_disabled_by_the_application_stays_disabled(collector_running: None) -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


async def test_two_bulk_enqueues_at_once_leave_the_collector_running(app: Conveyor, collector_running: None) -> None:
    requests = [JobRequest("t.echo", {"value": i}) for i in range(1_500)]
    bad = [*requests, JobRequest("t.report", {"name": ""})]
    results = await asyncio.gather(
        app.engine.enqueue_many(requests), app.engine.enqueue_many(bad), return_exceptions=True
    )
    assert len(results[0]) == 1_500
    assert isinstance(results[1], InvalidJobData)
    assert gc.isenabled()
    assert await app.engine.counts() == {"pending": 1_500}
