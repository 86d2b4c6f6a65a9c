"""`conveyor users …`: local users, over HTTP or straight in the database.

Over HTTP (`/api/v1/users…`, an admin's credentials) when a server is configured (`--url`,
`CONVEYOR_URL` or the config file's `url`) and no `--database-url` is given: an admin manages
the users of its organisation, as the API allows. Otherwise on the database, for operators (how
the first user of a fresh install is made): every user, and each change is an audit record of
the command's user (`cli:<login>`); the output is JSON lines there, whatever `--json` says.

Passwords are read from a prompt that does not echo them, or one line of standard input with
`--password-stdin`; never from the command line (where the shell's history and `ps` would
show them)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from conveyor.cli import remote
from conveyor.cli.output import JsonOpt, print_json, print_table, when

if TYPE_CHECKING:
    from conveyor.client import User
    from conveyor.runtime import Conveyor
    from conveyor.store.users import UserRecord

T = TypeVar("T")

users_app = typer.Typer(
    help="Local users who sign in and sign critical operations (over HTTP, or straight in the database).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="work on this database (default: the server, if configured)")
]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from one line of stdin")]
UserId = Annotated[str, typer.Argument(help="the user's id")]


def over_http(database_url: str | None) -> bool:
    """The rule in the module's docstring."""
    return database_url is None and remote.server_configured()


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


def _password(from_stdin: bool, *, confirm: bool = True, prompt: str = "password") -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


def _user_json(user: UserRecord) -> str:
    fields = ("id", "name", "role", "org_id", "disabled", "locked_until", "failed_attempts", "password_changed_at")
    return json.dumps({name: getattr(user, name) for name in fields}, default=str)


def _state(user: User) -> str:
    if user.disabled:
        return "[red]disabled[/]"
    if user.locked_until is not None:
        return f"[yellow]locked until {when(user.locked_until)}[/]"
    return "active"


def _print_users(users: list[User], as_json: bool) -> None:
    if as_json:
        print_json(users)
        return
    rows = [(u.user_id, u.name, u.role, u.org_id or "-", _state(u), when(u.last_sign_in_at)) for u in users]
    print_table(("ID", "NAME", "ROLE", "ORG", "STATE", "LAST SIGN-IN"), rows)


def _remote(action: Callable[[Any], User], as_json: bool) -> None:
    user = remote.call(action)
    if as_json:
        print_json(user)
    else:
        state = _state(user).replace("[red]", "").replace("[yellow]", "").replace("[/]", "")
        typer.echo(f"{user.user_id} ({user.name}, {user.role}, org {user.org_id or '-'}): {state}")


@users_app.command("add")
def add(
    user_id: Annotated[str, typer.Argument(help="the id the user signs in with")],
    name: Annotated[str, typer.Option(help="the printed (full) name shown with signatures")],
    role: Annotated[str, typer.Option(help="viewer, user, operator, admin or super_admin")],
    org: Annotated[str | None, typer.Option(help="the user's organisation")] = None,
    password_stdin: PasswordStdin = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a local user (the password rules apply)."""
    password = _password(password_stdin)
    if over_http(database_url):
        _remote(lambda c: c.users.create(user_id, name=name, role=role, password=password, org_id=org), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.create(user_id, name=name, role=role, password=password, org_id=org)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("list")
def list_users(as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """The local users one may manage (never a password hash); on the database every one, as
    JSON lines."""
    if over_http(database_url):
        _print_users(remote.call(lambda c: c.users.list()), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.list()

    for user in _with_conveyor(database_url, work):
        typer.echo(_user_json(user))


@users_app.command("passwd")
def passwd(
    user_id: UserId, password_stdin: PasswordStdin = False, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """Set a user's password (also lifts a lock-out; the user's tokens stop working)."""
    password = _password(password_stdin)
    if over_http(database_url):
        _remote(lambda c: c.users.reset_password(user_id, password), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.set_password(user_id, password)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("unlock")
def unlock(user_id: UserId, as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """Lift a user's lock-out."""
    if over_http(database_url):
        _remote(lambda c: c.users.unlock(user_id), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.unlock(user_id)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("disable")
def disable(
    user_id: UserId,
    enable: Annotated[bool, typer.Option("--enable", help="enable the user again instead")] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Disable a user (no sign-in, no signature, its tokens refused), or enable it again."""
    if over_http(database_url):
        _remote(lambda c: c.users.update(user_id, disabled=not enable), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.update(user_id, disabled=not enable)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("show")
def show(user_id: UserId, as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """One user: name, role, organisation, whether disabled or locked out, last sign-in."""
    if over_http(database_url):
        _remote(lambda c: c.users.get(user_id), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        from conveyor.users import UserNotFound

        found = await conveyor.users.get(user_id)
        if found is None:
            raise UserNotFound(user_id)
        return found

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("update")
def update(
    user_id: UserId,
    name: Annotated[str | None, typer.Option(help="a new printed name")] = None,
    role: Annotated[str | None, typer.Option(help="a new role: viewer, user, operator, admin or super_admin")] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Change a user's printed name or role."""
    if name is None and role is None:
        from conveyor.cli.exits import Exit, stop

        stop(Exit.USAGE, "nothing to change: give --name or --role")
    if over_http(database_url):
        _remote(lambda c: c.users.update(user_id, name=name, role=role), as_json)
        return

    async def work(conveyor: Conveyor) -> Any:
        return await conveyor.users.update(user_id, name=name, role=role)

    typer.echo(_user_json(_with_conveyor(database_url, work)))


@users_app.command("sign-in")
def sign_in(
    user_id: UserId,
    password_stdin: PasswordStdin = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign in to the server as a local user: prints a JWT for CONVEYOR_TOKEN (or the config
    file's `token`), alone on the last line of stdout."""
    password = _password(password_stdin, confirm=False)
    signed_in = remote.call(lambda c: c.sign_in(user_id, password))
    if as_json:
        print_json(signed_in)
        return
    typer.echo(f"signed in as {signed_in.user.user_id} ({signed_in.user.role}) until {when(signed_in.expires_at)}:")
    typer.echo(signed_in.access_token)
