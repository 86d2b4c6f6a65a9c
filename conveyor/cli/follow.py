"""Follows a running job to its end with a progress bar: items done of the total, speed,
time left and the current step, read from the server; Ctrl-C offers to cancel the job.

The loop asks the server to wait (`POST /jobs/{id}/wait`) for at most `POLL_SECONDS`: the
answer comes the moment the job finishes; until then each timed-out wait is followed by a
`GET` of the job for its item counts and step, which the wait's answer does not carry.
"""

import time
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli.exits import Exit, stop

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

    from conveyor.client import Client, Job

POLL_SECONDS = 0.5


def follow(client: "Client", job: "Job", *, timeout: float | None, show: bool) -> "Job":
    """The finished job; raises WaitTimeout when `timeout` seconds pass first. With `show`
    (and stderr a terminal), a progress bar on stderr follows it."""
    from conveyor.cli.output import console

    progress = _progress(console(stderr=True), enabled=show)
    task = progress.add_task(job.type, total=None, step="", server_speed="", items=False, eta=None)
    try:
        with progress:
            return _until_finished(client, job, timeout, progress, task)
    except KeyboardInterrupt:
        _offer_to_cancel(client, job)
        raise  # not reached: _offer_to_cancel ends the command


def _until_finished(client: "Client", job: "Job", timeout: float | None, progress: "Progress", task: "TaskID") -> "Job":
    from conveyor.client import WaitTimeout

    deadline = None if timeout is None else time.monotonic() + timeout
    _show(progress, task, job)
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done = client.wait(job.id, timeout=POLL_SECONDS if remaining is None else min(POLL_SECONDS, remaining))
        except WaitTimeout:
            if remaining is not None and remaining <= POLL_SECONDS:
                raise
            _show(progress, task, client.get(job.id))
            continue
        _show(progress, task, done)
        return done


def _show(progress: "Progress", task: "TaskID", job: "Job") -> None:
    stats = job.processing_stats
    step = job.current_step.name if job.current_step and job.current_step.name else ""
    if stats is not None and stats.total_items:
        total, completed = float(stats.total_items), float(stats.processed_items or 0)
    else:
        total, completed = 100.0, float(job.progress)
    status = str(getattr(job.status, "value", job.status))
    progress.update(
        task,
        total=total,
        completed=completed,
        description=f"{job.type} {status}",
        step=step,
        items=bool(stats is not None and stats.total_items),
        server_speed=(stats.current_speed or "") if stats else "",
        eta=job.estimated_completion,
    )


def _progress(shown_on: Any, *, enabled: bool) -> "Progress":
    from datetime import UTC, datetime

    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Done(ProgressColumn):
        """Items done of the total when the job counts them, else its percentage."""

        def render(self, task: "Task") -> "Text":
            if task.total is None:
                return Text("-", style="progress.download")
            if task.fields.get("items"):
                return Text(f"{task.completed:.0f}/{task.total:.0f}", style="progress.download")
            return Text(f"{task.completed:.0f}%", style="progress.download")

    class Speed(ProgressColumn):
        """Items a second as measured here, or the server's own figure before there is one."""

        def render(self, task: "Task") -> "Text":
            if task.speed and task.fields.get("items"):
                return Text(f"{task.speed:.1f} items/s", style="progress.data.speed")
            return Text(task.fields.get("server_speed") or "- items/s", style="progress.data.speed")

    class Eta(ProgressColumn):
        """Time left: from the speed measured here, or the server's estimated completion."""

        def render(self, task: "Task") -> "Text":
            left = task.time_remaining
            if left is None and task.fields.get("eta") is not None:
                left = max(0.0, (task.fields["eta"] - datetime.now(UTC)).total_seconds())
            shown = (
                "-:--:--" if left is None else f"{int(left) // 3600}:{int(left) % 3600 // 60:02d}:{int(left) % 60:02d}"
            )
            return Text(f"ETA {shown}", style="progress.remaining")

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        Done(),
        Speed(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        Eta(),
        TextColumn("{task.fields[step]}", markup=False),
        console=shown_on,
        disable=not (enabled and shown_on.is_terminal),
        refresh_per_second=8,
    )


def _offer_to_cancel(client: "Client", job: "Job") -> None:
    try:
        cancel = typer.confirm(f"\ncancel the job {job.id}?", default=False, err=True)
    except (KeyboardInterrupt, EOFError, typer.Abort):
        cancel = False
    if cancel:
        from conveyor.cli.signing import signed

        # A critical-priority job's cancel may need an e-signature: asked here, on the terminal.
        after = signed(client, lambda c, signature: c.cancel(job.id, signature=signature), None, None)
        state = "cancelled" if after.finished else "cancellation requested (it stops at its next checkpoint)"
        stop(Exit.INTERRUPTED, f"job {job.id}: {state}")
    stop(Exit.INTERRUPTED, f"job {job.id} goes on; follow it with: conveyor jobs wait {job.id}")
