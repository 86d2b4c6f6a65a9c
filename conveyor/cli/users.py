"""`conveyor users …`: local users for operators, straight in the database (as `apikey` does):
add, list, passwd, unlock, disable. Passwords are read from a prompt that does not echo them,
or one line of standard input with `--password-stdin`; never from the command line (where
the shell's history and `ps` would show them). Each change is an audit record of the
command's user (`cli:<login>`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from conveyor.runtime import Conveyor
    from conveyor.store.users import UserRecord

T = TypeVar("T")

users_app = typer.Typer(
    help="Local users who sign in and sign critical operations (straight in the database).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DatabaseOpt = Annotated[str | None, typer.Option("--database-url", help="default: CONVEYOR_DATABASE_URL")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from one line of stdin")]


def _with_conveyor(database_url: str | None, work: Callable[[Conveyor], Awaitable[T]]) -> T:
    import asyncio
    import getpass
    import socket

    from conveyor.audit import Actor, acting_as
    from conveyor.errors import ConveyorError
    from conveyor.runtime import Conveyor
    from conveyor.settings import Settings

    settings = Settings(**({"database_url": database_url} if database_url else {}))
    actor = Actor(user_id=f"cli:{getpass.getuser()}", client_address=socket.gethostname()[:64])

    async def main() -> T:
        with acting_as(actor):
            async with Conveyor.from_settings(settings) as conveyor:
                return await work(conveyor)

    try:
        return asyncio.run(main())
    except ConveyorError as exc:
        typer.echo(json.dumps({"error": exc.code, "message": exc.message, **exc.details}, default=str), err=True)
        raise typer.Exit(1) from None


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _user_json(user: UserRecord) -> str:
    fields = ("id", "name", "role", "org_id", "disabled", "locked_until", "failed_attempts", "password_changed_at")
    return json.dumps({name: getattr(user, name) for name in fields}, default=str)


@users_app.command("add")
def add(
    user_id: Annotated[str, typer.Argument(help="the id the user signs in with")],
    name: Annotated[str, typer.Option(help="the printed (full) name shown with signatures")],
    role: Annotated[str, typer.Option(help="viewer, user, operator, admin or super_admin")],
    org: Annotated[str | None, typer.Option(help="the user's organisation")] = None,
    password_stdin: PasswordStdin = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a local user (the password rules apply)."""
    password = _password(password_stdin)

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.create(user_id, name=name, role=role, password=password, org_id=org)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("list")
def list_users(database_url: DatabaseOpt = None) -> None:
    """Every local user (never a password hash), as JSON lines."""

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.list()

    for user in _with_conveyor(database_url, work):
        typer.echo(_user_json(user))


@users_app.command("passwd")
def passwd(user_id: str, password_stdin: PasswordStdin = False, database_url: DatabaseOpt = None) -> None:
    """Set a user's password (also lifts a lock-out; the user's tokens stop working)."""
    password = _password(password_stdin)

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.set_password(user_id, password)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("unlock")
def unlock(user_id: str, database_url: DatabaseOpt = None) -> None:
    """Lift a user's lock-out."""

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.unlock(user_id)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("disable")
def disable(
    user_id: str,
    enable: Annotated[bool, typer.Option("--enable", help="enable the user again instead")] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Disable a user (no sign-in, no signature, its tokens refused), or enable it again."""

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.update(user_id, disabled=not enable)

    typer.echo(_user_json(_with_conveyor(database_url, work)))
