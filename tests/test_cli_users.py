"""`conveyor users …` on a database of its own: add (password from stdin, rules applied), list
(no hashes), passwd, unlock, disable; each change is an audit record of the CLI's user."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from conveyor.runtime import Conveyor
from conveyor.settings import Settings
from conveyor.store.audit import AuditFilter
from conveyor.users import InvalidCredentials

runner = CliRunner()
PASSWORD = "an operator's pass phrase"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url)
    monkeypatch.setenv("CONVEYOR_PASSWORD_HASH_MEMORY_KIB", "8192")
    monkeypatch.setenv("CONVEYOR_PASSWORD_HASH_TIME_COST", "1")
    return url


def signs_in(url: str, user_id: str, password: str) -> bool:
    async def check() -> bool:
        async with Conveyor.from_settings(Settings(database_url=url)) as conveyor:
            try:
                await conveyor.users.verify(user_id, password)
            except InvalidCredentials:
                return False
            return True

    return asyncio.run(check())


def test_users_add_list_passwd_unlock_disable(db: str) -> None:
    add = ["users", "add", "ada", "--name", "Ada Lovelace", "--role", "admin", "--org", "org-a", "--password-stdin"]
    added = runner.invoke(app, add, input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["role"] == "admin"
    weak = runner.invoke(app, [*add[:2], "bob", *add[3:]], input="short\n")
    assert weak.exit_code == 1 and json.loads(weak.stderr)["field"] == "password"
    listed = [json.loads(line) for line in runner.invoke(app, ["users", "list"]).output.splitlines()]
    assert [u["id"] for u in listed] == ["ada"] and "argon2" not in str(listed)
    assert signs_in(db, "ada", PASSWORD)

    new = "a brand new pass phrase"
    assert runner.invoke(app, ["users", "passwd", "ada", "--password-stdin"], input=new + "\n").exit_code == 0
    assert not signs_in(db, "ada", PASSWORD) and signs_in(db, "ada", new)
    assert runner.invoke(app, ["users", "disable", "ada"]).exit_code == 0
    assert not signs_in(db, "ada", new)
    assert runner.invoke(app, ["users", "disable", "ada", "--enable"]).exit_code == 0
    assert runner.invoke(app, ["users", "unlock", "ada"]).exit_code == 0
    assert signs_in(db, "ada", new)
    unknown = runner.invoke(app, ["users", "unlock", "nobody"])
    assert unknown.exit_code == 1 and json.loads(unknown.stderr)["error"] == "USER_NOT_FOUND"

    async def records() -> list[str]:
        async with Conveyor.from_settings(Settings(database_url=db)) as conveyor:
            found, _ = await conveyor.audit.list(AuditFilter(object_type="user"), limit=100)
            return [f"{r.action} {r.actor_id}" for r in found if r.actor_id.startswith("cli:")]

    actions = {line.split()[0] for line in asyncio.run(records())}
    assert {"user.created", "user.password_reset", "user.changed", "user.unlocked"} <= actions
