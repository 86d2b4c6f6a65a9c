"""Where the commands that talk to a server find it, and how they call it.

The server's address and credentials come from, first to last: the options before the
command (`conveyor --url … --api-key … jobs list`), the environment (`CONVEYOR_URL`,
`CONVEYOR_API_KEY`, `CONVEYOR_TOKEN`), the config file (`$CONVEYOR_CONFIG`, else
`~/.config/conveyor/config.toml`: `url = "…"`, `api_key = "…"`, `token = "…"`,
`timeout = 10`), and for the address `conveyor serve`'s default, http://127.0.0.1:8000.

The commands that work either way (stats, cache, apikey, audit verify) work on the database
when `--database-url` is given, or when no server is configured and `CONVEYOR_DATABASE_URL`
is set (as they did before they spoke HTTP); otherwise they talk to the server.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.cli.exits import Exit, client_failure, stop

if TYPE_CHECKING:
    from conveyor.client import Client

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass
class Given:
    """The connection options given before the command (None: not given)."""

    url: str | None = None
    api_key: str | None = None
    token: str | None = None
    timeout: float | None = None


given = Given()  # set by the command's callback, for this invocation


def config_path() -> Path:
    if explicit := os.environ.get("CONVEYOR_CONFIG"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "conveyor" / "config.toml"


def _config() -> dict[str, Any]:
    import tomllib

    path = config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        stop(Exit.USAGE, f"config file {path}: {exc}")


def _setting(name: str, flag: Any, config: dict[str, Any]) -> Any:
    if flag is not None:
        return flag
    return os.environ.get(f"CONVEYOR_{name.upper()}") or config.get(name)


def server_configured() -> bool:
    return _setting("url", given.url, _config()) is not None


def use_database(database_url: str | None) -> bool:
    """The rule for commands that work either way (see the module's docstring)."""
    if database_url:
        return True
    return not server_configured() and bool(os.environ.get("CONVEYOR_DATABASE_URL"))


@contextmanager
def client() -> Iterator["Client"]:
    """A `conveyor.client.Client` for the configured server; its errors end the command with
    their exit code (exits.py)."""
    from conveyor.client import Client, ConveyorError

    config = _config()
    api_key = _setting("api_key", given.api_key, config)
    token = _setting("token", given.token, config) if not api_key else None
    timeout = _setting("timeout", given.timeout, config)
    opened = Client(
        str(_setting("url", given.url, config) or DEFAULT_URL),
        api_key=api_key,
        token=token,
        timeout=float(timeout) if timeout is not None else 10.0,
    )
    try:
        yield opened
    except ConveyorError as exc:
        client_failure(exc)
    finally:
        opened.close()


def call(action: Callable[["Client"], T]) -> T:
    """`action(client)`, with the client's errors ending the command."""
    with client() as c:
        return action(c)
