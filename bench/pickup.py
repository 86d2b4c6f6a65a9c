"""The pickup-latency probe: a job body, whichever library runs it, notes when it started.

Each job appends one line `PID SECONDS` to the file named by $BENCH_PICKUP_FILE: the worker
process that ran it, and the start of the job body minus the time taken just before the job
was enqueued (both time.time() on this one machine). The PID tells the harness when every
worker process is up. Lines are short single writes in append mode, so two worker processes
writing at once do not interleave.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

FILE_ENV = "BENCH_PICKUP_FILE"


def record(t_enqueued: float) -> None:
    """Called first thing in the job body."""
    started = time.time()
    with open(os.environ[FILE_ENV], "a") as f:
        f.write(f"{os.getpid()} {started - t_enqueued}\n")


def clear(path: Path) -> None:
    path.unlink(missing_ok=True)


def read(path: Path) -> list[tuple[int, float]]:
    """(worker pid, seconds from enqueue to start) of every job run so far, in order."""
    if not path.exists():
        return []
    with path.open() as f:
        # A line still being written has no newline yet: leave it for the next read.
        return [(int(pid), float(seconds)) for pid, seconds in (line.split() for line in f if line.endswith("\n"))]
