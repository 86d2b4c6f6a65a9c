"""`conveyor batches …` over HTTP; the older database-direct `conveyor batch …` (hidden from
--help, kept for existing scripts)."""

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, group, plain_table, print_json, print_table, status, when
from conveyor.cli.remote import call

if TYPE_CHECKING:
    from conveyor.client import Batch
    from conveyor.engine.batches import Batches, BatchView

batches_app = group("Batches of jobs on the server: submit, list, show, cancel.")
batch_app = group("Batches of jobs, straight in the database (older form of `batches`).")

BatchId = Annotated[str, typer.Argument(help="the batch's id (conveyor batches list)")]
JobsOpt = Annotated[
    str, typer.Option(help='the jobs as a JSON list, or @file: [{"type": "sleep", "data": {…}, "priority": 8}, …]')
]
NameOpt = Annotated[str, typer.Option(help="what the batch is for")]
LimitOpt = Annotated[int | None, typer.Option(help="most of its jobs running at once (default: no limit)")]
FailFastOpt = Annotated[bool, typer.Option("--fail-fast", help="the first failure cancels the rest")]


def register(app: typer.Typer) -> None:
    app.add_typer(batches_app, name="batches")
    app.add_typer(batch_app, name="batch", hidden=True)


def _jobs(text: str) -> list[dict[str, Any]]:
    given = local.parse_json(text, "--jobs")
    if not isinstance(given, list) or not all(isinstance(j, dict) and "type" in j for j in given):
        stop(Exit.USAGE, '--jobs must be a JSON list of objects with a "type" (and "data", "priority", "queue")')
    return given


# --- over HTTP -----------------------------------------------------------------------------------------


def _counts(b: "Batch") -> tuple[str, int, int, int]:
    c = b.counts
    waiting = c.get("scheduled", 0) + c.get("pending", 0)
    failed = c.get("failed", 0) + c.get("timeout", 0)
    return f"{c.get('completed', 0)}/{b.total}", c.get("running", 0), waiting, failed


def _print_batch(b: "Batch") -> None:
    done, running, waiting, failed = _counts(b)
    typer.echo(
        f"batch {b.id} ({b.name}): {b.status}, {done} done, {running} running, {waiting} waiting, {failed} failed"
    )
    if b.jobs:
        print_table(("JOB ID", "TYPE", "STATUS", "PROGRESS"),
                    [(j.id, j.type, status(j.status), f"{j.progress:.0f}%") for j in b.jobs])  # fmt: skip


@batches_app.command("list")
def batches_list(
    limit: Annotated[int, typer.Option(help="the newest this many")] = 50,
    page: Annotated[int, typer.Option(help="which page")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """The newest batches with their overall status and counts."""
    found = call(lambda c: c.batches.list(page=page, page_size=limit))
    if as_json:
        print_json(found.items)
        return
    header = ("ID", "NAME", "STATUS", "LIMIT", "FAIL FAST", "DONE", "RUNNING", "WAITING", "FAILED", "CREATED")
    rows = [(b.id, b.name, status(b.status), b.parallel_limit or "-", "yes" if b.fail_fast else "no", *_counts(b),
             when(b.created_at)) for b in found.items]  # fmt: skip
    print_table(header, rows)
    if found.has_next:
        typer.echo(f"({len(found.items)} of {found.total}; --page or --limit for more)")


@batches_app.command("submit")
def batches_submit(
    jobs: JobsOpt,
    name: NameOpt = "batch",
    parallel_limit: LimitOpt = None,
    fail_fast: FailFastOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a batch: all its jobs or none."""
    items = _jobs(jobs)
    made = call(lambda c: c.batches.create(name, items, parallel_limit=parallel_limit, fail_fast=fail_fast))  # type: ignore[arg-type]
    print_json(made) if as_json else _print_batch(made)


@batches_app.command("show")
def batches_show(batch_id: BatchId, as_json: JsonOpt = False) -> None:
    """One batch: status, counts by status, each job's status."""
    found = call(lambda c: c.batches.get(batch_id))
    print_json(found) if as_json else _print_batch(found)


@batches_app.command("cancel")
def batches_cancel(batch_id: BatchId, as_json: JsonOpt = False) -> None:
    """Cancel a batch's unfinished jobs (running ones at their next checkpoint)."""
    found = call(lambda c: c.batches.cancel(batch_id))
    print_json(found) if as_json else _print_batch(found)


# --- straight in the database ------------------------------------------------------------------------------


def _batches(database_url: str | None, act: Callable[["Batches"], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with local.conveyor(database_url) as conveyor:
            return await act(conveyor.batches)

    return local.run(run())


def _batch_json(view: "BatchView") -> str:
    from conveyor.engine.batches import describe

    return json.dumps(local.jsonable(describe(view)), indent=2)


def _batch_uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        typer.echo(json.dumps({"error": "BATCH_NOT_FOUND", "message": f"batch {raw} not found"}), err=True)
        stop(Exit.NOT_FOUND)


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
    plain_table(header, rows)
    if total > len(views):
        typer.echo(f"({len(views)} of {total}; --limit shows more)")


@batch_app.command("submit")
def batch_submit(
    jobs: JobsOpt,
    name: NameOpt = "batch",
    parallel_limit: LimitOpt = None,
    fail_fast: FailFastOpt = False,
    org: Annotated[str | None, typer.Option(help="the organisation it belongs to (who sees it over HTTP)")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Submit a batch (all its jobs or none) and print it as JSON."""
    from conveyor.engine import JobRequest
    from conveyor.model import Owner

    requests = [
        JobRequest(j["type"], j.get("data", {}), priority=local.priority(j.get("priority")), queue=j.get("queue"))
        for j in _jobs(jobs)
    ]
    owner = Owner(org_id=org, created_by="cli")
    view = _batches(
        database_url,
        lambda batches: batches.submit(name, requests, parallel_limit=parallel_limit, fail_fast=fail_fast, owner=owner),
    )
    typer.echo(_batch_json(view))


@batch_app.command("show")
def batch_show(batch_id: BatchId, database_url: DatabaseOpt = None) -> None:
    """One batch as JSON: status, counts by status, each job's status."""
    wanted = _batch_uuid(batch_id)
    typer.echo(_batch_json(_batches(database_url, lambda batches: batches.get(wanted))))


@batch_app.command("cancel")
def batch_cancel(batch_id: BatchId, database_url: DatabaseOpt = None) -> None:
    """Cancel a batch's unfinished jobs (running ones at their next checkpoint); print it as JSON."""
    wanted = _batch_uuid(batch_id)
    typer.echo(_batch_json(_batches(database_url, lambda batches: batches.cancel(wanted))))
