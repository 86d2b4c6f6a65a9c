"""E-signatures for the commands whose operation a server may make critical: `jobs cancel|
retry|delete`, `cache clear`, `schedules update|pause|resume|delete`, `apikey revoke`.

Which operations need one is the server's decision (CONVEYOR_CRITICAL_OPERATIONS, and for jobs
their priority), so the command never guesses: it sends the operation, signed when the signature
is complete beforehand (`--sign-as USER --meaning M` and CONVEYOR_SIGNATURE_PASSWORD), and reads
the server's 428 SIGNATURE_REQUIRED otherwise. Then, on a terminal, it asks for what is missing
(the signer, the meaning among the server's own list, the password without echo) and sends
the operation once more; in a script it ends with exit 4 and says how to sign. The password is
never taken from the command line, where the shell's history and `ps` would show it.
"""

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from conveyor.cli.exits import client_failure
from conveyor.cli.remote import client

if TYPE_CHECKING:
    from conveyor.client import Client, Signature, SignatureRequired

T = TypeVar("T")
PASSWORD_ENV = "CONVEYOR_SIGNATURE_PASSWORD"  # nosec B105: the variable's name, not a password

SignAsOpt = Annotated[
    str | None,
    typer.Option(
        "--sign-as",
        metavar="USER",
        help=f"e-sign the operation as this local user, if the server demands it (password: {PASSWORD_ENV},"
        " else a prompt)",
    ),
]
MeaningOpt = Annotated[
    str | None, typer.Option(help="what the e-signature means: approved, responsible, reviewed, authored…")
]


def interactive() -> bool:
    """Whether a person can answer prompts (stdin and stderr are a terminal)."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def signed_call(action: Callable[["Client", "Signature | None"], T], sign_as: str | None, meaning: str | None) -> T:
    """`action(client, signature)` on the configured server, signed as the server demands."""
    with client() as c:
        return signed(c, action, sign_as, meaning)


def signed(
    c: "Client", action: Callable[["Client", "Signature | None"], T], sign_as: str | None, meaning: str | None
) -> T:
    from conveyor.client import Signature, SignatureRequired

    password = os.environ.get(PASSWORD_ENV)
    ready = Signature(sign_as, password, meaning) if sign_as and password and meaning else None
    try:
        return action(c, ready)
    except SignatureRequired as exc:
        if ready is not None or not interactive():
            _refused(c, exc, sign_as, meaning)
        return action(c, _asked(c, exc, sign_as, meaning, password))


def _asked(
    c: "Client", exc: "SignatureRequired", sign_as: str | None, meaning: str | None, password: str | None
) -> "Signature":
    from conveyor.client import ConveyorError, Signature

    typer.echo(f"{exc.operation or 'this operation'} is critical on this server: it needs your e-signature.", err=True)
    signer = sign_as
    if not signer:
        default = None
        try:
            caller = c.me()
            default = caller.user_id if caller.via != "api_key" else None  # a signed-in user signs as themselves
        except ConveyorError:
            pass
        signer = str(typer.prompt("sign as (user id)", default=default, err=True))
    if not meaning:
        meaning = _meaning(_meanings(c))
    if not password:
        import getpass

        # getpass turns the terminal's echo off before it writes the prompt (typer's prompt
        # writes first): a password typed at once is neither shown nor lost.
        password = getpass.getpass(f"password of {signer}: ")
    return Signature(signer, password, meaning)


def _meaning(meanings: list[str]) -> str:
    """A meaning from the server's list (asked again until it is one), or any text when the
    server cannot tell its list."""
    if not meanings:
        return str(typer.prompt("meaning", err=True))
    while (
        answer := str(typer.prompt(f"meaning ({', '.join(meanings)})", default=meanings[0], err=True))
    ) not in meanings:
        typer.echo(f"one of {', '.join(meanings)}", err=True)
    return answer


def _meanings(c: "Client") -> list[str]:
    """The meanings the server accepts (empty when it cannot tell: an older server)."""
    from conveyor.client import ConveyorError

    try:
        return c.signature_policy().meanings
    except ConveyorError:
        return []


def _refused(c: "Client", exc: "SignatureRequired", sign_as: str | None, meaning: str | None) -> NoReturn:
    if sign_as and meaning and os.environ.get(PASSWORD_ENV):
        client_failure(exc)  # signed, and still asked for a signature: say what the server said
    missing = []
    if not sign_as:
        missing.append("--sign-as USER")
    if not meaning:
        missing.append(f"--meaning {'|'.join(_meanings(c)) or 'MEANING'}")
    if not os.environ.get(PASSWORD_ENV):
        missing.append(f"the signer's password in {PASSWORD_ENV} (or run it on a terminal, to be asked)")
    client_failure(exc, hint=f"{exc.operation or 'the operation'} needs an e-signature: add {', '.join(missing)}")
