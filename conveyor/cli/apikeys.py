"""`conveyor apikey create|list|revoke`: over HTTP (an admin's key), or on the database (the
rule in remote.py; how the first key of a fresh install is made)."""

import json
from typing import Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, group, print_json, print_table, when
from conveyor.cli.remote import call, use_database
from conveyor.cli.signing import MeaningOpt, SignAsOpt, signed_call

apikey_app = group("Create, list and revoke API keys.")


def _keys(conveyor: Any) -> Any:
    from conveyor.apikeys import ApiKeys

    return ApiKeys(conveyor.store, audit=conveyor.audit)


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help="viewer, user, operator, admin or super_admin")],
    org: Annotated[str | None, typer.Option(help="the organisation the key acts in")] = None,
    study: Annotated[str | None, typer.Option(help="narrow the key to one study")] = None,
    name: Annotated[str | None, typer.Option(help="what the key is for")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="over HTTP: print the new key (secret included) as JSON")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a key; the key alone is printed on the last line of stdout (shown once)."""
    if use_database(database_url):

        async def run() -> Any:
            async with local.conveyor(database_url) as conveyor:
                return await _keys(conveyor).create(
                    role=role, name=name or f"{role} key", org_id=org, study_id=study, created_by="cli"
                )

        new = local.run(run())
        record, key = new.record, new.key
        key_id, key_role, key_org = record.id, record.role, record.org_id
    else:
        made = call(lambda c: c.api_keys.create(name or f"{role} key", role, org_id=org, study_id=study))
        if as_json:
            print_json(made)
            return
        key, key_id, key_role, key_org = made.key, made.id, made.role, made.org_id
    typer.echo(f"created API key {key_id} ({key_role}, org {key_org or '-'}); it is shown only now:")
    typer.echo(key)


@apikey_app.command("list")
def apikey_list(as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """Every key the caller may manage (never the secret). On the database: JSON lines."""
    if use_database(database_url):

        async def run() -> Any:
            async with local.conveyor(database_url) as conveyor:
                return await _keys(conveyor).list()

        for r in local.run(run()):
            revoked_at = r.revoked_at.isoformat() if r.revoked_at else None
            typer.echo(json.dumps({
                "id": r.id, "name": r.name, "role": r.role, "org_id": r.org_id, "study_id": r.study_id,
                "created_at": r.created_at.isoformat(), "revoked_at": revoked_at,
            }))  # fmt: skip
        return
    found = call(lambda c: c.api_keys.list())
    if as_json:
        print_json(found)
        return
    rows = [(k.id, k.name, k.role, k.org_id or "-", k.study_id or "-", when(k.created_at),
             "active" if k.active else f"[red]revoked {when(k.revoked_at)}[/]") for k in found]  # fmt: skip
    print_table(("ID", "NAME", "ROLE", "ORG", "STUDY", "CREATED", "STATE"), rows)


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (its second part)")],
    sign_as: SignAsOpt = None,
    meaning: MeaningOpt = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke a key: refused everywhere within CONVEYOR_API_KEY_CACHE_SECONDS. Over HTTP the
    server may demand an e-signature (--sign-as, --meaning)."""
    if use_database(database_url):

        async def run() -> Any:
            async with local.conveyor(database_url) as conveyor:
                return await _keys(conveyor).revoke(key_id)

        record = local.run(run())
        if record is None:
            typer.echo(json.dumps({"error": "API_KEY_NOT_FOUND", "message": f"no API key {key_id}"}), err=True)
            stop(Exit.NOT_FOUND)
        revoked_at = record.revoked_at
    else:
        found = signed_call(lambda c, signature: c.api_keys.revoke(key_id, signature=signature), sign_as, meaning)
        if as_json:
            print_json(found)
            return
        revoked_at = found.revoked_at
    typer.echo(f"revoked {key_id} at {revoked_at.isoformat() if revoked_at else '?'}")
