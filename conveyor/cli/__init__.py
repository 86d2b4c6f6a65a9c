"""The `conveyor` command: migrate, worker, enqueue, job inspection."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Annotated, Any
from uuid import UUID

import typer

from conveyor.errors import ConveyorError
from conveyor.jobtypes import jsonable
from conveyor.model import Job
from conveyor.runtime import Conveyor
from conveyor.settings import Settings

app = typer.Typer(help="conveyor: durable background jobs.", no_args_is_help=True, add_completion=False)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


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
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _settings(database_url=database_url, queues=queues, concurrency=concurrency)

    async def run() -> None:
        async with Conveyor.from_settings(settings) as conveyor:
            await conveyor.worker().run(handle_signals=True)

    asyncio.run(run())


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
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        typer.echo(f"--data is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    level: int | str | None = int(priority) if priority and priority.isdigit() else priority

    async def run() -> Job:
        async with Conveyor.from_settings(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.enqueue(
                kind, payload, priority=level, queue=queue, idempotency_key=idempotency_key
            )

    try:
        job = asyncio.run(run())
    except ConveyorError as exc:
        _fail(exc)
    typer.echo(json.dumps(_job_json(job), indent=2))


@app.command()
def show(job_id: UUID, database_url: DatabaseOpt = None) -> None:
    """Print one job as JSON."""

    async def run() -> Job:
        async with Conveyor.from_settings(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.get(job_id)

    try:
        typer.echo(json.dumps(_job_json(asyncio.run(run())), indent=2))
    except ConveyorError as exc:
        _fail(exc)


@app.command()
def cancel(job_id: UUID, database_url: DatabaseOpt = None) -> None:
    """Cancel a job: at once when not yet running, at its next checkpoint when running."""

    async def run() -> Job:
        async with Conveyor.from_settings(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.cancel(job_id)

    try:
        job = asyncio.run(run())
    except ConveyorError as exc:
        _fail(exc)
    typer.echo(json.dumps(_job_json(job), indent=2))


@app.command()
def stats(database_url: DatabaseOpt = None) -> None:
    """Jobs by status."""

    async def run() -> dict[str, int]:
        async with Conveyor.from_settings(_settings(database_url=database_url)) as conveyor:
            return await conveyor.engine.counts()

    typer.echo(json.dumps(asyncio.run(run()), indent=2, sort_keys=True))


def main() -> None:
    app()


__all__ = ["app", "main"]
