"""Pausing Python's cyclic garbage collector around a burst of allocations.

The collector runs each time some hundreds of container objects have been allocated, and a
full collection walks every object the process tracks. Bulk enqueue makes a few objects per
job, thousands at once, in a process that may track hundreds of thousands: left alone, the
collector spent more than half of bulk enqueue's time walking objects that live on.
Mercurial pauses it the same way around its bulk parsing (`util.nogc`).

Only synchronous steps are paused (nothing else runs on the event loop meanwhile), and the
collector is left as it was found: an application that disabled it keeps it disabled. What
the step allocated is counted all the same, so the next collection after it sees those
objects; none of them is missed, they are examined once instead of many times.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
