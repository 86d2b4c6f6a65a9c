"""What the commands that work on the database directly share: settings, the runtime, an
event loop, and who the audit trail records as acting."""

import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from conveyor.cli.exits import Exit, core_failure, stop

# The engine, store and settings (pydantic, SQLAlchemy) are imported by the commands that use
# them, so that `conveyor --help` and a mistyped command answer at once.
if TYPE_CHECKING:
    import logging

    from conveyor.audit import Actor
    from conveyor.runtime import Conveyor
    from conveyor.settings import Settings

T = TypeVar("T")

DatabaseOpt = Annotated[str | None, typer.Option("--database-url", help="overrides CONVEYOR_DATABASE_URL")]


def run(main: Coroutine[Any, Any, T], *, as_person: bool = True) -> T:
    """Runs `main` on a fresh event loop, the audit trail recording the person at the keyboard
    (`as_person`), or the system's own actor for services (serve, worker); a core error ends
    the command with its exit code."""
    import asyncio  # ~50 ms: not for --help

    from conveyor.errors import ConveyorError

    if as_person:
        main = _acting_as(_person(), main)
    try:
        try:  # uvloop's loop costs about a third less CPU per database round trip than asyncio's own
            import uvloop
        except ImportError:  # not built for every platform (Windows)
            return asyncio.run(main)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    except ConveyorError as exc:
        core_failure(exc)


def _person() -> "Actor":
    import getpass
    import socket

    from conveyor.audit import Actor

    return Actor(user_id=f"cli:{getpass.getuser()}", client_address=socket.gethostname()[:64])


async def _acting_as(actor: "Actor", main: Coroutine[Any, Any, T]) -> T:
    from conveyor.audit import acting_as

    # Inside the event loop's own context: nothing outlives the command (commands invoked
    # in-process, as the tests do, would otherwise pass the actor on to what runs next).
    with acting_as(actor):
        return await main


def settings(**overrides: Any) -> "Settings":
    from conveyor.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def conveyor(database_url: str | None = None, *, given: "Settings | None" = None) -> "Conveyor":
    from conveyor.runtime import Conveyor

    return Conveyor.from_settings(given or settings(database_url=database_url))


def wait_for_database(given: "Settings") -> None:
    """For the services and migrate: a PostgreSQL server started with them, or restarting, is
    waited for (CONVEYOR_STARTUP_WAIT_SECONDS) rather than taken for a failure."""
    import logging

    from conveyor.store.outage import wait_until_reachable

    wait_until_reachable(given.database_url, given.startup_wait_seconds, logging.getLogger("conveyor.startup"))


def jsonable(value: Any) -> Any:
    from conveyor.jobtypes import jsonable

    return jsonable(value)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2))


def configure_logging(level: str) -> None:
    import logging

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every step of a migration at INFO; keep the service's own lines readable.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    pool_log = logging.getLogger("psycopg.pool")
    if _failed_connection_attempt not in pool_log.filters:
        pool_log.addFilter(_failed_connection_attempt)


def _failed_connection_attempt(record: "logging.LogRecord") -> bool:
    """False for psycopg's pool's lines about an attempt to connect that failed: while the
    database is away, every loop that needs it (claims, outcome writes, heartbeats, the
    scheduler) says so in a line with the driver's words, and each pool would add two or three
    more a second. Its other lines (a connection discarded, one returned mid-transaction) stay."""
    return not str(record.msg).startswith(("error connecting in", "reconnection attempt in pool"))


def parse_json(text: str, option: str = "--data") -> Any:
    """JSON given on the command line, or `@path` to read it from a file (`@-`: stdin)."""
    if text.startswith("@"):
        text = _read(text[1:], option)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        stop(Exit.USAGE, f"{option} is not valid JSON: {exc}")


def _read(path: str, option: str) -> str:
    import sys
    from pathlib import Path

    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        stop(Exit.USAGE, f"{option} @{path}: {exc.strerror or exc}")


def priority(given: str | int | None) -> int | str | None:
    return int(given) if isinstance(given, str) and given.isdigit() else given


def labels(pairs: list[str] | None, option: str = "--label") -> dict[str, str]:
    found = {}
    for pair in pairs or []:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            stop(Exit.USAGE, f"{option} {pair!r}: use key:value")
        found[key] = value
    return found
