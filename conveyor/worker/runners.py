"""Where execute() runs: on the event loop, in a thread, or in a child process.

Each runner returns a future for the job's result and a `kill` that ends the attempt at once
(the hard stop after a cancel or timeout grace period). On the loop that cancels the task; a
thread cannot be killed, so it is abandoned (a daemon thread, its result ignored); a pooled
child process is SIGKILLed and replaced.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from conveyor.context import Context
from conveyor.engine.lifecycle import error_record, is_retryable
from conveyor.errors import Cancelled, JobError, TimedOut
from conveyor.jobtypes import Definition, jsonable, load_implementation
from conveyor.model import Job

# Child processes start fresh ("spawn"): forking a process that holds database connections
# and threads would copy both into the child. Job types must therefore be importable.
_MP = multiprocessing.get_context("spawn")
CHILD_REPORT_INTERVAL = 0.2  # seconds between a child's progress reports


@dataclass
class Run:
    """A started attempt: what to await for its result, and how to end it at once."""

    future: Awaitable[Any]
    kill: Callable[[], None]
    forward_stop: Callable[[type[BaseException]], None] = lambda _reason: None


class ChildFailed(JobError):
    """execute() raised in a child process; carries the child's error record."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record["message"], code=record.get("code"))
        self.record = record
        self.retryable = bool(record.get("retryable", True))


def run_on_loop(definition: Definition, ctx: Context, data: Any) -> Run:
    # Awaited in the worker's own task for the job (a second task per job costs more than the
    # job often does); a hard stop cancels that task.
    task = asyncio.current_task()
    # type narrowing: always called from within a task (bandit B101)
    assert task is not None  # nosec B101
    return Run(definition.implementation.execute(ctx, data), task.cancel)


def run_in_thread(definition: Definition, ctx: Context, data: Any) -> Run:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return  # abandoned after a hard stop
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            result = definition.implementation.execute(ctx, data)
        except BaseException as exc:  # noqa: BLE001 - handed to the loop as the attempt's end
            loop.call_soon_threadsafe(settle, False, exc)
        else:
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=target, name="conveyor-job", daemon=True).start()
    return Run(future, future.cancel)


class ProcessPool:
    """Child processes that run process-bound jobs, one job at a time each.

    Children start on demand, up to `size`, and are reused; a hard stop kills the child that
    runs the job, and a fresh one takes its place when next needed.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a process pool needs at least one process")
        self._size = size
        self._started = 0
        self._idle: asyncio.Queue[_Child | None] = asyncio.Queue()
        self._children: set[_Child] = set()

    async def _acquire(self) -> _Child:
        while True:
            if not self._idle.empty():
                child = self._idle.get_nowait()
            elif self._started < self._size:
                self._started += 1
                child = _Child()
                self._children.add(child)
                return child
            else:
                child = await self._idle.get()
            if child is not None and child.alive:
                return child
            # None: a child died and its place is free; a dead child: forget it
            if child is not None:
                self._forget(child)

    def _release(self, child: _Child) -> None:
        if child.alive:
            self._idle.put_nowait(child)
        else:
            self._forget(child)
            self._idle.put_nowait(None)  # wake one waiter: it may start a replacement

    def _forget(self, child: _Child) -> None:
        if child in self._children:
            self._children.discard(child)
            self._started -= 1

    def run(self, definition: Definition, ctx: Context, data: Any) -> Run:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        holder: dict[str, _Child] = {}

        async def start() -> None:
            try:
                child = await self._acquire()
            except Exception as exc:  # noqa: BLE001 - e.g. no process could be started: fail the attempt
                if not future.done():
                    future.set_exception(exc)
                return
            if future.done():  # stopped before a process was free
                self._release(child)
                return
            holder["child"] = child
            child.start_job(definition.import_path, ctx, data, future, on_idle=self._release)

        starting = asyncio.ensure_future(start())

        def forward_stop(reason: type[BaseException]) -> None:
            if "child" in holder:
                holder["child"].forward_stop(ctx.job_id, reason)

        def kill() -> None:
            starting.cancel()
            if "child" in holder:
                holder["child"].kill()
            future.cancel()

        return Run(future, kill, forward_stop)

    def close(self) -> None:
        for child in list(self._children):
            child.kill()
        self._children.clear()


class _Child:
    """One pooled child process and the parent's end of its pipe."""

    def __init__(self) -> None:
        self._conn, child_end = _MP.Pipe()
        self._process = _MP.Process(target=_child_loop, args=(child_end,), name="conveyor-job-process", daemon=True)
        self._process.start()
        child_end.close()

    @property
    def alive(self) -> bool:
        return self._process.is_alive() and not self._conn.closed

    def start_job(
        self,
        import_path: tuple[str, str, bool],
        ctx: Context,
        data: Any,
        future: asyncio.Future[Any],
        on_idle: Callable[[_Child], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        fd = self._conn.fileno()

        def finish(ok: bool, value: Any) -> None:
            loop.remove_reader(fd)
            if not future.done():
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            on_idle(self)

        def on_message() -> None:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._conn.close()
                # reap the dead child without blocking the loop
                loop.run_in_executor(None, self._process.join, 5)
                reason = ctx.stop_reason
                code = self._process.exitcode
                finish(False, reason() if reason else JobError(f"job process exited with code {code}"))
                return
            kind = message[0]
            if kind == "state":
                ctx.absorb(message[1])
            elif kind == "done":
                ctx.absorb(message[2])
                finish(True, message[1])
            elif kind == "stopped":
                ctx.absorb(message[2])
                finish(False, TimedOut() if message[1] == "timeout" else Cancelled())
            elif kind == "error":
                ctx.absorb(message[2])
                finish(False, ChildFailed(message[1]))

        loop.add_reader(fd, on_message)
        try:
            self._conn.send(("run", import_path, ctx.job, data, ctx._data_dir, ctx._data_roots))
        except OSError:  # the child died while idle
            self._conn.close()
            finish(False, JobError("job process died before the job started"))
            return
        if ctx.stop_reason is not None:
            self.forward_stop(ctx.job_id, ctx.stop_reason)

    def forward_stop(self, job_id: Any, reason: type[BaseException]) -> None:
        if not self._conn.closed:
            self._conn.send(("stop", job_id, "timeout" if reason is TimedOut else "cancel"))

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()


class _ChildContext(Context):
    """The context inside a child process: reports to the worker through a pipe."""

    def __init__(
        self, job: Job, conn: Connection, data_dir: Path | None = None, data_roots: tuple[Path, ...] = ()
    ) -> None:
        super().__init__(job, data_dir=data_dir, data_roots=data_roots)
        self._conn = conn
        self._last_report = 0.0

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= CHILD_REPORT_INTERVAL:
            self._last_report = now
            self._conn.send(("state", self.snapshot()))

    def checkpoint(self) -> None:
        while self._conn.poll():
            message = self._conn.recv()
            # A stop meant for an earlier job of this process may arrive late: ignore it.
            if message[0] == "stop" and message[1] == self.job.id:
                self.request_stop(TimedOut if message[2] == "timeout" else Cancelled)
        super().checkpoint()

    def progress(self, **kwargs: Any) -> None:
        try:
            super().progress(**kwargs)
        finally:
            self._report()

    def item_error(
        self, item: str | int | None, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().item_error(item, message, code=code, details=details)
        self._report()


def _child_loop(conn: Connection) -> None:
    """A pooled child: runs the jobs it is sent, one at a time, until its pipe closes."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "run":
            _run_one(conn, *message[1:])


def _run_one(
    conn: Connection,
    import_path: tuple[str, str, bool],
    job: Job,
    data: Any,
    data_dir: Path | None = None,
    data_roots: tuple[Path, ...] = (),
) -> None:
    ctx = _ChildContext(job, conn, data_dir, data_roots)
    try:
        execute = load_implementation(import_path)
        result = jsonable(execute(ctx, data))
    except Cancelled:
        conn.send(("stopped", "cancel", ctx.snapshot()))
    except TimedOut:
        conn.send(("stopped", "timeout", ctx.snapshot()))
    except BaseException as exc:  # noqa: BLE001 - reported to the worker as the attempt's end
        conn.send(("error", error_record(exc, retryable=is_retryable(exc)), ctx.snapshot()))
    else:
        conn.send(("done", result, ctx.snapshot()))
