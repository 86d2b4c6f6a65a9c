"""`conveyor audit …`: read, export and verify the audit trail over HTTP (admins); verify on
the database too (the rule in remote.py); checkpoint its head on the database."""

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, group, print_json, print_table, when
from conveyor.cli.remote import call, use_database

audit_app = group("The audit trail: read, export, verify its hash chain, checkpoint its head.")

ActorOpt = Annotated[str | None, typer.Option(help="the actor's user id")]
ActionOpt = Annotated[str | None, typer.Option(help="e.g. job.created")]
ObjectTypeOpt = Annotated[str | None, typer.Option(help="job, schedule, queue, api_key…")]
ObjectIdOpt = Annotated[str | None, typer.Option(help="one object's id")]
SinceOpt = Annotated[datetime | None, typer.Option(help="recorded at or after (ISO 8601, UTC if no zone)")]
UntilOpt = Annotated[datetime | None, typer.Option(help="recorded before (ISO 8601, UTC if no zone)")]


def _filters(**given: Any) -> dict[str, Any]:
    from datetime import UTC

    found = {}
    for name, value in given.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value is not None:
            found[name] = value
    return found


@audit_app.command("list")
def audit_list(
    actor: ActorOpt = None,
    action: ActionOpt = None,
    object_type: ObjectTypeOpt = None,
    object_id: ObjectIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(help="a page of this many, oldest first")] = 50,
    page: Annotated[int, typer.Option(help="which page")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Records of the audit trail, oldest first."""
    where = _filters(actor=actor, action=action, object_type=object_type, object_id=object_id, since=since, until=until)
    found = call(lambda c: c.audit.list(page=page, page_size=limit, **where))
    if as_json:
        print_json(found.items)
        return
    rows = [(r.seq, when(r.recorded_at), r.actor_id or "-", r.action, f"{r.object_type or '-'} {r.object_id or ''}")
            for r in found.items]  # fmt: skip
    print_table(("SEQ", "RECORDED", "ACTOR", "ACTION", "OBJECT"), rows)
    if found.has_next:
        typer.echo(f"({len(found.items)} of {found.total}; --page for more)")


@audit_app.command("export")
def audit_export(
    format: Annotated[str, typer.Option(help="csv or json")] = "json",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write to this file (default: stdout)")] = None,
    actor: ActorOpt = None,
    action: ActionOpt = None,
    object_type: ObjectTypeOpt = None,
    object_id: ObjectIdOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
) -> None:
    """Every matching record, as CSV or a JSON array (the export is itself recorded)."""
    if format not in ("csv", "json"):
        stop(Exit.USAGE, f"--format {format!r}: csv or json")
    where = _filters(actor=actor, action=action, object_type=object_type, object_id=object_id, since=since, until=until)
    text = call(lambda c: c.audit.export(format=format, **where))
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """Walk the whole chain; exit 1 if it is broken. On the database (--database-url, or
    CONVEYOR_DATABASE_URL with no server configured) the verdict prints as JSON."""
    if use_database(database_url):

        async def run() -> dict[str, Any]:
            async with local.conveyor(database_url) as conveyor:
                return (await conveyor.audit.verify()).as_json()

        verdict = local.run(run())
        typer.echo(json.dumps(verdict, indent=2))
        ok = bool(verdict["ok"])
    else:
        found = call(lambda c: c.audit.verify())
        if as_json:
            print_json(found)
        elif found.ok:
            typer.echo(f"intact: {found.records} records, head {found.head_seq}, {found.checkpoints} checkpoints")
        else:
            typer.echo(f"BROKEN at record {found.broken_seq}: {found.problem}")
        for warning in [] if as_json else found.warnings:
            typer.echo(f"warning: {warning}", err=True)
        ok = found.ok
    if not ok:
        raise typer.Exit(int(Exit.ERROR))


@audit_app.command("checkpoint")
def audit_checkpoint(database_url: DatabaseOpt = None) -> None:
    """Checkpoint the chain's head now (signed when CONVEYOR_AUDIT_KEY is set); on the database."""

    async def run() -> dict[str, Any] | None:
        async with local.conveyor(database_url) as conveyor:
            made = await conveyor.audit.checkpoint()
        return None if made is None else {"seq": made.seq, "hash": made.hash, "signed": made.signature is not None}

    typer.echo(json.dumps(local.run(run())))
