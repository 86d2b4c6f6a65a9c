"""`conveyor medication …`: the drug interaction table interaction_check reads (operator
data, straight in the database): load one from CSV files, show the one in force."""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import group

medication_app = group("Medication (seed 001) operator data: the drug interaction table.")


@medication_app.command("load-interactions")
def load_interactions(
    interactions: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="CSV: drug_a, drug_b, severity[, description, …]"
        ),
    ],
    name: Annotated[str, typer.Option(help="the table's name, shown in every check's result")],
    version: Annotated[str, typer.Option(help="the table's version, shown in every check's result")],
    synonyms: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, readable=True, help="CSV: name, ingredient (brands, spellings)"),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Validate the files and replace the interaction table with them in one transaction
    (nothing changes when a row is wrong: every problem is listed, with its line). Prints
    the table's name, version, sha256 and counts as JSON; an audit record names them too."""
    from conveyor.interactions import info_json

    async def run() -> dict[str, Any]:
        async with local.conveyor(database_url) as conveyor:
            info = await conveyor.interactions.load(interactions, synonyms, name=name, version=version)
            return info_json(info)

    typer.echo(json.dumps(local.run(run())))


@medication_app.command("interactions")
def show_interactions(database_url: DatabaseOpt = None) -> None:
    """The interaction table in force (name, version, sha256, counts, when and by whom
    loaded) as JSON; exit 3 when none is loaded."""
    from conveyor.cli.exits import Exit, stop
    from conveyor.interactions import info_json

    async def run() -> dict[str, Any] | None:
        async with local.conveyor(database_url) as conveyor:
            info = await conveyor.interactions.current()
            return info_json(info) if info else None

    shown = local.run(run())
    if shown is None:
        stop(Exit.NOT_FOUND, "no drug interaction table is loaded (conveyor medication load-interactions)")
    typer.echo(json.dumps(shown))
