"""Where execute() runs: on the event loop, in a thread, or in a child process.

Each runner returns a future for the job's result and a `kill` that ends the attempt at once
(the hard stop after a cancel or timeout grace period). On the loop that cancels the task; a
thread cannot be killed, so it is abandoned (a daemon thread, its result ignored); a child
process is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from conveyor.context import Context
from conveyor.engine.lifecycle import error_record, is_retryable
from conveyor.errors import Cancelled, JobError, TimedOut
from conveyor.jobtypes import Definition, jsonable, load_implementation
from conveyor.model import Job

# Child processes start fresh ("spawn"): forking a process that holds database connections
# and threads would copy both into the child.
_MP = multiprocessing.get_context("spawn")
CHILD_REPORT_INTERVAL = 0.2  # seconds between a child's progress reports


@dataclass
class Run:
    future: asyncio.Future[Any]
    kill: Callable[[], None]
    forward_stop: Callable[[type[BaseException]], None] = lambda _reason: None


class ChildFailed(JobError):
    """execute() raised in a child process; carries the child's error record."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record["message"], code=record.get("code"))
        self.record = record
        self.retryable = bool(record.get("retryable", True))


def run_on_loop(definition: Definition, ctx: Context, data: Any) -> Run:
    task = asyncio.ensure_future(definition.implementation.execute(ctx, data))
    return Run(task, task.cancel)


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

    threading.Thread(target=target, name=f"conveyor-job-{ctx.job_id}", daemon=True).start()
    return Run(future, future.cancel)


def run_in_process(definition: Definition, ctx: Context, data: Any) -> Run:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    parent, child = _MP.Pipe()
    process = _MP.Process(
        target=_child_main,
        args=(child, definition.import_path, ctx.job, data),
        name=f"conveyor-job-{ctx.job_id}",
        daemon=True,
    )
    process.start()
    child.close()
    fd = parent.fileno()

    def finish(ok: bool, value: Any) -> None:
        loop.remove_reader(fd)
        parent.close()
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        # reap the child without blocking the loop
        loop.run_in_executor(None, process.join, 5)

    def on_message() -> None:
        try:
            message = parent.recv()
        except (EOFError, OSError):
            reason = ctx.stop_reason
            died = reason() if reason else JobError(f"job process exited with code {process.exitcode}")
            finish(False, died)
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

    def forward_stop(reason: type[BaseException]) -> None:
        if not parent.closed:
            parent.send(("stop", "timeout" if reason is TimedOut else "cancel"))

    def kill() -> None:
        if process.is_alive():
            process.kill()

    return Run(future, kill, forward_stop)


class _ChildContext(Context):
    """The context inside a child process: reports to the worker through a pipe."""

    def __init__(self, job: Job, conn: Connection) -> None:
        super().__init__(job)
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
            if message[0] == "stop":
                self.request_stop(TimedOut if message[1] == "timeout" else Cancelled)
        super().checkpoint()

    def progress(self, **kwargs: Any) -> None:
        try:
            super().progress(**kwargs)
        finally:
            self._report()

    def item_error(self, item: str | int | None, message: str, *, code: str | None = None) -> None:
        super().item_error(item, message, code=code)
        self._report()


def _child_main(conn: Connection, import_path: tuple[str, str, bool], job: Job, data: Any) -> None:
    ctx = _ChildContext(job, conn)
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
    finally:
        conn.close()


RUNNERS = {"loop": run_on_loop, "thread": run_in_thread, "process": run_in_process}
