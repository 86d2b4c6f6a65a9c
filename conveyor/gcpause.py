"""Pausing Python's cyclic garbage collector around a burst of allocations.

The collector runs each time some hundreds of container objects have been allocated, and a
full collection walks every object the process tracks. Bulk enqueue makes a few objects per
job, thousands at once, in a process that may track hundreds of thousands: left alone, the
collector spent more than half of bulk enqueue's time walking objects that live on.
Mercurial pauses it the same way around its bulk parsing (`util.nogc`).

A whole bulk enqueue is paused, its waits for the database included: paused only between
its waits, the collector still ran at each resumption over the jobs made so far, and every
10,000 jobs promoted enough of them to set off a full collection (a third of the call's
time). Other tasks of the event loop run meanwhile with the collector paused too, for the
length of the call; what they allocate is collected afterwards like the rest.

Pauses nest and overlap (two bulk enqueues on one event loop, or in two threads): the
collector comes back when the last one ends, and only if it was running when the first
began, so an application that disabled it keeps it disabled. What a pause allocated is
counted all the same, so the first collection after it sees those objects; none is missed,
and those already freed are never walked at all.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0  # pauses in progress, in any task or thread
_resume = False  # whether the collector was running when the first of them began


@contextmanager
def gc_paused() -> Iterator[None]:
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
