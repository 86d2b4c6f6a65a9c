"""The commands that run conveyor or prepare its database: serve, worker, migrate. They work
on the database directly (CONVEYOR_DATABASE_URL or --database-url)."""

import os
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli import local
from conveyor.cli.local import DatabaseOpt

if TYPE_CHECKING:
    from conveyor.settings import Settings

LogLevelOpt = Annotated[str, typer.Option(help="debug, info, warning, error")]


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(worker)
    app.command()(migrate)


def migrate(
    database_url: DatabaseOpt = None,
    recount: Annotated[
        bool,
        typer.Option(
            "--recount",
            help="then count the jobs afresh into PostgreSQL's job counts (for counts that drifted: processes"
            " of a version before migration 0017 storing jobs after it ran, rows written by hand); jobs may"
            " come and go meanwhile",
        ),
    ] = False,
) -> None:
    """Apply schema migrations to the database (also done on first start)."""
    from conveyor.store.migrate import current_revision, upgrade

    given = local.settings(database_url=database_url)
    local.wait_for_database(given)
    upgrade(given.database_url)
    typer.echo(f"schema at revision {current_revision(given.database_url)}")
    if recount and not given.database_url.startswith("postgresql"):
        typer.echo("SQLite counts the jobs table itself: nothing to recount")
    elif recount:

        async def recount_rollups() -> int:
            async with local.conveyor(given=given) as conveyor:
                groups = await conveyor.store.recount_rollups()
                await conveyor.engine.audit.record("rollups.recounted", "job_counts", after={"groups": groups})
                return groups

        typer.echo(f"job counts recounted: {local.run(recount_rollups())} groups")


def worker(
    queues: Annotated[str | None, typer.Option(help="comma-separated queues (default: CONVEYOR_QUEUES)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="jobs run at once in this process")] = None,
    database_url: DatabaseOpt = None,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run a worker until SIGTERM or SIGINT; then drain (running jobs finish or are released)."""
    _exit_at_once_on_sigterm()
    local.configure_logging(log_level)
    given = local.settings(database_url=database_url, queues=queues, concurrency=concurrency)
    local.wait_for_database(given)

    async def run() -> None:
        from conveyor.gcpause import freeze_startup

        async with local.conveyor(given=given) as conveyor:
            worker = conveyor.worker()
            freeze_startup()  # full collections stalled claims and pickups for 50-130 ms each
            await worker.run(handle_signals=True)

    local.run(run(), as_person=False)


def _exit_at_once_on_sigterm() -> None:
    """Until the worker's own handler is in place (after its imports, the wait for its database
    and its connections: a second or more), SIGTERM ends the process at once with exit 0, as a
    drain with nothing to drain would: it holds no job yet. Python's default dies of the signal
    (143), which a supervisor may count as a crash."""

    def exit_now(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, exit_now)


def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: API_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: API_PORT or 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="API processes (default: CONVEYOR_API_WORKERS or 1)")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="API only: run no jobs in this process")] = False,
    database_url: DatabaseOpt = None,
    log_level: LogLevelOpt = "info",
) -> None:
    """Run the HTTP API, a worker and the maintenance loop (in each of --workers processes)."""
    import uvicorn

    from conveyor.api.app import bootstrap_admin_key
    from conveyor.apikeys import ApiKeys
    from conveyor.store.migrate import upgrade

    local.configure_logging(log_level)
    overrides = {"database_url": database_url, "api_host": host, "api_port": port, "api_workers": workers}
    if no_worker:
        overrides["serve_worker"] = False
    # The API processes read their settings from the environment, like any conveyor process.
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"CONVEYOR_{name.upper()}"] = str(value)
    given = local.settings()
    local.wait_for_database(given)
    # Once, here, before the API processes start: they would race to migrate and to bootstrap.
    if given.auto_migrate:
        upgrade(given.database_url)

    async def first_key() -> str | None:
        async with local.conveyor(given=given) as conveyor:
            return await bootstrap_admin_key(ApiKeys(conveyor.store, audit=conveyor.audit))

    key = local.run(first_key(), as_person=False)
    if key is not None:
        typer.echo("A fresh database: created an admin API key. It is shown this once; keep it safe:")
        typer.echo(f"  {key}")
    where = f"http://{given.api_host}:{given.api_port}"
    role = "API + worker" if given.serve_worker else "API only"
    typer.echo(
        f"conveyor serve ({role}, {given.api_workers} process{'es' if given.api_workers > 1 else ''}) on"
        f" {where}  (docs: {where}/docs, database: {_safe_url(given)})"
    )
    uvicorn.run(
        "conveyor.api.app:app_from_environment",
        factory=True,
        host=given.api_host,
        port=given.api_port,
        workers=given.api_workers,
        log_level=log_level.lower(),
        access_log=False,
    )


def _safe_url(given: "Settings") -> str:
    import sqlalchemy as sa

    return sa.make_url(given.database_url).render_as_string(hide_password=True)
