"""How commands show what they got: rich tables coloured by status for people, JSON for
scripts (`--json`)."""

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")]

STATUS_STYLES = {
    "scheduled": "cyan",
    "pending": "yellow",
    "running": "bold blue",
    "completed": "green",
    "failed": "bold red",
    "cancelled": "magenta",
    "timeout": "red",
}


def console(*, stderr: bool = False) -> "Console":
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped or captured: wide enough that ids never wrap, and no colour codes.
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def status(value: Any) -> str:
    text = str(getattr(value, "value", value))
    style = STATUS_STYLES.get(text)
    return f"[{style}]{text}[/]" if style else text


def when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def ago(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = max(0.0, (datetime.now(UTC) - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def table(title: str | None, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> "Table":
    from rich.table import Table

    shown = Table(title=title, title_justify="left", header_style="bold")
    for name in header:
        shown.add_column(name, no_wrap=name in ("ID", "JOB ID"))
    for row in rows:
        shown.add_row(*(str(cell) for cell in row))
    return shown


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    console().print(table(title, header, rows))


def plain_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns padded with spaces, no colour: the older database-direct commands' tables."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def dump(value: Any) -> Any:
    """A client model (or a list of them) as plain JSON values."""
    if isinstance(value, list):
        return [dump(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(dump(value), indent=2))


# Help and errors in click's plain format: typer's rich formatting imports rich's markdown
# stack first (~110 ms of the ~300 ms budget for `conveyor --help`).
PLAIN: dict[str, Any] = {"rich_markup_mode": None, "pretty_exceptions_enable": False}


def group(help: str, **options: Any) -> typer.Typer:
    """A command group (`conveyor jobs …`), in the plain format."""
    return typer.Typer(help=help, **{"no_args_is_help": True, **PLAIN, **options})
