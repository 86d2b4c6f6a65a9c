"""Worker: claims jobs from its queues and runs them, one per process (with many slots).

Inside, a few loops share one event loop:
- the producer claims no more jobs than there are free slots, waking on a notification
  (an insert into one of its queues) or, failing that, a poll tick;
- each job runs under its runner (loop, thread, process), watched for cancel and timeout;
- the completer writes outcomes, progress and logs in batches;
- the heartbeat extends the leases of running jobs and learns of cancels and lost leases;
- maintenance stages due scheduled jobs and rescues jobs whose worker died; beside it the
  scheduler (when given) fires due schedules if this process leads.
SIGTERM drains: no new claims; running jobs get `shutdown_grace` to finish, then are
released back to pending (their attempt not counted). Nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from conveyor.context import DEFAULT_MAX_ITEM_ERRORS, DEFAULT_MAX_LOG_ENTRIES, Context
from conveyor.crypto import SealError
from conveyor.engine import Engine
from conveyor.engine import lifecycle as lc
from conveyor.errors import Cancelled, InvalidJobData, TimedOut, UnknownJobType
from conveyor.jobtypes import Definition, jsonable
from conveyor.model import FINISHED, Job, Outcome, OutcomeKind, Status, utc_now
from conveyor.periodic import run_periodically
from conveyor.store.control import WorkerRecord
from conveyor.store.outage import RetryPauses, log_failure
from conveyor.store.rows import OUTCOME_STATUS
from conveyor.worker.completer import Completer
from conveyor.worker.runners import ProcessPool, Run, run_in_thread, run_on_loop

log = logging.getLogger("conveyor.worker")

# A worker that has not refreshed its registry row for this long is gone (killed, machine lost).
FORGET_WORKERS_AFTER = timedelta(hours=1)
# How often maintenance forgets gone workers and folds the statistics roll-ups.
HOUSEKEEPING_INTERVAL = timedelta(seconds=5)


class Service(Protocol):
    """A loop run beside maintenance until cancelled (the scheduler)."""

    async def run(self) -> None: ...


class Released(BaseException):
    """The worker is shutting down: the job goes back to pending for another worker."""


@dataclass
class Running:
    job: Job
    ctx: Context
    claimed_at: float
    run: Run | None = None
    lease_lost: bool = False
    task: asyncio.Task[None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        engine: Engine,
        *,
        queues: tuple[str, ...] | list[str] = ("default",),
        concurrency: int = 10,
        worker_id: str | None = None,
        lease: timedelta = timedelta(seconds=30),
        heartbeat_interval: timedelta | None = None,
        poll_interval: timedelta | None = None,
        maintenance_interval: timedelta = timedelta(seconds=1),
        cancel_grace: timedelta = timedelta(seconds=10),
        shutdown_grace: timedelta = timedelta(seconds=30),
        progress_interval: timedelta = timedelta(seconds=1),
        max_item_errors: int = DEFAULT_MAX_ITEM_ERRORS,
        max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES,
        run_maintenance: bool = True,
        process_pool_size: int | None = None,
        on_finished: Callable[[Job, Status, float], None] | None = None,
        presence_interval: timedelta = timedelta(seconds=5),
        scheduler: Service | None = None,
        data_dir: Path | None = None,
        data_roots: Sequence[Path] = (),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not queues:
            raise ValueError("a worker needs at least one queue")
        self.engine = engine
        self.store = engine.store
        self.queues = tuple(queues)
        self.concurrency = concurrency
        # One running worker's own: the store's record of which jobs it runs goes by this id (a
        # second worker under the same id would see the first's jobs as claims it never heard
        # of, and hand them back).
        self.worker_id = worker_id or default_worker_id()
        self.lease = lease
        # A third of the lease: two beats may be lost before another worker rescues our jobs.
        # At most a second, so that cancels reach jobs quickly where there is no NOTIFY.
        self.heartbeat_interval = heartbeat_interval or min(lease / 3, timedelta(seconds=1))
        self._poll_interval = poll_interval
        self.maintenance_interval = maintenance_interval
        self.cancel_grace = cancel_grace
        self.shutdown_grace = shutdown_grace
        self.progress_interval = progress_interval
        self.max_item_errors = max_item_errors
        self.max_log_entries = max_log_entries
        self.run_maintenance = run_maintenance
        self.data_dir = data_dir
        self.data_roots = tuple(data_roots)
        # Told of every attempt that ends the job (status and seconds run), e.g. for metrics.
        self.on_finished = on_finished
        self.presence_interval = presence_interval
        self.scheduler = scheduler
        self._started_at = utc_now()

        self._running: dict[UUID, Running] = {}
        # Claims started so far, and whether one is under way (see _release_orphans).
        self._claims_begun = 0
        self._claiming = False
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._completer = Completer(self.store, on_flushed=lambda _n: self._slot_freed.set())
        # Process-bound jobs share this pool; children start only when such a job comes.
        self._process_pool = ProcessPool(process_pool_size or min(concurrency, os.cpu_count() or 1))

    # --- public --------------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False) -> None:
        """Run until stop() (or SIGTERM/SIGINT with handle_signals), then drain."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        unsubscribe = [
            self.engine.notifier.subscribe("insert", self._on_insert),
            self.engine.notifier.subscribe("cancel", self._on_cancel),
        ]
        await self.engine.start(("insert", "cancel"))
        # Known once the store listens: with notifications from other processes the poll is
        # only a safety net.
        across = self.store.notifies_across_processes
        self.poll_interval = self._poll_interval or timedelta(seconds=2 if across else 0.05)
        log.info("worker %s: queues=%s concurrency=%d", self.worker_id, ",".join(self.queues), self.concurrency)
        helpers = [
            asyncio.create_task(self._completer.run(), name="completer"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._progress_loop(), name="progress"),
            asyncio.create_task(self._presence_loop(), name="presence"),
        ]
        if self.run_maintenance:
            helpers.append(asyncio.create_task(self._maintenance_loop(), name="maintenance"))
            if self.scheduler is not None:
                helpers.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        try:
            await self._produce()
            await self._drain()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for undo in unsubscribe:
                undo()
            self._process_pool.close()
            with contextlib.suppress(Exception):
                await self.store.forget_workers([self.worker_id])
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Stop claiming and drain (idempotent; safe from a signal handler)."""
        if not self._stopping.is_set():
            log.info("worker %s: draining %d running jobs", self.worker_id, len(self._running))
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()

    @property
    def running_count(self) -> int:
        return len(self._running)

    # --- producer ------------------------------------------------------------------------

    def _on_insert(self, queue: str) -> None:
        if queue == "*" or queue in self.queues:
            self._wake.set()

    async def _produce(self) -> None:
        pauses = RetryPauses(0.05)
        while not self._stopping.is_set():
            free = self._free_slots()
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()  # before the claim: a notice arriving during it is kept
            try:
                jobs = await self._claim(free)
                pauses.reset()
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                pause = pauses.next()
                log_failure(log, exc, "claiming jobs failed; retrying in %.2fs", pause)
                await self._sleep_unless_stopping(pause)
                continue
            if len(jobs) < free:
                await self._wait_for_work()

    async def _claim(self, limit: int) -> list[Job]:
        """Claim up to `limit` jobs and start them. Until they are started, the store records
        jobs as this worker's that it does not hold yet: _release_orphans waits for no claim
        to be under way."""
        self._claims_begun += 1
        self._claiming = True
        try:
            jobs = await self.store.claim_jobs(self.queues, limit, self.worker_id, self.lease)
            for job in jobs:
                self._start(job)
            return jobs
        finally:
            self._claiming = False

    def _free_slots(self) -> int:
        """Slots for new claims. A job holds its slot until its outcome is written, with one
        batch of slack: when writes fall behind, claiming waits, instead of the worker
        holding ever more jobs it has run but not recorded (their leases, and its memory)."""
        unwritten_beyond_slack = max(self._completer.pending - self.concurrency, 0)
        return self.concurrency - len(self._running) - unwritten_beyond_slack

    async def _wait_for_work(self) -> None:
        # asyncio.timeout, not wait_for: no task wrapped around the wait, so a wake-up reaches
        # the next claim a few loop iterations sooner (pickup latency).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval.total_seconds()):
                await self._wake.wait()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        # Not ended by a wake-up: a claim failing for another reason than an outage (a bug)
        # would be tried again at every job enqueued.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- one job ---------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        ctx = Context(
            job,
            max_item_errors=self.max_item_errors,
            max_log_entries=self.max_log_entries,
            data_dir=self.data_dir,
            data_roots=self.data_roots,
            services=self.engine.services,
        )
        running = Running(job, ctx, claimed_at=time.monotonic())
        self._running[job.id] = running
        if job.cancel_requested:
            ctx.request_stop(Cancelled)
        running.task = asyncio.create_task(self._execute(running))

    async def _execute(self, running: Running) -> None:
        job, ctx = running.job, running.ctx
        try:
            outcome = await self._attempt(running)
        except Exception as exc:
            if self.engine.sealing.sensitive(job.kind):
                # The process's own log is not sealed: the error text (which may quote the job's
                # data) goes only into the job's error and log, sealed; here its type alone.
                log.error("job %s: worker error (%s)", job.id, type(exc).__name__)
            else:
                log.exception("job %s: worker error", job.id)
            outcome = lc.outcome_of_error(job, self.worker_id, exc, now=utc_now(), policy=self._policy(job))
        finally:
            for timer in running.timers:
                timer.cancel()
            self._running.pop(job.id, None)
            self._slot_freed.set()
        if outcome is not None:
            _log_attempt_end(ctx, job, outcome)
            sealing = self.engine.sealing
            if ctx.counters and OUTCOME_STATUS[outcome.kind] in FINISHED:
                outcome = replace(outcome, counters=tuple(ctx.counters.items()))
            self._completer.add(
                sealing.seal_outcome(job, outcome),
                sealing.seal_progress(job, ctx.take_progress()),
                sealing.seal_logs(job, ctx.take_logs()),
            )
            status = OUTCOME_STATUS[outcome.kind]
            if self.on_finished is not None and status in FINISHED:
                try:
                    self.on_finished(job, status, time.monotonic() - running.claimed_at)
                except Exception:
                    log.exception("on_finished hook failed")

    async def _attempt(self, running: Running) -> Outcome | None:
        job, ctx = running.job, running.ctx
        try:
            definition = self.engine.registry.get(job.kind)
        except UnknownJobType as exc:
            # Another worker, or this one after a deploy, may know it: retry with the backoff.
            return lc.outcome_of_error(job, self.worker_id, exc, now=utc_now())
        try:
            data = definition.parse(self.engine.sealing.open_data(job))
        except (InvalidJobData, SealError) as exc:  # stored input no longer fits, or does not open here
            error = lc.error_record(exc, retryable=False)
            return Outcome(job.id, job.attempt, self.worker_id, OutcomeKind.FAILED, error=error)
        self._expect(definition, ctx, data)
        if job.timeout is not None:
            loop = asyncio.get_running_loop()
            running.timers.append(loop.call_later(job.timeout.total_seconds(), self._request_stop, running, TimedOut))
        try:
            ctx.checkpoint()
            running.run = self._runner(definition.runs_in)(definition, ctx, data)
            result = jsonable(await running.run.future)
            return lc.outcome_of_success(job, self.worker_id, result)
        except (Cancelled, TimedOut, Released):
            return self._outcome_of_stop(running)
        except asyncio.CancelledError:
            if running.ctx.stop_reason is None and not running.lease_lost:
                raise  # not our hard stop: cancellation from outside must go through
            return self._outcome_of_stop(running)
        except Exception as exc:  # noqa: BLE001 - the job's own failure
            return lc.outcome_of_error(job, self.worker_id, exc, now=utc_now(), policy=self._policy(job))

    @staticmethod
    def _expect(definition: Definition, ctx: Context, data: Any) -> None:
        """Seed the estimated completion from the job type's estimate, so that a job shows one
        before its first progress report (written with the next progress flush)."""
        try:
            estimate = definition.implementation.estimate_time(data)
        except Exception:  # an estimate is advice: a broken one must not fail the job
            log.warning("job type %s: estimate_time failed", definition.kind, exc_info=True)
            return
        if estimate is not None:
            ctx.expect(estimate)

    def _runner(self, runs_in: str) -> Any:
        if runs_in == "process":
            return self._process_pool.run
        return run_in_thread if runs_in == "thread" else run_on_loop

    def _outcome_of_stop(self, running: Running) -> Outcome | None:
        """The attempt ended because the worker asked it to (at a checkpoint, or by force)."""
        reason = running.ctx.stop_reason
        job = running.job
        if running.lease_lost:
            return None  # the job belongs to another worker now: write nothing
        if reason is Released:
            return Outcome(job.id, job.attempt, self.worker_id, OutcomeKind.RELEASED)
        if reason in (Cancelled, TimedOut):
            return lc.outcome_of_stop(job, self.worker_id, reason)
        return None

    def _policy(self, job: Job) -> Any:
        if job.kind in self.engine.registry:
            return self.engine.policy(self.engine.registry.get(job.kind), job.priority)
        return None

    def _request_stop(self, running: Running, reason: type[BaseException], grace: timedelta | None = None) -> None:
        """Ask the job to stop at its next checkpoint; kill it if it has not within the grace."""
        if running.ctx.stop_reason is not None and reason is not Released:
            return
        running.ctx.request_stop(reason)
        if running.run is not None:
            running.run.forward_stop(reason)
        loop = asyncio.get_running_loop()
        wait = (self.cancel_grace if grace is None else grace).total_seconds()
        running.timers.append(loop.call_later(wait, self._kill, running))

    def _kill(self, running: Running) -> None:
        if running.job.id in self._running and running.run is not None:
            log.warning("job %s: stopping it hard (%s)", running.job.id, running.ctx.stop_reason)
            running.run.kill()

    def _on_cancel(self, job_id: str) -> None:
        # "*" (a reconnected listener: cancels may have been missed) names no job; the next
        # heartbeat reads every running job's cancel flag anyway.
        try:
            running = self._running.get(UUID(job_id))
        except ValueError:
            return
        if running is not None:
            self._request_stop(running, Cancelled)

    # --- helpers' loops ------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.heartbeat_interval.total_seconds()
        orphans_checked = time.monotonic()
        while True:
            # jitter between heartbeats, not a secret (bandit B311)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))  # nosec B311
            # Often enough to hand orphans back well before their lease runs out.
            if time.monotonic() - orphans_checked >= self.lease.total_seconds() / 3:
                orphans_checked = time.monotonic()
                await self._release_orphans()
            # Jobs whose outcome waits to be written are still running in the store: their
            # leases need extending too, or a slow write would get them rescued and run again.
            named = [*self._running, *self._completer.unwritten()]
            if not named:
                continue
            started = time.monotonic()
            try:
                alive = await self.store.heartbeat(self.worker_id, named, self.lease)
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                log_failure(log, exc, "heartbeat failed")
                continue
            # Jobs claimed after the beat began are not in its answer yet: judge them next time.
            judged = {i: r for i, r in self._running.items() if r.claimed_at <= started}
            skipped = [i for i in judged if i not in alive]
            held = await self._attempts_held(skipped) if skipped else {}
            for job_id, running in judged.items():
                if job_id in alive:
                    attempt, cancel_requested = alive[job_id]
                elif job_id in held:
                    attempt, cancel_requested = held[job_id], False
                else:
                    attempt, cancel_requested = None, False
                if attempt != running.job.attempt:
                    self._lose_lease(running)
                elif cancel_requested:
                    self._request_stop(running, Cancelled)

    async def _release_orphans(self) -> None:
        """Hand back the jobs the store records as running on this worker that it does not
        hold: a claim that committed but whose answer never came (its connection cut in
        between). Released (pending, the attempt not counted: they never ran) rather than left
        to the lease rescue, which counts an attempt, and fails a job without retries that
        never ran. Judged only when no claim was under way while the store was read: one
        answering meanwhile would make its jobs look unheld."""
        if self._claiming:
            return
        begun = self._claims_begun
        try:
            recorded = await self.store.running_on(self.worker_id)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "looking for claims this worker never heard of failed")
            return
        if self._claiming or self._claims_begun != begun:
            return
        held = {*self._running, *self._completer.unwritten()}
        orphans = {job_id: attempt for job_id, attempt in recorded.items() if job_id not in held}
        if orphans:
            log.warning("handing back %d jobs claimed for this worker whose claim it never heard of", len(orphans))
        for job_id, attempt in orphans.items():
            # The outcome's guard (same worker, same attempt, still running) leaves a job alone
            # that has moved on meanwhile.
            self._completer.add(Outcome(job_id, attempt, self.worker_id, OutcomeKind.RELEASED))

    async def _attempts_held(self, job_ids: list[UUID]) -> dict[UUID, int]:
        """Jobs the beat skipped because another statement held them: still ours, and at
        which attempt (a plain read, which waits on no lock)."""
        try:
            return await self.store.attempts_held(job_ids, self.worker_id)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "checking skipped leases failed")
            return {i: self._running[i].job.attempt for i in job_ids if i in self._running}

    def _lose_lease(self, running: Running) -> None:
        """The job was rescued and belongs to another worker now: stop it, write nothing."""
        if running.job.id not in self._running or running.lease_lost:
            return
        log.warning("job %s: lease lost (rescued elsewhere); abandoning this attempt", running.job.id)
        running.lease_lost = True
        running.ctx.request_stop(Cancelled)
        self._kill(running)

    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.progress_interval.total_seconds())
            for running in list(self._running.values()):
                update = self.engine.sealing.seal_progress(running.job, running.ctx.take_progress())
                logs = self.engine.sealing.seal_logs(running.job, running.ctx.take_logs())
                if update is not None or logs:
                    self._completer.add(None, update, logs)

    async def _presence_loop(self) -> None:
        """Keep this worker's row in the registry fresh (queues, concurrency, running jobs):
        what health checks and queue views count as live workers."""
        hostname, pid = socket.gethostname(), os.getpid()
        while True:
            record = WorkerRecord(
                id=self.worker_id,
                hostname=hostname,
                pid=pid,
                queues=list(self.queues),
                concurrency=self.concurrency,
                running=len(self._running),
                started_at=self._started_at,
                last_seen_at=utc_now(),
            )
            try:
                await self.store.record_worker(record)
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                log_failure(log, exc, "recording worker presence failed")
            await asyncio.sleep(self.presence_interval.total_seconds())

    async def _maintenance_loop(self) -> None:
        interval = self.maintenance_interval.total_seconds()
        housekept = time.monotonic()

        async def maintain() -> None:
            nonlocal housekept
            try:
                await self.store.stage_due()
                rescued = await self.store.rescue_expired()
                # Slower chores: a write each, not worth taking the write lock every tick.
                if time.monotonic() - housekept >= HOUSEKEEPING_INTERVAL.total_seconds():
                    housekept = time.monotonic()
                    await self.store.forget_workers(unseen_for=FORGET_WORKERS_AFTER)
                    await self.store.compact_rollups()
                    await self.store.settle_waiting_batches()
                if rescued:
                    log.warning("rescued %d jobs whose lease ran out", len(rescued))
            except Exception as exc:  # noqa: BLE001 - logged by log_failure
                log_failure(log, exc, "maintenance failed")

        # jitter between maintenance passes, not a secret (bandit B311)
        await run_periodically(lambda: interval * random.uniform(0.8, 1.2), maintain)  # nosec B311

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.shutdown_grace.total_seconds()
        while self._running and time.monotonic() < deadline:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), deadline - time.monotonic())
        for running in list(self._running.values()):
            running.ctx.request_stop(Released)
            self._kill(running)
        while self._running:
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), 1)
        await self._completer.drain(timeout=30)


def _log_attempt_end(ctx: Context, job: Job, outcome: Outcome) -> None:
    """An attempt that ended in an error leaves a line in the job's log (component "worker",
    with its attempt number), so that every attempt's error stays readable after the next one
    replaces the job's `error`."""
    error = outcome.error
    if error is None or outcome.kind not in (OutcomeKind.RETRY, OutcomeKind.FAILED, OutcomeKind.TIMEOUT):
        return
    what = f"attempt {job.attempt} of {job.max_attempts} ended: {error.get('type')}: {error.get('message')}"
    if outcome.kind is OutcomeKind.RETRY and outcome.run_at is not None:
        ctx.warning(f"{what}; next attempt at {outcome.run_at.isoformat(timespec='seconds')}", component="worker")
    else:
        ctx.error(what, component="worker")
