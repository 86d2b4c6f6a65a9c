"""The collector's pause around bulk enqueue: overlapping pauses, and the collector left as
found (also when the enqueue fails). Start-up objects frozen out of its walks, in the worker
command too."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from conftest import start_worker_process, stop_worker_process

from conveyor import Conveyor, InvalidJobData, JobRequest, Status
from conveyor.gcpause import freeze_startup, gc_paused


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


class _Node:
    def __init__(self) -> None:
        self.peer: _Node | None = None


@pytest.fixture
def unfrozen_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # this test process goes on collecting as before


def test_freeze_startup_collects_start_up_garbage_and_freezes_what_lives(unfrozen_after: None) -> None:
    garbage, kept = _Node(), _Node()
    garbage.peer, kept.peer = garbage, kept  # two cycles: only the collector frees them
    garbage_ref = weakref.ref(garbage)
    del garbage
    freeze_startup()
    assert garbage_ref() is None  # collected first, not frozen with the rest
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # out of every generation the collector walks


async def test_the_worker_command_runs_jobs_with_its_start_up_objects_frozen(app: Conveyor, database_url: str) -> None:
    job = await app.engine.enqueue("t.collector")
    process = start_worker_process(database_url)
    try:
        done = await app.engine.wait(job.id, timeout=30)
    finally:
        stopped = await stop_worker_process(process)
    assert stopped == 0
    assert done.status is Status.COMPLETED
    # Its modules, settings and job types: tens of thousands of objects no full collection walks.
    assert done.result["frozen"] > 10_000
