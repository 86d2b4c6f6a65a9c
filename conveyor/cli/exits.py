"""Exit codes the conveyor command answers with, and how an error becomes one.

One table for every command, whether it talks to a server or to the database, so a script
can tell what went wrong without reading the message:

| code | meaning |
| --- | --- |
| 0 | done |
| 1 | any other error (an audit chain found broken, an unexpected answer) |
| 2 | usage: a bad option or argument (click's own code), or JSON that does not parse |
| 3 | not found: no such job, schedule, batch or key (or not one the caller may see) |
| 4 | refused: bad input or credentials, a forbidden role or state, a rate limit, an e-signature missing or refused |
| 5 | timed out: the job had not finished when `--timeout` ran out (it goes on) |
| 6 | the server (5xx) or, for commands on the database directly, the database failed or could not be reached |
| 7 | the job finished, but not completed: failed, cancelled or timed out (`--wait`, `jobs wait`) |
| 130 | interrupted (Ctrl-C) |

The error itself is printed as one JSON object on stderr:
`{"error": "JOB_NOT_FOUND", "message": "…", …}` (with `"hint"` when there is something to do
about it, as signing a critical operation).
"""

import enum
import json
from typing import Any, NoReturn

import typer


class Exit(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    REFUSED = 4
    TIMEOUT = 5
    UNAVAILABLE = 6
    JOB_NOT_COMPLETED = 7
    INTERRUPTED = 130


def stop(code: Exit, message: str | None = None) -> NoReturn:
    """Ends the command with `code`, printing `message` (plain text) on stderr first."""
    if message:
        typer.echo(message, err=True)
    raise typer.Exit(int(code))


def _dump(shown: dict[str, Any]) -> str:
    return json.dumps(shown, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))


def core_failure(exc: Any) -> NoReturn:
    """A `conveyor.errors.ConveyorError` from a command working on the database."""
    code = Exit.NOT_FOUND if exc.code.endswith("NOT_FOUND") else Exit.REFUSED
    typer.echo(_dump({"error": exc.code, "message": exc.message, **exc.details}), err=True)
    raise typer.Exit(int(code))


def database_failure(exc: BaseException) -> NoReturn:
    """The database could not be reached or used (conveyor.store.outage): the driver's own
    words (they name the host and say what failed), without SQLAlchemy's wrapping."""
    from conveyor.store.outage import driver_error

    cause = driver_error(exc)
    message = str(cause).strip() or type(cause).__name__
    typer.echo(_dump({"error": "DATABASE_UNAVAILABLE", "message": message}), err=True)
    raise SystemExit(int(Exit.UNAVAILABLE))


def client_failure(exc: Any, *, hint: str | None = None) -> NoReturn:
    """A `conveyor.client.ConveyorError`: the server's answer (or its absence) as an exit code;
    `hint` says what to do about it."""
    from conveyor.client import NotFound, ServerError, TransportError, WaitTimeout

    if isinstance(exc, NotFound):
        code = Exit.NOT_FOUND
    elif isinstance(exc, WaitTimeout):
        code = Exit.TIMEOUT
    elif isinstance(exc, ServerError | TransportError):
        code = Exit.UNAVAILABLE
    elif exc.status_code is not None and 400 <= exc.status_code < 500:
        code = Exit.REFUSED
    else:
        code = Exit.ERROR
    shown: dict[str, Any] = {"error": exc.code, "message": exc.message, "status": exc.status_code}
    if exc.fields:
        shown["field"] = exc.fields[0].get("field")
        shown["errors"] = exc.fields
    shown.update(exc.details)
    if exc.request_id:
        shown["request_id"] = exc.request_id
    if hint:
        shown["hint"] = hint
    typer.echo(_dump(shown), err=True)
    raise typer.Exit(int(code))
