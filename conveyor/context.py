"""Context: what execute() is given to report progress, log, and notice cancellation.

Everything here only records in memory; the worker writes it to the store in batches (progress
at most about once a second), so calling `ctx.progress()` per item costs next to nothing.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from conveyor.errors import Cancelled, PermanentError
from conveyor.model import ItemError, Job, LogEntry, LogLevel, Owner, Progress, ProgressUpdate, utc_now

if TYPE_CHECKING:
    from conveyor.engine.packstate import PackState, StateNamespace

DEFAULT_MAX_ITEM_ERRORS = 100
DEFAULT_MAX_LOG_ENTRIES = 1000
# Counter names are stored and aggregated unsealed: a closed alphabet keeps payload out of them.
COUNTER_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_COUNTERS = 32


class Context:
    """Given to execute(ctx, data).

    Example::

        async def execute(self, ctx: Context, data: Batch) -> dict:
            for n, text in enumerate(data.texts, start=1):
                ctx.checkpoint()                       # stops here once cancelled
                try:
                    score(text)
                    ctx.progress(processed=n, total=len(data.texts), successful=1)
                except ValueError as exc:
                    ctx.item_error(n, str(exc))
            ctx.info("scored", component="sentiment")
    """

    def __init__(
        self,
        job: Job,
        *,
        max_item_errors: int = DEFAULT_MAX_ITEM_ERRORS,
        max_log_entries: int = DEFAULT_MAX_LOG_ENTRIES,
        data_dir: Path | None = None,
        data_roots: Sequence[Path] = (),
        clock: Callable[[], float] = time.monotonic,
        services: Mapping[str, Any] | None = None,
    ) -> None:
        self.job = job
        self._services = services or {}
        self._data_dir = data_dir
        self._data_roots = tuple(data_roots)
        self._clock = clock
        self._started = clock()
        self._progress = Progress()
        self._item_errors: list[dict[str, Any]] = []
        self._item_errors_dropped = 0
        self._max_item_errors = max_item_errors
        self._logs: list[LogEntry] = []
        self._log_count = 0
        self._max_log_entries = max_log_entries
        self._counters: dict[str, float] = {}
        self._dirty = False
        self._stop: type[BaseException] | None = None
        self._stop_event: asyncio.Event | None = None

    # --- who and what ------------------------------------------------------------------

    def service(self, name: str) -> Any:
        """A service the process that runs the job offers its job types: "webhooks" (the
        deliverer), "state" (pack state), "notifications" (conveyor.engine.notifications),
        "schedules" (conveyor.engine.schedules), "backup" (backups of the database),
        "retention" (conveyor.engine.retention.Retention: how long finished jobs are kept),
        "interactions" and "analytics" (the medication pack's); LookupError when it offers none
        by that name. Jobs that run in a child process (runs_in="process") are offered none."""
        try:
            return self._services[name]
        except KeyError:
            raise LookupError(f"this worker offers no service {name!r}") from None

    def state(self, namespace: str) -> StateNamespace:
        """The documents this job's owner keeps under `namespace` between jobs (its
        organisation's, or its user's when it has none), sealed at rest: get, put, update,
        delete, list (conveyor.engine.packstate). Async: call from an async execute."""
        store: PackState = self.service("state")
        return store.namespace(self.job.owner, namespace)

    @property
    def job_id(self) -> UUID:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def owner(self) -> Owner:
        return self.job.owner

    @property
    def labels(self) -> dict[str, str]:
        return self.job.labels

    @property
    def data_dir(self) -> Path:
        """The directory this process keeps job files in (CONVEYOR_DATA_DIR): uploads a job
        reads, results it writes. Paths in job data should be relative to it, so that no job
        can be pointed outside it."""
        if self._data_dir is None:
            raise PermanentError("this worker has no data directory (set CONVEYOR_DATA_DIR)")
        return self._data_dir

    @property
    def data_roots(self) -> tuple[Path, ...]:
        """The directories a job may read files from (CONVEYOR_DATA_ROOTS), the data directory
        first when there is one. A job type confines every path its input names to these."""
        first = (self._data_dir,) if self._data_dir is not None else ()
        return first + tuple(r for r in self._data_roots if r != self._data_dir)

    # --- progress -------------------------------------------------------------------------

    def progress(
        self,
        *,
        processed: int | None = None,
        total: int | None = None,
        successful: int | None = None,
        failed: int | None = None,
        step: int | None = None,
        total_steps: int | None = None,
        step_name: str | None = None,
        percentage: float | None = None,
    ) -> None:
        """Record where the job is; also a cancellation checkpoint.

        `processed`, `successful` and `failed` are running totals of items; `step` of
        `total_steps` (with a name) describes jobs made of stages. Speed (items/s) and the
        estimated completion follow from `processed` and `total`.
        """
        p = self._progress
        if total is not None:
            p.total = total
        if processed is not None:
            p.processed = processed
        if successful is not None:
            p.successful = successful
        if failed is not None:
            p.failed = failed
        if step is not None:
            p.step = step
        if total_steps is not None:
            p.total_steps = total_steps
        if step_name is not None:
            p.step_name = step_name
        if percentage is not None:
            p.percentage_override = percentage
        elapsed = self._clock() - self._started
        if p.processed and elapsed > 0:
            p.speed = p.processed / elapsed
            if p.total and p.speed > 0:
                p.eta = utc_now() + timedelta(seconds=max(p.total - p.processed, 0) / p.speed)
        self._dirty = True
        self.checkpoint()

    def expect(self, duration: timedelta) -> None:
        """The job type's own estimate of the whole run (JobType.estimate_time): the estimated
        completion until progress reports give a measured speed."""
        if self._progress.eta is None:
            self._progress.eta = utc_now() + duration
            self._dirty = True

    @property
    def current_progress(self) -> Progress:
        return self._progress

    # --- logs and item errors ---------------------------------------------------------------

    def log(self, message: str, level: str | int | LogLevel = LogLevel.INFO, *, component: str | None = None) -> None:
        """A log line stored with the job (kept up to the job's log limit; then counted)."""
        self._log_count += 1
        if self._log_count > self._max_log_entries:
            return
        entry_level = LogLevel.parse(level)
        if self._log_count == self._max_log_entries:
            message, entry_level = (
                f"log limit of {self._max_log_entries} lines reached; later lines dropped",
                LogLevel.WARNING,
            )
        self._logs.append(LogEntry(self.job.id, utc_now(), entry_level, message, component, self.job.attempt))

    def debug(self, message: str, *, component: str | None = None) -> None:
        self.log(message, LogLevel.DEBUG, component=component)

    def info(self, message: str, *, component: str | None = None) -> None:
        self.log(message, LogLevel.INFO, component=component)

    def warning(self, message: str, *, component: str | None = None) -> None:
        self.log(message, LogLevel.WARNING, component=component)

    def error(self, message: str, *, component: str | None = None) -> None:
        self.log(message, LogLevel.ERROR, component=component)

    def critical(self, message: str, *, component: str | None = None) -> None:
        self.log(message, LogLevel.CRITICAL, component=component)

    def item_error(
        self, item: str | int | None, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        """One failed item (row, text, file): kept up to a cap, the rest counted. `details`
        says more about the item (e.g. the key of a spreadsheet row), as JSON."""
        if len(self._item_errors) < self._max_item_errors:
            self._item_errors.append(ItemError(item, message, code, details).to_json())
        else:
            self._item_errors_dropped += 1
        self._dirty = True

    # --- counters ---------------------------------------------------------------------------------

    def count(self, name: str, value: float = 1) -> None:
        """Add `value` to the job's counter `name` (e.g. ``ctx.count("reminders_sent")``).

        Counters are numbers the database can sum over an organisation and a time range
        (analytics), so they are stored unsealed: the name must match ``[a-z][a-z0-9_]{0,63}``
        and the value be a finite number, never anything from the job's data. They are written
        with the outcome that finishes the job (completed, failed, cancelled, timed out); an
        attempt that ends in a retry leaves none, since the next attempt does its work again.
        """
        if not isinstance(name, str) or not COUNTER_NAME.fullmatch(name):
            raise ValueError("counter names are 1-64 characters of a-z, 0-9 and _, starting with a letter")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"counter {name}: the value must be a finite number")
        if name not in self._counters and len(self._counters) >= MAX_COUNTERS:
            raise ValueError(f"a job keeps at most {MAX_COUNTERS} counters")
        self._counters[name] = self._counters.get(name, 0) + value

    @property
    def counters(self) -> dict[str, float]:
        return dict(self._counters)

    # --- cancellation -------------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Raise Cancelled (or TimedOut) once the job was asked to stop; else return at once."""
        if self._stop is not None:
            raise self._stop()

    @property
    def cancel_requested(self) -> bool:
        return self._stop is Cancelled

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep that ends early, raising Cancelled or TimedOut, when asked to stop."""
        self.checkpoint()
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        try:
            await asyncio.wait_for(self._stop_event.wait(), timeout=seconds)
        except TimeoutError:
            return
        self.checkpoint()

    def request_stop(self, reason: type[BaseException]) -> None:
        """Called by the worker (on its loop): cancellation (Cancelled) or timeout (TimedOut)."""
        if self._stop is None:
            self._stop = reason
            if self._stop_event is not None:
                self._stop_event.set()

    @property
    def stop_reason(self) -> type[BaseException] | None:
        return self._stop

    # --- what the worker collects ---------------------------------------------------------------

    def take_logs(self) -> list[LogEntry]:
        logs, self._logs = self._logs, []
        return logs

    def take_progress(self) -> ProgressUpdate | None:
        """What changed since the last call, or None."""
        if not self._dirty:
            return None
        self._dirty = False
        return ProgressUpdate(
            job_id=self.job.id,
            attempt=self.job.attempt,
            progress=self._progress,
            item_errors=list(self._item_errors),
            item_errors_dropped=self._item_errors_dropped,
        )

    def absorb(self, snapshot: dict[str, Any]) -> None:
        """Take over state reported by a child process's context (see worker.runners)."""
        self._progress = Progress.from_json(snapshot["progress"])
        self._item_errors = snapshot["item_errors"]
        self._item_errors_dropped = snapshot["item_errors_dropped"]
        self._counters = dict(snapshot.get("counters", {}))
        self._logs.extend(
            LogEntry(self.job.id, ts, LogLevel(level), message, component, self.job.attempt)
            for ts, level, message, component in snapshot["logs"]
        )
        self._dirty = True

    def snapshot(self) -> dict[str, Any]:
        """State to ship from a child process to the worker (logs are handed over, not copied)."""
        return {
            "progress": self._progress.to_json(),
            "item_errors": self._item_errors,
            "item_errors_dropped": self._item_errors_dropped,
            "counters": dict(self._counters),
            "logs": [(e.timestamp, int(e.level), e.message, e.component) for e in self.take_logs()],
        }
