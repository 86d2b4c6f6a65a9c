"""`conveyor backup`, `conveyor restore FILE`, `conveyor verify-backup FILE`: encrypted backups
of the whole database, on the database directly (operators; see conveyor.backup).

Restore works on a database that may be empty, so it never migrates it or starts the
runtime: it needs only the encryption keys (CONVEYOR_ENCRYPTION_KEYS) and the target's URL.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt

if TYPE_CHECKING:
    from conveyor.backup import Backups
    from conveyor.settings import Settings

FileArg = Annotated[Path, typer.Argument(help="a .cvbak file (its .manifest.json beside it is checked when there)")]


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
    app.command("verify-backup")(verify_backup)


def _backups(settings: "Settings") -> "Backups":
    from conveyor.backup import Backups
    from conveyor.crypto import Keyring

    try:
        keyring = Keyring.from_settings(settings.encryption_keys, settings.encryption_key_id)
    except ValueError as exc:
        stop(Exit.USAGE, f"encryption keys: {exc}")
    return Backups(
        settings.database_url,
        keyring=keyring,
        root=settings.backup_root_path,
        audit_key=settings.audit_key,
        pg_bin=settings.backup_pg_bin,
    )


def backup(
    path: Annotated[str, typer.Option(help="a directory under the backup root (CONVEYOR_BACKUP_ROOT)")] = ".",
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="skip restoring the backup into a scratch database")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Back up the whole database now (as the `backup` job does), encrypted with the newest key;
    prints the manifest's summary as JSON."""

    async def work() -> dict[str, Any]:
        async with local.conveyor(database_url) as conveyor:
            backups = conveyor.backups
            result = await backups.take(backups.directory(path), verify=not no_verify)
            return result.summary(backups.root)

    typer.echo(json.dumps(_run(work), indent=2))


def restore(
    file: FileArg,
    force: Annotated[bool, typer.Option("--force", help="replace the tables of a target that holds some")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Restore a backup into the database (CONVEYOR_DATABASE_URL or --database-url), then check
    its row counts and audit head against the manifest and verify its audit chain. An empty
    target only, unless --force. Stop the workers and API first."""
    backups = _backups_for(file, database_url)

    async def work() -> dict[str, Any]:
        done = await backups.restore(file, backups.database_url, force=force)
        m = done.manifest
        return {"restored": str(file), "backup_id": m["backup_id"], "created_at": m["created_at"],
                "dialect": m["dialect"], "schema_revision": m["schema_revision"], "rows": done.rows,
                "audit": done.audit}  # fmt: skip

    typer.echo(json.dumps(_run(work), indent=2))


def verify_backup(file: FileArg, database_url: DatabaseOpt = None) -> None:
    """Restore a backup into a scratch database beside the configured one (a temporary SQLite
    file, or a PostgreSQL database created and dropped) and check it; the database itself is
    not touched. Prints the manifest as JSON."""
    backups = _backups_for(file, database_url)

    async def work() -> dict[str, Any]:
        return await backups.verify(file)

    typer.echo(json.dumps(_run(work), indent=2))


def _backups_for(file: Path, database_url: str | None) -> "Backups":
    if not file.is_file():
        stop(Exit.NOT_FOUND, f"no backup file at {file}")
    return _backups(local.settings(database_url=database_url))


def _run(work: Any) -> Any:
    """`work()` run; a verification that failed ends the command with 1 (as a broken audit chain
    does), any other core error with its usual code (local.run)."""
    from conveyor.backup import VerificationFailed

    async def checked() -> Any:
        try:
            return await work(), None
        except VerificationFailed as exc:
            return None, exc

    done, failed = local.run(checked())
    if failed is not None:
        shown = {"error": failed.code, "message": failed.message, **failed.details}
        typer.echo(json.dumps(shown, default=str), err=True)
        raise typer.Exit(int(Exit.ERROR))
    return done
