"""The workload, written once against a Subject so that every library runs exactly the same one.

A Subject is one job library on one database. Each phase opens a session on a freshly made
database, so no phase sees another's jobs; worker processes are started per phase, in their
own process groups, and always stopped when the phase ends, whatever ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from bench import pickup

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2  # worker processes, for every library
# One bulk call of 10,000 jobs takes ~0.1 s and the slowest of a dozen may be 0.85 of their
# median: the figure is the median of a few calls, each on a new database, for every subject
# (pgqueuer's ranged 33,000-58,000 jobs/s from run to run).
BULK_CALLS = 5
# A drain of 10,000 no-op jobs lasts ~0.5 s, and the two workers start a few hundred ms apart on
# a loaded machine: one drain ranged 12,900-23,900 jobs/s from run to run. The figure is the
# median of a few drains (each on a new database), for every subject.
DRAINS = 3
PICKUP_JOBS = 200
PICKUP_GAP_S = 0.020
POLL_S = 0.025  # between completion polls, as in the peers harness
IDLE_S = 1.0  # after the warm-up, so that the workers are idle when the latency jobs come
WARMUP_LIMIT_S = 60.0  # worker start-up included
PICKUP_LIMIT_S = 30.0  # after the last latency job is enqueued
STOP_GRACE_S = 15.0  # a worker still running this long after SIGTERM is killed

log = logging.getLogger("bench")
T = TypeVar("T")


class Stalled(Exception):
    """Something the benchmark waits for did not happen in time."""


class Session(Protocol):
    """A connected client of one subject, on a database that is empty when the session opens."""

    async def enqueue_noop(self) -> None:
        """One no-op job, in one call."""

    async def enqueue_noops(self, n: int) -> None:
        """n no-op jobs, in the library's one bulk call."""

    async def enqueue_pickup(self, t_enqueued: float) -> None:
        """One job whose body calls bench.pickup.record(t_enqueued)."""

    async def completed(self) -> int:
        """How many jobs the library reports finished successfully."""


class Subject(Protocol):
    name: str
    workers: str  # how its worker processes run, for the report

    def session(self) -> AbstractAsyncContextManager[Session]:
        """A session on a new, empty database, dropped when the session closes."""

    def worker_command(self) -> tuple[list[str], dict[str, str]]:
        """The argv of one worker process, and the environment it needs beyond ours."""


@dataclass(frozen=True)
class Figures:
    enqueue_per_s: float
    bulk_enqueue_per_s: float
    drain_per_s: float
    pickup_ms: dict[str, float]  # p50, p95, p99
    worker_rss_mb: float  # the largest of the worker processes' peak RSS during the drains


async def measure_all(
    subjects: Sequence[Subject], n: int, pickup_file: Path, *, phase_limit: float
) -> dict[str, Figures | str]:
    """Every subject's figures, or why it failed (it then drops out; the others go on).

    Phase by phase, and the repeated phases round by round with every subject in turn (each
    round starting one subject later): the machine's speed drifts by a fifth over minutes, and
    a subject measured in a slow spell while another had a quick one skewed their ratio. Each
    phase of a subject has `phase_limit` seconds."""
    failed: dict[str, str] = {}

    async def attempt(subject: Subject, phase: str, run: Callable[[], Awaitable[T]]) -> T | None:
        if subject.name in failed:
            return None
        budget = asyncio.timeout(phase_limit)
        try:
            async with budget:
                return await run()
        except Exception as exc:  # noqa: BLE001 - reported; the other subjects go on
            why = f"not finished after {phase_limit:.0f} s" if budget.expired() else f"{type(exc).__name__}: {exc}"
            failed[subject.name] = f"{phase}: {why}"
            log.error("%s failed in its %s: %s", subject.name, phase, why)
            return None

    def rounds(count: int) -> Iterator[Subject]:
        for r in range(count):
            yield from (subjects[(r + i) % len(subjects)] for i in range(len(subjects)))

    enqueues: dict[str, float] = {}
    for subject in subjects:
        if (rate := await attempt(subject, "enqueue", lambda s=subject: enqueue_rate(s, n // 10))) is not None:
            enqueues[subject.name] = rate
            log.info("%s: enqueue %.0f jobs/s (%d jobs, one call each)", subject.name, rate, n // 10)
    bulks: dict[str, list[float]] = {s.name: [] for s in subjects}
    for subject in rounds(BULK_CALLS):
        if (rate := await attempt(subject, "bulk enqueue", lambda s=subject: bulk_enqueue_rate(s, n))) is not None:
            bulks[subject.name].append(rate)
            log.info("%s: bulk enqueue %.0f jobs/s (%d jobs, one call)", subject.name, rate, n)
    drains: dict[str, list[tuple[float, float]]] = {s.name: [] for s in subjects}
    for subject in rounds(DRAINS):
        if (drained := await attempt(subject, "drain", lambda s=subject: drain(s, n, pickup_file))) is not None:
            drains[subject.name].append(drained)
            log.info("%s: drain %.0f jobs/s, worker peak RSS %.1f MB", subject.name, *drained)
    pickups: dict[str, dict[str, float]] = {}
    for subject in subjects:
        latencies = await attempt(subject, "pickup", lambda s=subject: pickup_latencies(s, pickup_file))
        if latencies is not None:
            pickups[subject.name] = percentiles(latencies)
            log.info("%s: pickup p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", subject.name, *pickups[subject.name].values())
    report: dict[str, Figures | str] = {}
    for subject in subjects:
        name = subject.name
        if name in failed:
            report[name] = failed[name]
            continue
        report[name] = Figures(
            enqueue_per_s=enqueues[name],
            bulk_enqueue_per_s=statistics.median(bulks[name]),
            drain_per_s=statistics.median(rate for rate, _rss in drains[name]),
            pickup_ms=pickups[name],
            worker_rss_mb=max(rss for _rate, rss in drains[name]),
        )
    return report


# --- phases ----------------------------------------------------------------------------------


async def enqueue_rate(subject: Subject, n: int) -> float:
    """Jobs/s enqueued one call at a time from this one process."""
    async with subject.session() as session:
        started = time.perf_counter()
        for _ in range(n):
            await session.enqueue_noop()
        return n / (time.perf_counter() - started)


async def bulk_enqueue_rate(subject: Subject, n: int) -> float:
    async with subject.session() as session:
        started = time.perf_counter()
        await session.enqueue_noops(n)
        return n / (time.perf_counter() - started)


async def drain(subject: Subject, n: int, pickup_file: Path) -> tuple[float, float]:
    """(jobs/s, worker peak RSS in MB) for n no-op jobs drained by WORKERS worker processes.

    Done as the peers harness does it: the jobs are enqueued first, then the workers are
    started, and the drain is timed from the last poll that saw no job completed to the first
    that saw all completed. So worker start-up is left out, the same way for every library,
    without needing a readiness signal that only some libraries give.
    """
    async with subject.session() as session:
        await session.enqueue_noops(n)
        with Workers(subject, pickup_file) as workers:
            seconds = await time_drain(session, n, workers, limit=30 + n / 50)
            return n / seconds, workers.peak_rss_mb()


async def time_drain(session: Session, n: int, workers: Workers, *, limit: float) -> float:
    deadline = time.monotonic() + limit
    last_idle = time.monotonic()
    done = 0
    while (now := time.monotonic()) < deadline:
        workers.check()
        done = await session.completed()
        if done == 0:
            last_idle = now
        elif done >= n:
            return now - last_idle
        await asyncio.sleep(POLL_S)
    raise Stalled(f"drain not finished after {limit:.0f} s: {done:,} of {n:,} jobs completed")


async def pickup_latencies(subject: Subject, pickup_file: Path) -> list[float]:
    """Milliseconds from just before enqueue to the job body's start, for PICKUP_JOBS jobs
    enqueued one at a time PICKUP_GAP_S apart into idle workers."""
    pickup.clear(pickup_file)
    async with subject.session() as session:
        with Workers(subject, pickup_file) as workers:
            warm_up_jobs = await warm_up(session, workers, pickup_file)
            await asyncio.sleep(IDLE_S)
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(PICKUP_JOBS):
                await asyncio.sleep(start + i * PICKUP_GAP_S - loop.time())
                await session.enqueue_pickup(time.time())
            deadline = time.monotonic() + PICKUP_LIMIT_S
            within = f"within {PICKUP_LIMIT_S:.0f} s of the last latency job's enqueue"
            await wait_for_records(pickup_file, warm_up_jobs + PICKUP_JOBS, workers, deadline, within)
    return [seconds * 1000 for _pid, seconds in pickup.read(pickup_file)[warm_up_jobs:]]


async def warm_up(session: Session, workers: Workers, pickup_file: Path) -> int:
    """Run latency jobs one at a time until every worker process has run one (so all are up),
    each finished before the next is sent (so none is still running when measuring starts).
    Returns how many ran."""
    deadline = time.monotonic() + WARMUP_LIMIT_S
    sent = 0
    while len(pids := {pid for pid, _seconds in pickup.read(pickup_file)}) < WORKERS:
        if time.monotonic() >= deadline:
            raise Stalled(f"warm-up: {len(pids)} of {WORKERS} worker processes ran a job in {WARMUP_LIMIT_S:.0f} s")
        await session.enqueue_pickup(time.time())
        sent += 1
        await wait_for_records(pickup_file, sent, workers, deadline, f"in the {WARMUP_LIMIT_S:.0f} s warm-up")
    return sent


async def wait_for_records(path: Path, count: int, workers: Workers, deadline: float, what: str) -> None:
    """Until `count` jobs have written their pickup record (bench.pickup)."""
    while (ran := len(pickup.read(path))) < count:
        workers.check()
        if time.monotonic() >= deadline:
            raise Stalled(f"only {ran} of {count} jobs ran {what}")
        await asyncio.sleep(POLL_S)


def percentiles(values: list[float]) -> dict[str, float]:
    # "inclusive" interpolates between the closest ranks, as the peers harness's percentile() does.
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98]}


# --- worker processes ------------------------------------------------------------------------


class Workers:
    """WORKERS worker processes of a subject, each in its own process group (so a signal
    reaches anything it started), with their output on our stderr. Stopped on leaving the
    `with`, also on error and Ctrl-C: SIGTERM, then SIGKILL after STOP_GRACE_S."""

    def __init__(self, subject: Subject, pickup_file: Path) -> None:
        argv, extra_env = subject.worker_command()
        self._argv = argv
        self._env = {
            **os.environ,
            # so that `bench.…` job modules import in the worker, whatever its working directory
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
            pickup.FILE_ENV: str(pickup_file),
            **extra_env,
        }
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        try:
            for _ in range(WORKERS):
                self._procs.append(
                    subprocess.Popen(
                        self._argv,
                        cwd=REPO,
                        env=self._env,
                        stdin=subprocess.DEVNULL,
                        stdout=sys.stderr,  # stdout is the report's
                        stderr=sys.stderr,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check(self) -> None:
        """Raise if a worker process has exited (its output, above on stderr, says why)."""
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker process {proc.pid} exited with code {proc.returncode}")

    def peak_rss_mb(self) -> float:
        """The largest peak resident set size among the worker processes, from the kernel's
        own high-water mark (VmHWM), so no peak falls between two samples."""
        return max(_vm_hwm_kb(proc.pid) for proc in self._procs) / 1024

    def stop(self) -> None:
        for proc in self._procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            for proc in self._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(deadline - time.monotonic(), 0))
        finally:
            for proc in self._procs:
                if proc.poll() is None:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()


def stop_process(proc: subprocess.Popen[bytes]) -> int:
    """Stop one process started with start_new_session as Workers stops theirs (SIGTERM to its
    group, SIGKILL after STOP_GRACE_S); its exit code."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # started with start_new_session: its group id is its pid


def _vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")
