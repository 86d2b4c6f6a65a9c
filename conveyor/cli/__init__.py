"""The `conveyor` command.

One module per command group: service.py (serve, worker, migrate), jobs.py (submit, jobs …),
monitor.py (stats, queues, health, top), schedules.py, batches.py, cache.py, audit.py,
apikeys.py, keys.py, users.py, backup.py (backup, restore, verify-backup), medication.py. The
commands that talk to a server go through `conveyor.client` (remote.py finds the server;
signing.py e-signs the operations a server makes critical); those that work on the database go
through the runtime (local.py). exits.py holds the exit codes; output.py the tables and JSON.

Every module is imported here to register its commands, so none imports the engine, the
store, pydantic, httpx or rich at its top: `conveyor --help` answers at once.
"""

from typing import Annotated

import typer

from conveyor.cli import apikeys, audit, backup, batches, cache, jobs, keys, local, monitor, remote, schedules, service
from conveyor.cli.exits import core_failure
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.medication import medication_app
from conveyor.cli.output import PLAIN
from conveyor.cli.users import users_app

# The helpers command modules written against the single-file command imported from here
# (users.py, webhooks.py on other branches); new modules import local.py, exits.py, output.py.
_run = local.run
_settings = local.settings
_fail = core_failure
jsonable = local.jsonable


def _conveyor(settings: "local.Settings") -> "local.Conveyor":
    return local.conveyor(given=settings)


EXIT_CODES = (
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused, 5 timed out,"
    " 6 server or database failed or unreachable, 7 the job did not complete, 130 interrupted."
)
app = typer.Typer(help="conveyor: durable background jobs.", epilog=EXIT_CODES, no_args_is_help=True, **PLAIN)


@app.callback()
def _main(
    url: Annotated[
        str | None, typer.Option(help="the server (default: CONVEYOR_URL, the config file, http://127.0.0.1:8000)")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="an API key (default: CONVEYOR_API_KEY, the config file)")] = None,
    token: Annotated[str | None, typer.Option(help="a JWT instead of an API key (default: CONVEYOR_TOKEN)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds for each request (default 10)")] = None,
) -> None:
    """Options before the command say which server to talk to."""
    remote.given = remote.Given(url=url, api_key=api_key, token=token, timeout=timeout)


service.register(app)
jobs.register(app)
monitor.register(app)
schedules.register(app)
batches.register(app)
backup.register(app)
app.add_typer(cache.cache_app, name="cache")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(apikeys.apikey_app, name="apikey")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(medication_app, name="medication")


def main() -> None:
    try:
        app()
    except Exception as exc:
        # A command working on the database directly that could not reach or use it: one
        # line saying so (exit 6), not a traceback through SQLAlchemy and psycopg.
        from conveyor.cli.exits import database_failure
        from conveyor.store.outage import database_unavailable

        if not database_unavailable(exc):
            raise
        database_failure(exc)


__all__ = ["PLAIN", "DatabaseOpt", "app", "main"]
