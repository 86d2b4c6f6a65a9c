"""`conveyor keys …`: encryption at rest for sensitive job types (on the database)."""

import json

import typer

from conveyor.cli import local
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import group

keys_app = group("Encryption at rest for sensitive job types: new keys, rotation.")


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
        async with local.conveyor(database_url) as conveyor:
            return await rotate_keys(conveyor.store, conveyor.engine.sealing)

    typer.echo(json.dumps(local.run(run())))
