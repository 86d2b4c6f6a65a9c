"""`conveyor submit` and `conveyor jobs …` over HTTP; the older database-direct `enqueue`,
`show` and `cancel` (hidden from --help, kept for existing scripts)."""

import json
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, ago, group, print_json, print_table, status, when
from conveyor.cli.remote import call, client
from conveyor.cli.signing import MeaningOpt, SignAsOpt, signed_call

if TYPE_CHECKING:
    from conveyor.client import Client, Job
    from conveyor.model import Job as CoreJob

jobs_app = group("Jobs on the server: list, show, cancel, retry, delete, logs, wait, signatures.")

JobId = Annotated[str, typer.Argument(help="the job's id")]
DataOpt = Annotated[str, typer.Option(help="the job's input as JSON, or @file (@- reads stdin)")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="key:value (repeatable)")]
TimeoutOpt = Annotated[float | None, typer.Option(help="give up waiting after this many seconds (exit 5)")]


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.add_typer(jobs_app, name="jobs")
    app.command(hidden=True)(enqueue)
    app.command(hidden=True)(show)
    app.command(hidden=True)(cancel)


# --- submit ---------------------------------------------------------------------------------------


def submit(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="the job type, e.g. sleep")],
    data: DataOpt = "{}",
    priority: Annotated[str | None, typer.Option(help="critical, high, medium, low, or 1-10")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    label: LabelOpt = None,
    idempotency_key: Annotated[str | None, typer.Option(help="the same key gives back the first job")] = None,
    delay: Annotated[float | None, typer.Option(help="run no sooner than this many seconds from now")] = None,
    use_cache: Annotated[bool, typer.Option("--use-cache", help="reuse an identical job's result")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job to its end with a progress bar")] = False,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a job to the server; with --wait, follow it (Ctrl-C offers to cancel it) and exit
    0 when it completed, 7 when it failed, was cancelled or timed out."""
    payload = local.parse_json(data)
    with client() as c:
        job = c.submit(
            job_type,
            payload,
            priority=local.priority(priority),
            queue=queue,
            labels=local.labels(label) or None,
            idempotency_key=idempotency_key,
            delay=delay,
            use_cache=use_cache or None,
        )
        if not wait:
            _print_job_line(job, "submitted", as_json)
            return
        if not as_json:
            typer.echo(f"submitted {job.id} ({job.type}, {job.priority})", err=True)
        _finish(c, job, timeout=timeout, as_json=as_json)


def _finish(c: "Client", job: "Job", *, timeout: float | None, as_json: bool, show: bool = True) -> None:
    from conveyor.cli.follow import follow

    done = follow(c, job, timeout=timeout, show=show)
    if as_json:
        print_json(done)
    else:
        _describe(done)
    if not done.succeeded:
        raise typer.Exit(int(Exit.JOB_NOT_COMPLETED))


def _print_job_line(job: "Job", verb: str, as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        typer.echo(f"{verb} {job.id} ({job.type}, {job.status}, {job.priority})")


# --- jobs ----------------------------------------------------------------------------------------------


@jobs_app.command("list")
def list_jobs(
    status_: Annotated[
        list[str] | None, typer.Option("--status", help="pending, running, completed, failed… (repeatable)")
    ] = None,
    job_type: Annotated[list[str] | None, typer.Option("--type", help="job type (repeatable)")] = None,
    priority: Annotated[list[str] | None, typer.Option(help="critical, high, medium, low (repeatable)")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    label: LabelOpt = None,
    sort: Annotated[
        str | None,
        typer.Option(
            help="newest (default), oldest, or created, priority, status, type, run_at, finished; "
            "a leading - for descending (--sort=-priority)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="a page of this many")] = 50,
    page: Annotated[int, typer.Option(help="which page")] = 1,
    every: Annotated[bool, typer.Option("--all", help="every matching job, page after page")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The jobs the caller may see, newest first unless --sort says otherwise."""
    filters: dict[str, Any] = {"status": status_, "type": job_type, "priority": priority, "queue": queue, "sort": sort}
    filters = {k: v for k, v in filters.items() if v}
    if label:
        filters["labels"] = local.labels(label)
    with client() as c:
        if every:
            found, total = list(c.iter_jobs(page_size=max(limit, 100), **filters)), None
        else:
            listed = c.list(page=page, page_size=limit, **filters)
            found, total = listed.items, listed.total
    if as_json:
        print_json(found)
        return
    header = ("ID", "TYPE", "STATUS", "PRIORITY", "PROGRESS", "CREATED", "FINISHED")
    rows = [
        (
            j.id,
            j.type,
            status(j.status),
            j.priority or "-",
            f"{j.progress:.0f}%",
            ago(j.created_at),
            when(j.completed_at),
        )
        for j in found
    ]
    print_table(header, rows)
    if total is not None and total > len(found) + (page - 1) * limit:
        typer.echo(f"({len(found)} of {total}; --page, --limit or --all for more)")


@jobs_app.command("show")
def show_job(
    job_id: JobId,
    data: Annotated[bool, typer.Option("--data", help="its input data too")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One job: status, progress, timings, result or error (--data: its input too)."""
    job = call(lambda c: c.get(job_id, include_data=data))
    if as_json:
        print_json(job)
    else:
        _describe(job)


def _describe(job: "Job") -> None:
    from conveyor.cli.output import console

    stats = job.processing_stats
    lines = [
        ("id", str(job.id)),
        ("type", job.type),
        ("status", status(job.status) + (" (cancel requested)" if job.cancel_requested else "")),
        ("priority", f"{job.priority} ({job.priority_level})"),
        ("queue", job.queue or "-"),
        ("progress", f"{job.progress:.0f}%"),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.completed_at)),
    ]
    if stats is not None and stats.total_items:
        lines.append(("items", f"{stats.processed_items or 0}/{stats.total_items} ({stats.failed_items or 0} failed)"))
    if job.current_step and job.current_step.name:
        lines.append(("step", f"{job.current_step.name} ({job.current_step.step}/{job.current_step.total_steps})"))
    if job.labels:
        lines.append(("labels", ", ".join(f"{k}:{v}" for k, v in job.labels.items())))
    if job.retry_of:
        lines.append(("retry of", str(job.retry_of)))
    if job.data is not None:
        lines.append(("data", json.dumps(job.data)))
    if job.masked:
        lines.append(("masked", ", ".join(job.masked)))
    if job.result is not None:
        lines.append(("result", json.dumps(job.result)))
    if job.error is not None:
        from rich.markup import escape  # an error's text may hold brackets; rich is loaded by now

        lines.append(("error", f"[red]{escape(_error_line(job.error))}[/]"))
    out = console()
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        out.print(f"[bold]{name.ljust(width)}[/]  {value}", highlight=False)


def _error_line(error: Any) -> str:
    if isinstance(error, str):
        return error
    message = error.message or ""
    if message.startswith("sealed:1:"):  # a sensitive job's error, and the server lacks its key
        kid = message.split(":", 3)[2]
        code = f" {error.code}" if error.code else ""
        return f"{error.type}{code}: (sealed with key {kid}, which the server does not hold)"
    return f"{error.type}: {message}"


@jobs_app.command("cancel")
def cancel_job(job_id: JobId, sign_as: SignAsOpt = None, meaning: MeaningOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a job: at once when waiting, at its next checkpoint when running (exit 4 if finished).
    A critical-priority job's cancel may need an e-signature (--sign-as, --meaning)."""
    job = signed_call(lambda c, signature: c.cancel(job_id, signature=signature), sign_as, meaning)
    _print_job_line(job, "cancelled" if job.finished else "cancel requested for", as_json)


@jobs_app.command("delete")
def delete_job(
    job_id: JobId,
    purge: Annotated[
        bool, typer.Option("--purge", help="remove the job for good, with its result and logs (not a running job)")
    ] = False,
    sign_as: SignAsOpt = None,
    meaning: MeaningOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Seed 002's DELETE: cancels the job as `cancel` does, recorded in the audit trail as
    job.deleted (the job stays listed until retention removes it); signed as a cancel is.
    With --purge the job is removed (an erasure request), signed as job.delete where demanded."""
    if purge:
        gone = signed_call(lambda c, signature: c.purge(job_id, signature=signature), sign_as, meaning)
        _print_job_line(gone, "removed", as_json)
        return
    job = signed_call(lambda c, signature: c.delete(job_id, signature=signature), sign_as, meaning)
    _print_job_line(job, "deleted (cancelled)" if job.finished else "delete requested for", as_json)


@jobs_app.command("retry")
def retry_job(job_id: JobId, sign_as: SignAsOpt = None, meaning: MeaningOpt = None, as_json: JsonOpt = False) -> None:
    """Run a failed, cancelled or timed-out job again, as a new job (a critical-priority job's
    retry may need an e-signature: --sign-as, --meaning)."""
    job = signed_call(lambda c, signature: c.retry(job_id, signature=signature), sign_as, meaning)
    _print_job_line(job, f"retrying {job_id} as", as_json)


@jobs_app.command("signatures")
def job_signatures(job_id: JobId, as_json: JsonOpt = False) -> None:
    """The e-signatures applied to a job: signer, printed name, meaning, time, action."""
    found = call(lambda c: c.signatures(job_id))
    if as_json:
        print_json(found)
        return
    rows = [(when(s.signed_at), s.signer_id, s.printed_name, s.meaning, s.action,
             (s.record_hash or "-")[:16]) for s in found]  # fmt: skip
    print_table(("SIGNED", "SIGNER", "NAME", "MEANING", "ACTION", "RECORD HASH"), rows)


@jobs_app.command("logs")
def job_logs(
    job_id: JobId,
    level: Annotated[str | None, typer.Option(help="lowest level: debug, info, warning, error, critical")] = None,
    limit: Annotated[int, typer.Option(help="at most this many lines")] = 100,
    offset: Annotated[int, typer.Option(help="skip this many first")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """A job's log lines, oldest first."""
    logs = call(lambda c: c.logs(job_id, level=level, limit=limit, offset=offset))
    if as_json:
        print_json(logs)
        return
    from conveyor.cli.output import console

    styles = {"debug": "dim", "warning": "yellow", "error": "red", "critical": "bold red"}
    out = console()
    for e in logs.entries:
        style = styles.get(e.level, "")
        text = f"{e.timestamp:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f" {e.level.upper():8} {e.component or '-'}: {e.message}"
        out.print(text, style=style, highlight=False, markup=False)
    if logs.total > logs.offset + len(logs.entries):
        typer.echo(f"({len(logs.entries)} of {logs.total} from {logs.offset}; --offset for more)")


@jobs_app.command("wait")
def wait_job(
    job_id: JobId,
    timeout: TimeoutOpt = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Follow a job to its end: exit 0 when it completed, 7 when not, 5 when --timeout ran out."""
    with client() as c:
        _finish(c, c.get(job_id), timeout=timeout, as_json=as_json, show=progress)


# --- the older database-direct commands -----------------------------------------------------------------


def _core_job_json(job: "CoreJob") -> dict[str, Any]:
    return {
        "id": str(job.id),
        "kind": job.kind,
        "queue": job.queue,
        "status": job.status.value,
        "priority": job.priority,
        "priority_class": job.priority_class.value,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "progress": job.progress.percentage,
        "created_at": job.created_at.isoformat(),
        "run_at": job.run_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "result": local.jsonable(job.result),
        "error": job.error,
        "labels": job.labels,
    }


def enqueue(
    kind: Annotated[str, typer.Argument(help="the job type, e.g. sleep")],
    data: DataOpt = "{}",
    priority: Annotated[str | None, typer.Option(help="critical, high, medium, low, or 1-10")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Enqueue one job straight in the database and print it as JSON (older form of `submit`)."""
    payload, level = local.parse_json(data), local.priority(priority)

    async def run() -> "CoreJob":
        async with local.conveyor(database_url) as conveyor:
            return await conveyor.engine.enqueue(
                kind, payload, priority=level, queue=queue, idempotency_key=idempotency_key
            )

    typer.echo(json.dumps(_core_job_json(local.run(run())), indent=2))


def _job_uuid(job_id: str) -> UUID:
    try:
        return UUID(job_id)
    except ValueError:
        typer.echo(json.dumps({"error": "JOB_NOT_FOUND", "message": f"job {job_id} not found"}), err=True)
        stop(Exit.NOT_FOUND)


def show(job_id: JobId, database_url: DatabaseOpt = None) -> None:
    """Print one job as JSON, read straight from the database (older form of `jobs show`)."""
    wanted = _job_uuid(job_id)

    async def run() -> "CoreJob":
        async with local.conveyor(database_url) as conveyor:
            return await conveyor.engine.get(wanted)

    typer.echo(json.dumps(_core_job_json(local.run(run())), indent=2))


def cancel(job_id: JobId, database_url: DatabaseOpt = None) -> None:
    """Cancel a job straight in the database (older form of `jobs cancel`)."""
    wanted = _job_uuid(job_id)

    async def run() -> "CoreJob":
        async with local.conveyor(database_url) as conveyor:
            return await conveyor.engine.cancel(wanted)

    typer.echo(json.dumps(_core_job_json(local.run(run())), indent=2))
