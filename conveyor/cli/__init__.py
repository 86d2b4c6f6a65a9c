"""The `conveyor` command: serve, migrate, worker, enqueue, job inspection, API keys, schedules,
batches and the result cache."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import typer

from conveyor.cli.users import users_app
from conveyor.errors import ConveyorError

# The engine, store and settings (pydantic, SQLAlchemy) are imported by the commands that use
# them, so that `conveyor --help` and a mistyped command answer at once.
if TYPE_CHECKING:
    from conveyor.audit import Actor
    from conveyor.engine.batches import Batches, BatchView
    from conveyor.engine.schedules import Schedules
    from conveyor.model import Job
    from conveyor.runtime import Conveyor
    from conveyor.settings import Settings
    from conveyor.store.schedules import Schedule

T = TypeVar("T")

# Help and errors in click's plain format: typer's rich formatting imports rich's markdown
# stack first (~110 ms of the ~300 ms budget for `conveyor --help`).
PLAIN: dict[str, Any] = {"rich_markup_mode": None, "pretty_exceptions_enable": False}

app = typer.Typer(help="conveyor: durable background jobs.", no_args_is_help=True, add_completion=False, **PLAIN)


def _run(main: Coroutine[Any, Any, T]) -> T:
    import asyncio  # ~50 ms: not for --help

    if _person is not None:
        main = _acting_as(_person, main)
    try:  # uvloop's loop costs about a third less CPU per database round trip than asyncio's own
        import uvloop
    except ImportError:  # not built for every platform (Windows)
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _acting_as(actor: Actor, main: Coroutine[Any, Any, T]) -> T:
    from conveyor.audit import acting_as

    # Inside the event loop's own context: nothing outlives the command (commands invoked
    # in-process, as the tests do, would otherwise pass the actor on to what runs next).
    with acting_as(actor):
        return await main


# Commands that run services rather than act for the person at the keyboard: what they do is
# recorded as the system's (and the API's requests as their callers').
_SERVICE_COMMANDS = {"serve", "worker"}
_person: Actor | None = None  # who the audit trail records for this command


@app.callback()
def _main(ctx: typer.Context) -> None:
    global _person
    _person = None
    if ctx.invoked_subcommand not in _SERVICE_COMMANDS:
        import getpass
        import socket

        from conveyor.audit import Actor

        _person = Actor(user_id=f"cli:{getpass.getuser()}", client_address=socket.gethostname()[:64])


def _settings(**overrides: Any) -> Settings:
    from conveyor.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _conveyor(settings: Settings) -> Conveyor:
    from conveyor.runtime import Conveyor

    return Conveyor.from_settings(settings)


def jsonable(value: Any) -> Any:
    from conveyor.jobtypes import jsonable

    return jsonable(value)


def _job_json(job: Job) -> dict[str, Any]:
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
        "result": jsonable(job.result),
        "error": job.error,
        "labels": job.labels,
    }


def _fail(exc: ConveyorError) -> None:
    typer.echo(json.dumps({"error": exc.code, "message": exc.message, **jsonable(exc.details)}), err=True)
    raise typer.Exit(1)


def _data_option(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        typer.echo(f"--data is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None


def _priority_option(priority: str | int | None) -> int | str | None:
    return int(priority) if isinstance(priority, str) and priority.isdigit() else priority


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every step of a migration at INFO; keep the service's own lines readable.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


DatabaseOpt = Annotated[str | None, typer.Option("--database-url", help="overrides CONVEYOR_DATABASE_URL")]


@app.command()
def migrate(database_url: DatabaseOpt = None) -> None:
    """Apply schema migrations to the database (also done on first start)."""
    from conveyor.store.migrate import current_revision, upgrade

    settings = _settings(database_url=database_url)
    upgrade(settings.database_url)
    typer.echo(f"schema at revision {current_revision(settings.database_url)}")


@app.command()
def worker(
    queues: Annotated[str | None, typer.Option(help="comma-separated queues (default: CONVEYOR_QUEUES)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="jobs run at once in this process")] = None,
    database_url: DatabaseOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run a worker until SIGTERM or SIGINT; then drain (running jobs finish or are released)."""
    _configure_logging(log_level)
    settings = _settings(database_url=database_url, queues=queues, concurrency=concurrency)

    async def run() -> None:
        async with _conveyor(settings) as conveyor:
            await conveyor.worker().run(handle_signals=True)

    _run(run())


@app.command()
def enqueue(
    kind: Annotated[str, typer.Argument(help="the job type, e.g. sleep")],
    data: Annotated[str, typer.Option(help="the job's input as JSON")] = "{}",
    priority: Annotated[str | None, typer.Option(help="critical, high, medium, low, or 1-10")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Enqueue one job and print it as JSON."""
    payload, level = _data_option(data), _priority_option(priority)

    async def run() -> Job:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.enqueue(
                kind, payload, priority=level, queue=queue, idempotency_key=idempotency_key
            )

    try:
        job = _run(run())
    except ConveyorError as exc:
        _fail(exc)
    typer.echo(json.dumps(_job_json(job), indent=2))


@app.command()
def show(job_id: UUID, database_url: DatabaseOpt = None) -> None:
    """Print one job as JSON."""

    async def run() -> Job:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.get(job_id)

    try:
        typer.echo(json.dumps(_job_json(_run(run())), indent=2))
    except ConveyorError as exc:
        _fail(exc)


@app.command()
def cancel(job_id: UUID, database_url: DatabaseOpt = None) -> None:
    """Cancel a job: at once when not yet running, at its next checkpoint when running."""

    async def run() -> Job:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.cancel(job_id)

    try:
        job = _run(run())
    except ConveyorError as exc:
        _fail(exc)
    typer.echo(json.dumps(_job_json(job), indent=2))


@app.command()
def stats(database_url: DatabaseOpt = None) -> None:
    """Jobs by status."""

    async def run() -> dict[str, int]:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.counts()

    typer.echo(json.dumps(_run(run()), indent=2, sort_keys=True))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: API_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: API_PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="API processes (default: CONVEYOR_API_WORKERS or 1)")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only: run no jobs in this process")] = False,
    database_url: DatabaseOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the HTTP API, a worker and the maintenance loop (in each of --workers processes)."""
    import uvicorn

    from conveyor.api.app import bootstrap_admin_key
    from conveyor.apikeys import ApiKeys
    from conveyor.store.migrate import upgrade

    _configure_logging(log_level)
    overrides = {"database_url": database_url, "api_host": host, "api_port": port, "api_workers": workers}
    if no_worker:
        overrides["serve_worker"] = False
    # The API processes read their settings from the environment, like any conveyor process.
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"CONVEYOR_{name.upper()}"] = str(value)
    settings = _settings()
    # Once, here, before the API processes start: they would race to migrate and to bootstrap.
    if settings.auto_migrate:
        upgrade(settings.database_url)

    async def first_key() -> str | None:
        async with _conveyor(settings) as conveyor:
            return await bootstrap_admin_key(ApiKeys(conveyor.store, audit=conveyor.audit))

    key = _run(first_key())
    if key is not None:
        typer.echo("A fresh database: created an admin API key. It is shown this once; keep it safe:")
        typer.echo(f"  {key}")
    where = f"http://{settings.api_host}:{settings.api_port}"
    role = "API + worker" if settings.serve_worker else "API only"
    typer.echo(
        f"conveyor serve ({role}, {settings.api_workers} process{'es' if settings.api_workers > 1 else ''}) on"
        f" {where}  (docs: {where}/docs, database: {_safe_url(settings)})"
    )
    uvicorn.run(
        "conveyor.api.app:app_from_environment",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        workers=settings.api_workers,
        log_level=log_level.lower(),
        access_log=False,
    )


def _safe_url(settings: Settings) -> str:
    import sqlalchemy as sa

    return sa.make_url(settings.database_url).render_as_string(hide_password=True)


apikey_app = typer.Typer(
    help="Create, list and revoke API keys (straight in the database).", no_args_is_help=True, **PLAIN
)
app.add_typer(apikey_app, name="apikey")
app.add_typer(users_app, name="users")


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help="viewer, user, operator, admin or super_admin")],
    org: Annotated[str | None, typer.Option(help="the organisation the key acts in")] = None,
    study: Annotated[str | None, typer.Option(help="narrow the key to one study")] = None,
    name: Annotated[str | None, typer.Option(help="what the key is for")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a key; the key alone is printed on the last line of stdout (shown once)."""
    from conveyor.apikeys import ApiKeys

    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await ApiKeys(conveyor.store, audit=conveyor.audit).create(
                role=role, name=name or f"{role} key", org_id=org, study_id=study, created_by="cli"
            )

    try:
        new = _run(run())
    except ConveyorError as exc:
        _fail(exc)
    record = new.record
    typer.echo(f"created API key {record.id} ({record.role}, org {record.org_id or '-'}); it is shown only now:")
    typer.echo(new.key)


@apikey_app.command("list")
def apikey_list(database_url: DatabaseOpt = None) -> None:
    """Every key (never the secret), as JSON lines."""
    from conveyor.apikeys import ApiKeys

    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await ApiKeys(conveyor.store, audit=conveyor.audit).list()

    for r in _run(run()):
        typer.echo(
            json.dumps(
                {
                    "id": r.id,
                    "name": r.name,
                    "role": r.role,
                    "org_id": r.org_id,
                    "study_id": r.study_id,
                    "created_at": r.created_at.isoformat(),
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                }
            )
        )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (its second part)")], database_url: DatabaseOpt = None
) -> None:
    """Revoke a key: refused everywhere within CONVEYOR_API_KEY_CACHE_SECONDS."""
    from conveyor.apikeys import ApiKeys

    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await ApiKeys(conveyor.store, audit=conveyor.audit).revoke(key_id)

    record = _run(run())
    if record is None:
        typer.echo(f"no API key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {record.id} at {record.revoked_at.isoformat() if record.revoked_at else '?'}")


schedule_app = typer.Typer(
    help="Cron and interval schedules (straight in the database).", no_args_is_help=True, **PLAIN
)
app.add_typer(schedule_app, name="schedule")


def _schedules(database_url: str | None, act: Callable[[Schedules], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await act(conveyor.schedules)

    try:
        return _run(run())
    except ConveyorError as exc:
        _fail(exc)


def _schedule_json(s: Schedule) -> str:
    from conveyor.engine.schedules import describe

    return json.dumps(jsonable(describe(s)), indent=2)


def _when(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    shown = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if timezone != "UTC":
        shown += f" ({moment.astimezone(ZoneInfo(timezone)):%H:%M %Z})"
    return shown


@schedule_app.command("list")
def schedule_list(database_url: DatabaseOpt = None) -> None:
    """Every schedule, with its next fire time."""
    found, _total = _schedules(database_url, lambda schedules: schedules.list(limit=10_000))
    header = ("ID", "NAME", "JOB TYPE", "WHEN", "MISSED", "STATE", "NEXT RUN", "LAST RUN")
    rows = [
        (
            s.id,
            s.name,
            s.kind,
            f"{s.timing.cron} {s.timing.timezone}" if s.timing.cron else f"every {s.timing.interval_seconds:g}s",
            s.missed_policy.value,
            "enabled" if s.enabled else "paused",
            _when(s.next_run_at, s.timing.timezone),
            _when(s.last_run_at, s.timing.timezone),
        )
        for s in found
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@schedule_app.command("add")
def schedule_add(
    kind: Annotated[str, typer.Argument(help="the job type each tick enqueues")],
    cron: Annotated[str | None, typer.Option(help="cron expression, e.g. '0 2 * * *' (or --every)")] = None,
    every: Annotated[float | None, typer.Option(help="a tick every this many seconds (or --cron)")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone the cron expression is read in")] = "UTC",
    name: Annotated[str | None, typer.Option(help="what it is for (default: the job type)")] = None,
    data: Annotated[str, typer.Option(help="the job's input as JSON")] = "{}",
    priority: Annotated[str | None, typer.Option(help="critical, high, medium, low, or 1-10")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    missed: Annotated[str, typer.Option(help="missed ticks: skip, run_once or run_all")] = "skip",
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    org: Annotated[str | None, typer.Option(help="the organisation it belongs to (who sees it over HTTP)")] = None,
    study: Annotated[str | None, typer.Option(help="narrow it to one study")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a schedule and print it as JSON (with its next fire time)."""
    from conveyor.engine.schedules import ScheduleSpec
    from conveyor.model import Owner

    spec = ScheduleSpec(
        name=name or kind,
        job_type=kind,
        data=_data_option(data),
        cron=cron,
        interval_seconds=every,
        timezone=timezone,
        priority=_priority_option(priority),
        queue=queue,
        enabled=not paused,
        missed_policy=missed,
    )
    owner = Owner(org_id=org, study_id=study, created_by="cli")
    schedule = _schedules(database_url, lambda schedules: schedules.create(spec, owner=owner))
    typer.echo(_schedule_json(schedule))


ScheduleId = Annotated[str, typer.Argument(help="the schedule's id (conveyor schedule list)")]


@schedule_app.command("pause")
def schedule_pause(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """No ticks until resumed."""
    schedule = _schedules(database_url, lambda schedules: schedules.pause(schedule_id))
    typer.echo(_schedule_json(schedule))


@schedule_app.command("resume")
def schedule_resume(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """Ticks again, from the first one after now."""
    schedule = _schedules(database_url, lambda schedules: schedules.resume(schedule_id))
    typer.echo(_schedule_json(schedule))


@schedule_app.command("delete")
def schedule_delete(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """Delete a schedule (the jobs it made stay)."""
    schedule = _schedules(database_url, lambda schedules: schedules.delete(schedule_id))
    typer.echo(f"deleted schedule {schedule.id} ({schedule.name})")


audit_app = typer.Typer(
    help="The audit trail: verify its hash chain, checkpoint its head.", no_args_is_help=True, **PLAIN
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(database_url: DatabaseOpt = None) -> None:
    """Walk the whole chain; print the verdict as JSON; exit 1 if it is broken."""

    async def run() -> dict[str, Any]:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return (await conveyor.audit.verify()).as_json()

    verdict = _run(run())
    typer.echo(json.dumps(verdict, indent=2))
    if not verdict["ok"]:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(database_url: DatabaseOpt = None) -> None:
    """Checkpoint the chain's head now (signed when CONVEYOR_AUDIT_KEY is set)."""

    async def run() -> dict[str, Any] | None:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            made = await conveyor.audit.checkpoint()
        return None if made is None else {"seq": made.seq, "hash": made.hash, "signed": made.signature is not None}

    typer.echo(json.dumps(_run(run())))


keys_app = typer.Typer(
    help="Encryption at rest for sensitive job types: new keys, rotation.", no_args_is_help=True, **PLAIN
)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new() -> None:
    """Print a fresh AES-256 key (base64) for CONVEYOR_ENCRYPTION_KEYS; it is stored nowhere."""
    from conveyor.crypto import Keyring

    typer.echo(Keyring.new_key())


@keys_app.command("rotate")
def keys_rotate(database_url: DatabaseOpt = None) -> None:
    """Re-seal every value sealed with another key than the current one (CONVEYOR_ENCRYPTION_KEY_ID),
    a batch at a time, while workers and the API run on. Prints the counts as JSON."""
    from conveyor.engine.sealing import rotate_keys

    async def run() -> dict[str, int]:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await rotate_keys(conveyor.store, conveyor.engine.sealing)

    try:
        typer.echo(json.dumps(_run(run())))
    except ConveyorError as exc:
        _fail(exc)


batch_app = typer.Typer(help="Batches of jobs (straight in the database).", no_args_is_help=True, **PLAIN)
app.add_typer(batch_app, name="batch")


def _batches(database_url: str | None, act: Callable[[Batches], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await act(conveyor.batches)

    try:
        return _run(run())
    except ConveyorError as exc:
        _fail(exc)


def _batch_json(view: BatchView) -> str:
    from conveyor.engine.batches import describe

    return json.dumps(jsonable(describe(view)), indent=2)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _parse_batch_id(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        typer.echo(json.dumps({"error": "BATCH_NOT_FOUND", "message": f"batch {raw} not found"}), err=True)
        raise typer.Exit(1) from None


@batch_app.command("list")
def batch_list(
    limit: Annotated[int, typer.Option(help="the newest this many")] = 50, database_url: DatabaseOpt = None
) -> None:
    """The newest batches with their overall status and counts."""
    views, total = _batches(database_url, lambda batches: batches.list(limit=limit))
    header = ("ID", "NAME", "STATUS", "LIMIT", "FAIL FAST", "DONE", "RUNNING", "WAITING", "FAILED", "CREATED")
    rows = []
    for v in views:
        counts = v.counts
        waiting = counts["scheduled"] + counts["pending"]
        failed = counts["failed"] + counts["timeout"]
        rows.append(
            (v.batch.id, v.batch.name, v.status, v.batch.parallel_limit or "-", "yes" if v.batch.fail_fast else "no",
             f"{counts['completed']}/{v.total}", counts["running"], waiting, failed,
             f"{v.batch.created_at:%Y-%m-%d %H:%M:%S}")
        )  # fmt: skip
    _table(header, rows)
    if total > len(views):
        typer.echo(f"({len(views)} of {total}; --limit shows more)")


@batch_app.command("submit")
def batch_submit(
    jobs: Annotated[
        str, typer.Option(help='the jobs as a JSON list: [{"type": "sleep", "data": {…}, "priority": 8}, …]')
    ],
    name: Annotated[str, typer.Option(help="what the batch is for")] = "batch",
    parallel_limit: Annotated[
        int | None, typer.Option(help="most of its jobs running at once (default: no limit)")
    ] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="the first failure cancels the rest")] = False,
    org: Annotated[str | None, typer.Option(help="the organisation it belongs to (who sees it over HTTP)")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Submit a batch (all its jobs or none) and print it as JSON."""
    from conveyor.engine import JobRequest
    from conveyor.model import Owner

    given = _data_option(jobs)
    if not isinstance(given, list) or not all(isinstance(j, dict) and "type" in j for j in given):
        typer.echo('--jobs must be a JSON list of objects with a "type" (and "data", "priority", "queue")', err=True)
        raise typer.Exit(2)
    requests = [
        JobRequest(j["type"], j.get("data", {}), priority=_priority_option(j.get("priority")), queue=j.get("queue"))
        for j in given
    ]
    owner = Owner(org_id=org, created_by="cli")
    view = _batches(
        database_url,
        lambda batches: batches.submit(name, requests, parallel_limit=parallel_limit, fail_fast=fail_fast, owner=owner),
    )
    typer.echo(_batch_json(view))


BatchId = Annotated[str, typer.Argument(help="the batch's id (conveyor batch list)")]


@batch_app.command("show")
def batch_show(batch_id: BatchId, database_url: DatabaseOpt = None) -> None:
    """One batch as JSON: status, counts by status, each job's status."""
    view = _batches(database_url, lambda batches: batches.get(_parse_batch_id(batch_id)))
    typer.echo(_batch_json(view))


@batch_app.command("cancel")
def batch_cancel(batch_id: BatchId, database_url: DatabaseOpt = None) -> None:
    """Cancel a batch's unfinished jobs (running ones at their next checkpoint); print it as JSON."""
    view = _batches(database_url, lambda batches: batches.cancel(_parse_batch_id(batch_id)))
    typer.echo(_batch_json(view))


cache_app = typer.Typer(help="The result cache (straight in the database).", no_args_is_help=True, **PLAIN)
app.add_typer(cache_app, name="cache")

OrgOpt = Annotated[str | None, typer.Option(help="one organisation's entries (default: every organisation's)")]


def _cache_scope(org: str | None) -> Any:
    from conveyor.model import Visibility

    return Visibility(org_id=org) if org is not None else None


@cache_app.command("stats")
def cache_stats(org: OrgOpt = None, database_url: DatabaseOpt = None) -> None:
    """Cached results (fresh within CACHE_TTL), their size, oldest and newest, and the hit rate."""

    async def run() -> Any:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.cache.stats(visible_to=_cache_scope(org))

    stats = _run(run())
    shown = {
        "entries": stats.entries,
        "hit_rate": stats.hit_rate,
        "hits": stats.hits,
        "misses": stats.misses,
        "size_bytes": stats.size_bytes,
        "oldest": stats.oldest.isoformat() if stats.oldest else None,
        "newest": stats.newest.isoformat() if stats.newest else None,
    }
    typer.echo(json.dumps(shown, indent=2))


@cache_app.command("clear")
def cache_clear(
    yes: Annotated[bool, typer.Option("--yes", help="confirm: clearing cannot be undone")] = False,
    org: OrgOpt = None,
    label: Annotated[list[str] | None, typer.Option(help="only results of jobs with this label, key:value")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Forget completed results (their jobs stay): identical requests run again."""
    if not yes:
        typer.echo("clearing the cache cannot be undone: add --yes to confirm", err=True)
        raise typer.Exit(2)
    labels = {}
    for pair in label or []:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            typer.echo(f"--label {pair!r}: use key:value", err=True)
            raise typer.Exit(2)
        labels[key] = value

    async def run() -> int:
        async with _conveyor(_settings(database_url=database_url)) as conveyor:
            return await conveyor.cache.clear(visible_to=_cache_scope(org), labels=labels)

    cleared = _run(run())
    typer.echo(json.dumps({"cleared_results": cleared}))


def main() -> None:
    app()


__all__ = ["app", "main"]
