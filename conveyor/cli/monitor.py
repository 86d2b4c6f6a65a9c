"""What an operator watches: `conveyor stats`, `conveyor queues [pause|resume]`,
`conveyor workers`, `conveyor health`, `conveyor whoami` and `conveyor top`, a live view of
the queues and the running jobs."""

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, ago, group, print_json, print_table, status
from conveyor.cli.remote import call, client, use_database

if TYPE_CHECKING:
    from rich.console import Group

    from conveyor.client import Client

STATUSES = ("scheduled", "pending", "running", "completed", "failed", "cancelled", "timeout")

queues_app = group(
    "Queues: depth and pace; pause and resume them (operators).", invoke_without_command=True, no_args_is_help=False
)


def register(app: typer.Typer) -> None:
    app.command()(stats)
    app.add_typer(queues_app, name="queues")
    app.command()(workers)
    app.command()(health)
    app.command()(whoami)
    app.command()(top)


def stats(as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """Jobs by status, type and priority, and recent performance. On the database (--database-url,
    or CONVEYOR_DATABASE_URL with no server configured): counts by status as JSON."""
    if use_database(database_url):
        _stats_from_database(database_url)
        return
    summary = call(lambda c: c.stats())
    if as_json:
        print_json(summary)
        return
    counts = summary.model_dump()
    print_table(
        ("TOTAL", *(s.upper() for s in STATUSES)), [(summary.total, *(counts[s] for s in STATUSES))], title="jobs"
    )
    p = summary.performance
    print_table(
        ("THROUGHPUT", "SUCCESS RATE", "AVERAGE TIME", "PEAK CONCURRENCY"),
        [(p.throughput or "-", _percent(p.success_rate), _millis(p.average_processing_time), p.peak_concurrency)],
        title="performance",
    )
    rows = [(kind, *(c.get(s, 0) for s in ("total", "pending", "running", "completed", "failed")))
            for kind, c in sorted(summary.by_type.items())]  # fmt: skip
    if rows:
        print_table(("TYPE", "TOTAL", "PENDING", "RUNNING", "COMPLETED", "FAILED"), rows, title="by type")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _millis(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _stats_from_database(database_url: str | None) -> None:
    async def run() -> dict[str, int]:
        async with local.conveyor(database_url) as conveyor:
            return await conveyor.engine.counts()

    typer.echo(json.dumps(local.run(run()), indent=2, sort_keys=True))


@queues_app.callback()
def queues(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every queue with its depth, oldest waiting job, pace and workers."""
    if ctx.invoked_subcommand is not None:
        return
    found = call(lambda c: c.queues())
    if as_json:
        print_json(found)
        return
    header = ("QUEUE", "STATE", "PENDING", "SCHEDULED", "RUNNING", "OLDEST WAITING", "PER MINUTE", "WORKERS")
    rows = [
        (q.name, "[yellow]paused[/]" if q.paused else "active", q.pending, q.scheduled, q.running,
         ago(q.oldest_pending_at), f"{q.throughput_per_minute or 0:.1f}", q.workers if q.workers is not None else "-")
        for q in found
    ]  # fmt: skip
    print_table(header, rows)


QueueName = Annotated[str, typer.Argument(help="the queue's name")]


@queues_app.command("pause")
def pause_queue(name: QueueName, as_json: JsonOpt = False) -> None:
    """Workers stop claiming from the queue; running jobs finish."""
    state = call(lambda c: c.pause_queue(name))
    print_json(state) if as_json else typer.echo(f"queue {state.name} paused")


@queues_app.command("resume")
def resume_queue(name: QueueName, as_json: JsonOpt = False) -> None:
    """Workers claim from the queue again."""
    state = call(lambda c: c.resume_queue(name))
    print_json(state) if as_json else typer.echo(f"queue {state.name} resumed")


def workers(as_json: JsonOpt = False) -> None:
    """The live workers: host, pid, queues, concurrency, jobs running, last heartbeat."""
    found = call(lambda c: c.workers())
    if as_json:
        print_json(found)
        return
    rows = [(w.id, w.hostname or "-", w.pid or "-", ",".join(w.queues) or "-", w.running, w.concurrency,
             ago(w.started_at), ago(w.last_seen_at)) for w in found]  # fmt: skip
    print_table(("ID", "HOST", "PID", "QUEUES", "RUNNING", "CONCURRENCY", "STARTED", "LAST SEEN"), rows)


def whoami(as_json: JsonOpt = False) -> None:
    """Who the configured credentials are: user or key, role, organisation, permissions."""
    caller = call(lambda c: c.me())
    if as_json:
        print_json(caller)
        return
    typer.echo(
        f"{caller.name or caller.user_id} ({caller.via}): {caller.role}, organisation {caller.org_id or '-'}"
        + (f", study {caller.study_id}" if caller.study_id else "")
    )
    typer.echo(f"may: {', '.join(caller.permissions)}")


def health(as_json: JsonOpt = False) -> None:
    """The server's health (no credentials needed); exit 6 when unhealthy."""
    report = call(lambda c: c.health())
    if as_json:
        print_json(report)
    else:
        typer.echo(
            f"{report.status}: database {report.database}, workers {report.workers} ({report.live_workers} live)"
        )
    if report.status == "unhealthy":
        raise typer.Exit(int(Exit.UNAVAILABLE))


def top(
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="print the view once and exit")] = False,
    running: Annotated[int, typer.Option(help="show at most this many running jobs")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print one snapshot as JSON (for scripts) and exit")] = False,
) -> None:
    """A live view of the queues and the running jobs with their progress; Ctrl-C leaves."""
    from rich.live import Live

    from conveyor.cli.output import console

    out = console()
    with client() as c:
        if as_json:
            print_json(_snapshot(c, running))
            return
        if once:
            out.print(_view(c, running))
            return
        try:
            with Live(_view(c, running), console=out, screen=False, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    live.update(_view(c, running), refresh=True)
        except KeyboardInterrupt:
            return


def _snapshot(c: "Client", limit: int) -> dict[str, Any]:
    """What the view shows, as JSON: the time, counts and performance, the queues, and the
    running jobs (at most `limit`, with their total)."""
    from datetime import UTC, datetime

    from conveyor.cli.output import dump

    summary, found = c.stats(), c.queues()
    jobs = c.list(status="running", page_size=limit)
    return {
        "at": datetime.now(UTC).isoformat(),
        "stats": dump(summary),
        "queues": dump(found),
        "running": {"total": jobs.total, "jobs": dump(jobs.items)},
    }


def _view(c: "Client", limit: int) -> "Group":
    from datetime import UTC, datetime

    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    from conveyor.cli.output import table

    summary, found = c.stats(), c.queues()
    jobs = c.list(status="running", page_size=limit)
    counts = summary.model_dump()
    headline = Text.from_markup(
        f"[bold]conveyor[/] {datetime.now(UTC):%H:%M:%S} UTC  "
        + "  ".join(f"{status(s)} {counts[s]}" for s in STATUSES)
        + f"  throughput {summary.performance.throughput or '-'}"
    )
    queue_rows = [
        (q.name, "[yellow]paused[/]" if q.paused else "active", q.pending, q.running, ago(q.oldest_pending_at),
         f"{q.throughput_per_minute or 0:.1f}", q.workers if q.workers is not None else "-")
        for q in found
    ]  # fmt: skip
    queues_table = table(
        "queues", ("QUEUE", "STATE", "PENDING", "RUNNING", "OLDEST WAITING", "PER MINUTE", "WORKERS"), queue_rows
    )
    running_table = Table(title=f"running jobs ({jobs.total})", title_justify="left", header_style="bold")
    for name in ("ID", "TYPE", "PRIORITY", "PROGRESS", "", "STARTED"):
        running_table.add_column(name, no_wrap=True)
    for j in jobs.items:
        bar = ProgressBar(total=100, completed=j.progress, width=20)
        running_table.add_row(str(j.id), j.type, j.priority or "-", bar, f"{j.progress:.0f}%", ago(j.started_at))
    return Group(headline, queues_table, running_table)
