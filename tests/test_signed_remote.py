"""E-signatures from the client and the command, against a real `conveyor serve` that demands
them (the default CONVEYOR_CRITICAL_OPERATIONS), on SQLite and PostgreSQL; local users, sign-in
and `conveyor users …` over HTTP; `conveyor top --json` and `conveyor schedules update`.

Each test works in an organisation of its own: an admin key and an admin user (the signer)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import own_database_url
from served import Served, conveyor_serve
from test_cli_http import ANSI, in_terminal, terminal_env
from typer.testing import CliRunner, Result

from conveyor.cli import app
from conveyor.cli.exits import Exit
from conveyor.client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Signature,
    SignatureInvalid,
    SignatureRequired,
    Unauthorized,
)

runner = CliRunner()
PASSWORD = "the signer's pass phrase"
# Beyond ASCII: the headers travel as UTF-8 and the server reads them so.
UNICODE_PASSWORD = "pässwörd für Ünïcode ✓"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("signed")
    with (
        own_database_url(request.param, "conveyor_signed", directory, sqlite_template) as url,
        conveyor_serve(url, directory, signatures=True) as served,
    ):
        yield served


@dataclass(frozen=True)
class Org:
    """An organisation of the test's own: its admin key, and an admin user who signs."""

    server: Served
    org: str
    key: str
    signer: str

    @property
    def url(self) -> str:
        return self.server.url

    def signature(self, meaning: str = "approved", password: str = PASSWORD) -> Signature:
        return Signature(self.signer, password, meaning)

    def add_user(self, user_id: str, role: str, password: str = PASSWORD) -> None:
        body = {"userId": user_id, "name": f"Test {user_id}", "role": role, "password": password}
        answer = httpx.post(
            f"{self.url}/api/v1/users", json=body, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )
        assert answer.status_code == 201, answer.text


@pytest.fixture
def org(server: Served) -> Org:
    name = f"org-{uuid.uuid4().hex[:10]}"
    made = Org(server, name, server.key("admin", name), f"ada-{uuid.uuid4().hex[:6]}")
    made.add_user(made.signer, "admin")
    return made


@pytest.fixture
def cli_env(org: Org, monkeypatch: pytest.MonkeyPatch) -> Org:
    """The command pointed at the server with the organisation's admin key."""
    for name in ("CONVEYOR_DATABASE_URL", "CONVEYOR_TOKEN", "CONVEYOR_SIGNATURE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONVEYOR_CONFIG", "/nonexistent/conveyor.toml")
    monkeypatch.setenv("CONVEYOR_URL", org.url)
    monkeypatch.setenv("CONVEYOR_API_KEY", org.key)
    return org


def cli(*args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=stdin)


def ok_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def error(result: Result, code: Exit) -> dict[str, Any]:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    parsed: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])
    return parsed


# --- the client -----------------------------------------------------------------------------------


def test_the_policy_is_the_servers_own(org: Org) -> None:
    with Client(org.url, api_key=org.key) as client:
        policy = client.signature_policy()
    assert policy.operations == {
        "job.cancel": "critical_jobs",
        "job.retry": "critical_jobs",
        "job.delete": "always",
        "cache.clear": "always",
        "schedule.change": "always",
        "schedule.delete": "always",
        "api_key.revoke": "always",
    }
    assert policy.meanings == ["approved", "authored", "responsible", "reviewed"]
    assert policy.requires("cache.clear") and not policy.requires("job.cancel")
    assert policy.requires("job.cancel", critical_job=True) and not policy.requires("no.such")


def test_a_critical_job_is_cancelled_only_with_a_valid_signature(org: Org) -> None:
    with Client(org.url, api_key=org.key) as client:
        job = client.submit("sleep", {"seconds": 1}, priority="critical", delay=3600)
        with pytest.raises(SignatureRequired) as required:
            client.cancel(job.id)
        assert (required.value.status_code, required.value.code) == (428, "SIGNATURE_REQUIRED")
        assert required.value.operation == "job.cancel"
        with pytest.raises(SignatureInvalid) as invalid:
            client.cancel(job.id, signature=org.signature(password="not the password at all"))
        assert isinstance(invalid.value, Forbidden) and invalid.value.code == "SIGNATURE_INVALID"
        assert invalid.value.fields[0]["field"] == "X-Signature-Password"
        assert "not the password" not in str(invalid.value) + repr(invalid.value)
        with pytest.raises(SignatureInvalid) as meaningless:
            client.cancel(job.id, signature=org.signature(meaning="because"))
        assert meaningless.value.fields[0]["field"] == "X-Signature-Meaning"
        assert client.get(job.id).status == "scheduled"  # refused: nothing changed

        cancelled = client.cancel(job.id, signature=org.signature("responsible"))
        assert cancelled.status == "cancelled"
        [signed] = client.signatures(job.id)
        assert (signed.signer_id, signed.meaning, signed.action) == (org.signer, "responsible", "job.cancelled")
        assert signed.printed_name == f"Test {org.signer}" and signed.record_hash

        ordinary = client.submit("sleep", {"seconds": 1}, delay=3600)
        assert client.cancel(ordinary.id).status == "cancelled"  # not critical: no signature asked
        assert client.signatures(ordinary.id) == []


def test_cache_schedules_and_keys_are_signed_with_the_async_client(org: Org) -> None:
    async def scenario() -> None:
        async with AsyncClient(org.url, api_key=org.key) as client:
            # the cache's family (seed 003) carries no code in its body: the header does
            with pytest.raises(SignatureRequired):
                await client.clear_cache()
            with pytest.raises(SignatureInvalid):
                await client.clear_cache(signature=org.signature(password="wrong wrong wrong"))
            assert await client.clear_cache(signature=org.signature()) == 0

            schedule = await client.schedules.create("nightly", "sleep", {"seconds": 0}, cron="0 2 * * *")
            with pytest.raises(SignatureRequired) as required:
                await client.schedules.update(schedule.id, cron="0 3 * * *")
            assert required.value.operation == "schedule.change"
            changed = await client.schedules.update(schedule.id, cron="0 3 * * *", signature=org.signature())
            assert changed.cron == "0 3 * * *"
            with pytest.raises(SignatureRequired):
                await client.schedules.pause(schedule.id)
            assert not (await client.schedules.pause(schedule.id, signature=org.signature())).enabled
            assert (await client.schedules.resume(schedule.id, signature=org.signature())).enabled
            with pytest.raises(SignatureRequired):
                await client.schedules.delete(schedule.id)
            await client.schedules.delete(schedule.id, signature=org.signature())
            with pytest.raises(NotFound):
                await client.schedules.get(schedule.id)

            made = await client.api_keys.create("to revoke", "viewer")
            with pytest.raises(SignatureRequired):
                await client.api_keys.revoke(made.id)
            assert not (await client.api_keys.revoke(made.id, signature=org.signature("reviewed"))).active

    asyncio.run(scenario())


def test_a_signature_is_the_signers_own(org: Org) -> None:
    org.add_user("viewer-" + org.signer, "viewer")
    org.add_user("uni-" + org.signer, "admin", UNICODE_PASSWORD)
    with Client(org.url, api_key=org.key) as client:
        job = client.submit("sleep", {"seconds": 1}, priority="critical", delay=3600)
        # a signer whose role may not cancel jobs does not sign for the key
        with pytest.raises(SignatureInvalid) as weak:
            client.cancel(job.id, signature=Signature("viewer-" + org.signer, PASSWORD, "approved"))
        assert weak.value.fields[0]["field"] == "X-Signature-User"
        assert client.cancel(job.id, signature=Signature("uni-" + org.signer, UNICODE_PASSWORD, "approved")).finished

        # signed in as a user, one signs as that user and no one else
        token = client.sign_in(org.signer, PASSWORD).access_token
    with Client(org.url, token=token) as as_user:
        assert (as_user.me().user_id, as_user.me().via) == (org.signer, "jwt")
        other = as_user.submit("sleep", {"seconds": 1}, priority="critical", delay=3600)
        with pytest.raises(SignatureInvalid):
            as_user.cancel(other.id, signature=Signature("uni-" + org.signer, UNICODE_PASSWORD, "approved"))
        assert as_user.cancel(other.id, signature=org.signature()).status == "cancelled"


def test_the_password_never_shows(org: Org) -> None:
    signature = org.signature(password="hunter2 hunter2 hunter2")
    assert "hunter2" not in repr(signature) and "hunter2" not in str(signature)
    from conveyor.client import calls

    assert "hunter2" not in repr(calls.clear_cache(None, signature))
    assert dict(calls.clear_cache(None, signature).headers)["X-Signature-Password"] == b"hunter2 hunter2 hunter2"


def test_users_over_the_client(org: Org) -> None:
    user_id = f"bob-{uuid.uuid4().hex[:6]}"
    with Client(org.url, api_key=org.key) as client:
        made = client.users.create(user_id, name="Bob Builder", role="operator", password=PASSWORD)
        assert (made.user_id, made.role, made.org_id, made.disabled) == (user_id, "operator", org.org, False)
        with pytest.raises(InvalidRequest) as weak:
            client.users.create(f"x{user_id}", name="X", role="viewer", password="short")
        assert weak.value.fields[0]["field"] == "password"
        with pytest.raises(Conflict):
            client.users.create(user_id, name="Bob again", role="viewer", password=PASSWORD)
        assert {u.user_id for u in client.users.list()} == {org.signer, user_id}
        assert client.users.get(user_id).name == "Bob Builder"
        assert client.users.update(user_id, role="viewer", name="Robert").role == "viewer"
        assert client.users.update(user_id, disabled=True).disabled
        with pytest.raises(Unauthorized):
            client.sign_in(user_id, PASSWORD)
        assert not client.users.update(user_id, disabled=False).disabled
        new = "a brand new pass phrase"
        client.users.reset_password(user_id, new)
        assert client.users.unlock(user_id).failed_attempts == 0
        with pytest.raises(NotFound):
            client.users.get("nobody-at-all")
        signed_in = client.sign_in(user_id, new)
        assert signed_in.user.user_id == user_id and signed_in.expires_at is not None
        assert "access_token" not in repr(signed_in)
    with Client(org.url, token=signed_in.access_token) as as_bob:
        with pytest.raises(Forbidden):
            as_bob.users.list()  # a viewer manages no one
        assert as_bob.change_password(new, "yet another pass phrase").user_id == user_id
    with Client(org.url) as anonymous:
        assert anonymous.sign_in(user_id, "yet another pass phrase").user.role == "viewer"


# --- the command --------------------------------------------------------------------------------------


def test_a_script_is_refused_and_told_how_to_sign(cli_env: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = error(cli("cache", "clear", "--yes"), Exit.REFUSED)
    assert (refused["status"], refused["error"]) == (428, "SIGNATURE_REQUIRED")
    assert "--sign-as USER" in refused["hint"] and "approved|authored|responsible|reviewed" in refused["hint"]
    assert "CONVEYOR_SIGNATURE_PASSWORD" in refused["hint"]
    # the signer named but no password: still refused, the hint names only what is missing
    partial = error(cli("cache", "clear", "--yes", "--sign-as", cli_env.signer, "--meaning", "approved"), Exit.REFUSED)
    assert "--sign-as" not in partial["hint"] and "CONVEYOR_SIGNATURE_PASSWORD" in partial["hint"]

    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", "not the password at all")
    wrong = error(cli("cache", "clear", "--yes", "--sign-as", cli_env.signer, "--meaning", "approved"), Exit.REFUSED)
    assert (wrong["status"], wrong["error"]) == (403, "SIGNATURE_INVALID")
    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", PASSWORD)
    cleared = cli("cache", "clear", "--yes", "--sign-as", cli_env.signer, "--meaning", "approved", "--json")
    assert cleared.exit_code == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {"cleared_results": 0}


def test_jobs_schedules_and_keys_signed_from_the_command(cli_env: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    sign = ["--sign-as", cli_env.signer, "--meaning", "approved"]
    # a queue no worker serves: the retry (which keeps the queue, not the delay) stays pending
    queue = f"signed-{uuid.uuid4().hex[:8]}"
    critical = ok_json("submit", "sleep", "--priority", "critical", "--delay", "3600", "--queue", queue)
    assert error(cli("jobs", "cancel", critical["id"]), Exit.REFUSED)["error"] == "SIGNATURE_REQUIRED"
    ordinary = ok_json("submit", "sleep", "--delay", "3600")
    assert ok_json("jobs", "cancel", ordinary["id"])["status"] == "cancelled"  # not critical here

    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", PASSWORD)
    assert ok_json("jobs", "cancel", critical["id"], *sign)["status"] == "cancelled"
    retried = ok_json("jobs", "retry", critical["id"], *sign)
    assert retried["retry_of"] == critical["id"] and retried["priority"] == "critical"
    assert ok_json("jobs", "delete", retried["id"], *sign)["status"] == "cancelled"
    signed = ok_json("jobs", "signatures", critical["id"])
    assert "job.cancelled" in [s["action"] for s in signed] and {s["signer_id"] for s in signed} == {cli_env.signer}
    shown = cli("jobs", "signatures", critical["id"])
    assert shown.exit_code == 0 and "job.cancelled" in shown.stdout and "MEANING" in shown.stdout

    made = ok_json("schedules", "add", "sleep", "--every", "3600", "--name", "hourly")
    monkeypatch.delenv("CONVEYOR_SIGNATURE_PASSWORD")
    assert error(cli("schedules", "update", made["id"], "--every", "60"), Exit.REFUSED)["error"] == (
        "SIGNATURE_REQUIRED"
    )
    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", PASSWORD)
    changed = ok_json(
        "schedules", "update", made["id"], "--cron", "15 4 * * *", "--timezone", "Europe/Berlin",
        "--data", '{"seconds": 2}', "--priority", "high", "--name", "nightly", "--missed", "run_once", "--disable",
        *sign,
    )  # fmt: skip
    assert (changed["cron"], changed["timezone"], changed["interval_seconds"], changed["data"]) == (
        "15 4 * * *",
        "Europe/Berlin",
        None,
        {"seconds": 2},
    )
    assert (changed["name"], changed["missed_policy"], changed["enabled"]) == ("nightly", "run_once", False)
    assert ok_json("schedules", "resume", made["id"], *sign)["enabled"]
    assert not ok_json("schedules", "pause", made["id"], *sign)["enabled"]
    assert ok_json("schedules", "delete", made["id"], *sign)["id"] == made["id"]

    key = ok_json("apikey", "create", "--role", "viewer", "--name", "to revoke")
    assert key["key"].startswith("cvk_") and key["active"] and key["org_id"] == cli_env.org
    monkeypatch.delenv("CONVEYOR_SIGNATURE_PASSWORD")
    assert error(cli("apikey", "revoke", key["id"]), Exit.REFUSED)["error"] == "SIGNATURE_REQUIRED"
    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", PASSWORD)
    revoked = ok_json("apikey", "revoke", key["id"], *sign)
    assert revoked["active"] is False


def test_schedules_update_needs_a_change_and_names_the_field(cli_env: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    made = ok_json("schedules", "add", "sleep", "--every", "3600")
    nothing = cli("schedules", "update", made["id"])
    assert nothing.exit_code == Exit.USAGE and "nothing to change" in nothing.stderr
    monkeypatch.setenv("CONVEYOR_SIGNATURE_PASSWORD", PASSWORD)
    sign = ["--sign-as", cli_env.signer, "--meaning", "approved"]
    bad = error(cli("schedules", "update", made["id"], "--cron", "not a cron", *sign), Exit.REFUSED)
    assert bad["field"] == "cron"
    missing = error(cli("schedules", "update", str(uuid.uuid4()), "--every", "5", *sign), Exit.NOT_FOUND)
    assert missing["error"] == "SCHEDULE_NOT_FOUND"


def test_a_terminal_is_asked_for_the_signature_and_the_operation_sent_again(cli_env: Org) -> None:
    env = terminal_env(cli_env.server, cli_env.key)
    shown, code = in_terminal(
        ["cache", "clear", "--yes"],
        env,
        [
            ("sign as", f"{cli_env.signer}\r".encode()),
            ("meaning", b"reviewed\r"),
            ("password of", f"{PASSWORD}\r".encode()),
        ],
    )
    text = ANSI.sub("", shown)
    assert code == 0, text
    assert "cache.clear is critical on this server" in text or "is critical on this server" in text
    assert "(approved, authored, responsible, reviewed)" in text  # the server's meanings offered
    assert "cleared 0 cached results" in text and PASSWORD not in text  # the password is not echoed

    # --sign-as and --meaning given: only the password is asked; a wrong one is refused (exit 4)
    shown, code = in_terminal(
        ["cache", "clear", "--yes", "--sign-as", cli_env.signer, "--meaning", "approved"],
        env,
        [("password of", b"not the password at all\r")],
    )
    assert code == Exit.REFUSED and "SIGNATURE_INVALID" in shown and "sign as" not in shown, shown


def test_ctrl_c_cancels_a_critical_job_with_a_signature(cli_env: Org) -> None:
    env = terminal_env(cli_env.server, cli_env.key)
    shown, code = in_terminal(
        ["submit", "sleep", "--data", '{"seconds": 60}', "--priority", "critical", "--wait"],
        env,
        [
            ("sleep running", b"\x03"),
            ("cancel the job", b"y\r"),
            ("sign as", f"{cli_env.signer}\r".encode()),
            ("meaning", b"\r"),  # the first of the server's meanings
            ("password of", f"{PASSWORD}\r".encode()),
        ],
    )
    text = ANSI.sub("", shown)
    assert code == Exit.INTERRUPTED, text
    job_id = re.search(r"job ([0-9a-f-]{36}): (cancelled|cancellation requested)", text)
    assert job_id, text
    with Client(cli_env.url, api_key=cli_env.key) as client:
        [signed] = client.signatures(job_id[1])
    assert (signed.signer_id, signed.meaning) == (cli_env.signer, "approved")


def test_users_over_http(cli_env: Org, tmp_path: Path) -> None:
    user_id = f"cy-{uuid.uuid4().hex[:6]}"
    added = cli("users", "add", user_id, "--name", "Cy Young", "--role", "operator", "--password-stdin", "--json",
                stdin=PASSWORD + "\n")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["org_id"] == cli_env.org  # the admin's organisation, over HTTP
    weak = cli("users", "add", f"x{user_id}", "--name", "X", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert error(weak, Exit.REFUSED)["field"] == "password"
    listed = ok_json("users", "list")
    assert {u["user_id"] for u in listed} == {cli_env.signer, user_id} and "argon2" not in json.dumps(listed)
    table = cli("users", "list")
    assert table.exit_code == 0 and "Cy Young" in table.stdout and "LAST SIGN-IN" in table.stdout
    assert ok_json("users", "update", user_id, "--role", "viewer")["role"] == "viewer"
    assert ok_json("users", "disable", user_id)["disabled"] is True
    assert (
        error(cli("users", "sign-in", user_id, "--password-stdin", stdin=PASSWORD + "\n"), Exit.REFUSED)["error"]
        == "INVALID_CREDENTIALS"
    )
    assert ok_json("users", "disable", user_id, "--enable")["disabled"] is False
    new = "a brand new pass phrase"
    assert cli("users", "passwd", user_id, "--password-stdin", stdin=new + "\n").exit_code == 0
    assert ok_json("users", "unlock", user_id)["failed_attempts"] == 0
    assert ok_json("users", "show", user_id)["name"] == "Cy Young"
    assert error(cli("users", "show", "nobody-at-all"), Exit.NOT_FOUND)["error"] == "USER_NOT_FOUND"

    signed_in = cli("users", "sign-in", user_id, "--password-stdin", stdin=new + "\n")
    assert signed_in.exit_code == 0, signed_in.stderr
    token = signed_in.stdout.strip().splitlines()[-1]
    as_user = ["--url", cli_env.url, "--token", token]
    listed_jobs = runner.invoke(app, [*as_user, "jobs", "list", "--json"], env={"CONVEYOR_API_KEY": ""})
    assert listed_jobs.exit_code == 0 and json.loads(listed_jobs.stdout) == [], listed_jobs.stderr
    me = runner.invoke(app, [*as_user, "whoami", "--json"], env={"CONVEYOR_API_KEY": ""})
    assert me.exit_code == 0, me.stderr
    assert {k: json.loads(me.stdout)[k] for k in ("user_id", "role", "via")} == {
        "user_id": user_id,
        "role": "viewer",
        "via": "jwt",
    }
    key_caller = cli("whoami")
    assert key_caller.exit_code == 0 and "(api_key): admin" in key_caller.stdout and "keys:manage" in key_caller.stdout

    # --database-url: straight in the database, whatever the server (every organisation's users)
    direct = cli("users", "list", "--database-url", cli_env.server.database_url)
    assert direct.exit_code == 0, direct.stderr
    assert user_id in {json.loads(line)["id"] for line in direct.stdout.splitlines()}


def test_top_json_is_one_snapshot(cli_env: Org) -> None:
    running = ok_json("submit", "sleep", "--data", '{"seconds": 30}')
    with Client(cli_env.url, api_key=cli_env.key) as client:
        for _ in range(400):
            if client.get(running["id"]).status == "running":
                break
            time.sleep(0.05)
        snapshot = ok_json("top")
        assert set(snapshot) == {"at", "stats", "queues", "running"}
        assert snapshot["stats"]["running"] >= 1 and running["queue"] in [q["name"] for q in snapshot["queues"]]
        assert running["id"] in [j["id"] for j in snapshot["running"]["jobs"]]
        assert snapshot["running"]["total"] >= 1
        [worker, *_] = ok_json("workers")
        assert worker["pid"] and running["queue"] in worker["queues"] and worker["concurrency"] >= 1
        table = cli("workers")
        assert table.exit_code == 0 and str(worker["pid"]) in table.stdout and "LAST SEEN" in table.stdout
        client.cancel(running["id"])
