"""Encryption at rest on both databases: a sensitive job type's data, result and log lines are
stored sealed (the raw database holds no plaintext), read back opened, bound to their job
and field, refused without a key, and re-sealed by key rotation while readable throughout."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from conftest import api_harness, make_settings, running_worker
from jobtypes_for_tests import jobtypes
from typer.testing import CliRunner

from conveyor import Conveyor, JobFilter
from conveyor.audit import Actor, acting_as
from conveyor.cli import app as cli
from conveyor.crypto import Keyring, SealError, aad, parse_keys
from conveyor.engine.reads import Reads
from conveyor.engine.sealing import Sealing, rotate_keys
from conveyor.errors import InvalidJobOptions
from conveyor.model import Job, Outcome, OutcomeKind, Owner, Status, new_job_id, utc_now
from conveyor.store.migrate import sync_engine

K1, K2 = Keyring.new_key(), Keyring.new_key()
MARKER = "SSN-078-05-1120"  # what must never be found in the database as plain text
PATIENT = {"patient": "Jane Roe", "note": f"dose for {MARKER}"}


@contextlib.asynccontextmanager
async def conveyor_with(
    database_url: str, keys: dict[str, str], current: str | None = None, **overrides: Any
) -> AsyncIterator[Conveyor]:
    settings = make_settings(database_url, encryption_keys=keys, encryption_key_id=current, **overrides)
    app = Conveyor.from_settings(settings, registries=[jobtypes])
    await app.start()
    try:
        yield app
    finally:
        await app.close()


def raw_text(database_url: str, *, files: bool = False) -> str:
    """Every row of every table, every column, as text; with `files`, on SQLite, also the
    database's files as bytes (what no row holds any more included: old pages, the WAL)."""
    engine = sync_engine(database_url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            assert "conveyor_jobs" in tables and "conveyor_job_logs" in tables
            # Table names come from the database's own catalogue (bandit B608).
            rows = [str(row) for t in tables for row in conn.execute(sa.text(f'SELECT * FROM "{t}"'))]  # nosec B608
    finally:
        engine.dispose()
    raw = []
    if files and database_url.startswith("sqlite"):
        path = Path(sa.engine.make_url(database_url).database or "")
        raw = [f.read_bytes().decode("latin-1") for f in (path, Path(f"{path}-wal")) if f.exists()]
    return "\n".join(rows + raw)


async def run_one(app: Conveyor) -> Any:
    job = await app.engine.enqueue("t.sensitive", PATIENT)
    async with running_worker(app):
        return await app.engine.wait(job.id, timeout=10)


def test_a_sealed_value_opens_only_where_it_belongs() -> None:
    ring = Keyring(parse_keys({"k1": K1}), "k1")
    sealed = ring.seal_json({"a": 1}, aad("job-1", "data"))
    assert set(sealed) == {"$sealed", "kid", "ct"} and sealed["kid"] == "k1"
    assert ring.open_json(sealed, aad("job-1", "data")) == {"a": 1}
    for elsewhere in (aad("job-2", "data"), aad("job-1", "result")):
        with pytest.raises(SealError, match="does not open"):
            ring.open_json(sealed, elsewhere)
    raw = bytearray(base64.b64decode(sealed["ct"]))
    raw[-1] ^= 1
    with pytest.raises(SealError):
        ring.open_json({**sealed, "ct": base64.b64encode(bytes(raw)).decode()}, aad("job-1", "data"))
    with pytest.raises(SealError, match="not configured"):
        Keyring(parse_keys({"k2": K2}), "k2").open_json(sealed, aad("job-1", "data"))
    text = ring.seal_text("hello", "t")
    assert text.startswith("sealed:1:k1:") and ring.open_text(text, "t") == "hello"


def test_an_error_keeps_in_clear_only_what_has_the_form_of_code() -> None:
    sealing = Sealing(jobtypes, Keyring(parse_keys({"k1": K1}), "k1"))
    now = utc_now()
    job = Job(new_job_id(), "t.sensitive", "default", Status.RUNNING, 5, {}, 1, 3, now, now, now)
    raised = {"type": "HTTPError", "message": f"no record {MARKER}", "code": 404, "retryable": True, "traceback": "…"}
    free_text = {"type": "Bad Type", "message": "x", "code": "patient Jane Roe", "retryable": "yes"}
    for error, plain in ((raised, {"type": "HTTPError", "retryable": True}), (free_text, {})):
        outcome = sealing.seal_outcome(job, Outcome(job.id, 1, "w", OutcomeKind.FAILED, error=error))
        stored = outcome.error
        # An int code (an HTTP status, or a record's number) and free text are sealed with the message.
        assert {k: v for k, v in stored.items() if k != "message"} == plain
        assert stored["message"].startswith("sealed:1:k1:") and "Jane" not in str(stored) and MARKER not in str(stored)
        assert sealing.opened(dataclasses.replace(job, error=stored)).error == error


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"k1": "not base64!"}, "not base64"),
        ({"k1": base64.b64encode(b"short").decode()}, "32 bytes"),
        ({"a:b": K1}, "without ':'"),
    ],
)
def test_bad_keys_are_refused_at_start(keys: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_keys(keys)


async def test_sensitive_data_results_and_logs_hold_no_plaintext_at_rest(database_url: str) -> None:
    async with conveyor_with(database_url, {"k1": K1}) as app:
        done = await run_one(app)
        assert done.status.value == "completed"
        assert done.data == PATIENT and done.result == {"patient": "Jane Roe", "summary": f"dose for {MARKER} reviewed"}
        logs, _ = await app.engine.logs(done.id)
        assert [e.message for e in logs] == [f"reviewing dose for {MARKER}"]
        await app.audit.seal()
        stored = raw_text(database_url, files=True)
        assert str(done.id) in stored and "sealed:1:k1:" in stored  # the rows are there, sealed
        assert MARKER not in stored and "Jane Roe" not in stored


async def test_a_failing_sensitive_jobs_errors_hold_no_plaintext_and_rotate(database_url: str) -> None:
    """Every place a failing job's error text is kept — its last error, each attempt's log line,
    its per-item errors, the audit trail, the webhook outbox and delivery — holds no plaintext;
    an admin reads the errors over the API; rotation re-seals them (the old key gone, they open)."""
    hooks = {"webhook_allow_hosts": "127.0.0.1", "scheduler_enabled": False}
    async with api_harness(database_url, encryption_keys={"k1": K1}, **hooks) as api:
        hook, secret = await api.conveyor.webhooks.create(
            org_id="org-a", url="http://127.0.0.1:9/hook", events=["job.failed"]
        )
        made = await api.client.post(
            "/api/v1/jobs", json={"type": "t.sensitive_failing", "data": PATIENT}, headers=api.jwt("nurse-1")
        )
        assert made.status_code == 201, made.text
        job_id = made.json()["data"]["jobId"]
        async with running_worker(api.conveyor):
            failed = await api.conveyor.engine.wait(UUID(job_id), timeout=10)
        assert failed.status.value == "failed" and failed.attempt == 2  # retryable, then permanent
        assert await api.conveyor.dispatcher.run_once() == 1  # the job.failed delivery, stored as a job

        admin = api.jwt("admin-1", roles=["admin"])
        got = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=admin)).json()["data"]
        assert got["error"]["message"] == f"cannot review dose for {MARKER}"
        assert got["error"]["type"] == "PermanentError" and got["error"]["code"] == "REVIEW_REFUSED"
        assert MARKER in got["error"]["traceback"]
        [item] = got["itemErrors"]
        assert item == {
            "item": "Jane Roe", "message": f"no schedule for dose for {MARKER}", "code": f"missing dose for {MARKER}",
            "details": {"who": "Jane Roe"},
        }  # fmt: skip
        logs = (await api.client.get(f"/api/v1/jobs/{job_id}/logs", headers=admin)).json()["data"]["logs"]
        attempts = [e["message"] for e in logs if e["component"] == "worker"]
        assert len(attempts) == 2 and all(MARKER in m for m in attempts), attempts
        assert "pharmacy did not answer" in attempts[0]
        await api.conveyor.audit.seal()
        reads = [r.after for r in await api.conveyor.store.audit_page(0, 500) if r.action == "job.read"]
        assert {"fields": ["data", "error", "item_errors"]} in reads  # the admin's read, recorded

    stored = raw_text(database_url, files=True)
    assert job_id in stored and "REVIEW_REFUSED" in stored  # the machine code stays plain
    assert MARKER not in stored and "Jane Roe" not in stored

    async with conveyor_with(database_url, {"k2": K2}) as stranger:  # a process without the key
        seen = await stranger.engine.get(UUID(job_id))
        assert seen.error["message"].startswith("sealed:1:k1:") and seen.error["code"] == "REVIEW_REFUSED"
        assert seen.item_errors[0]["message"].startswith("sealed:1:k1:") and seen.item_errors[0]["item"] is None
    async with conveyor_with(database_url, {"k1": K1, "k2": K2}, current="k2") as both:
        assert await rotate_keys(both.store, both.engine.sealing, batch=1) == {
            "job_fields": 1, "job_errors": 2, "log_lines": 2, "state_values": 0, "notifications": 0,
            "webhook_secrets": 1,  # the subscription's, sealed with the old key too
        }  # fmt: skip
    stored = raw_text(database_url)
    assert set(re.findall(r"sealed:1:(\w+):", stored)) == {"k2"}
    assert MARKER not in raw_text(database_url, files=True)
    async with conveyor_with(database_url, {"k2": K2}) as new:  # the old key is gone now
        again = await new.engine.get(UUID(job_id))
        assert again.error["message"] == f"cannot review dose for {MARKER}"
        assert again.item_errors[0]["details"] == {"who": "Jane Roe"}
        assert new.webhooks.open_secret(await new.webhooks.get(hook.id)) == secret


async def test_a_sensitive_job_type_is_refused_without_a_key(app: Conveyor) -> None:
    with pytest.raises(InvalidJobOptions, match="CONVEYOR_ENCRYPTION_KEYS"):
        await app.engine.enqueue("t.sensitive", PATIENT)
    assert (await app.engine.enqueue("t.echo", {"value": 1})).data == {"value": 1}  # others are not sealed


async def test_rotation_reseals_everything_with_the_new_key(database_url: str) -> None:
    owner = Owner(user_id="u1", org_id="org-a")
    async with conveyor_with(database_url, {"k1": K1}) as old:
        done = await run_one(old)
        await old.state.namespace(owner, "clinic").put("p-1", PATIENT)
        note, _ = await old.notifications.notify(
            owner=owner, user_id="u1", kind="reminder", body=PATIENT, delivery_key="rotation-test"
        )
    async with conveyor_with(database_url, {"k1": K1, "k2": K2}, current="k2") as both:
        assert await rotate_keys(both.store, both.engine.sealing, batch=1) == {
            "job_fields": 2, "job_errors": 0, "log_lines": 1, "state_values": 1, "notifications": 1,
            "webhook_secrets": 0,
        }  # fmt: skip
        assert await rotate_keys(both.store, both.engine.sealing) == {
            "job_fields": 0, "job_errors": 0, "log_lines": 0, "state_values": 0, "notifications": 0,
            "webhook_secrets": 0,
        }  # fmt: skip
    stored = raw_text(database_url)
    # Key ids as stored: a JSON field's "kid", a log line's prefix (ciphertext may hold any text).
    kids = set(re.findall(r"'kid': '(\w+)'", stored)) | set(re.findall(r"sealed:1:(\w+):", stored))
    assert kids == {"k2"}
    async with conveyor_with(database_url, {"k2": K2}) as new:  # the old key is gone now
        again = await new.engine.get(done.id)
        assert again.data == PATIENT and again.result["patient"] == "Jane Roe"
        logs, _ = await new.engine.logs(done.id)
        assert MARKER in logs[0].message
        assert (await new.state.namespace(owner, "clinic").get("p-1")).value == PATIENT  # type: ignore[union-attr]
        assert (await new.notifications.get(note.id)).body == PATIENT


def test_keys_rotate_prints_what_it_resealed(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def subscribe() -> tuple[Any, str]:
        async with conveyor_with(database_url, {"k1": K1}, webhook_allow_hosts="127.0.0.1") as old:
            return await old.webhooks.create(org_id="org-a", url="http://127.0.0.1:9/hook", events=["job.failed"])

    hook, secret = asyncio.run(subscribe())
    monkeypatch.setenv("CONVEYOR_ENCRYPTION_KEYS", json.dumps({"k1": K1, "k2": K2}))
    monkeypatch.setenv("CONVEYOR_ENCRYPTION_KEY_ID", "k2")
    rotated = CliRunner().invoke(cli, ["keys", "rotate", "--database-url", database_url])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout) == {
        "job_fields": 0, "job_errors": 0, "log_lines": 0, "state_values": 0, "notifications": 0, "webhook_secrets": 1
    }  # fmt: skip
    monkeypatch.delenv("CONVEYOR_ENCRYPTION_KEYS")
    monkeypatch.delenv("CONVEYOR_ENCRYPTION_KEY_ID")

    async def read_back() -> str:
        async with conveyor_with(database_url, {"k2": K2}) as new:  # the old key dropped: deliveries still sign
            return new.webhooks.open_secret(await new.webhooks.get(hook.id))

    assert asyncio.run(read_back()) == secret


async def test_a_process_without_the_key_reads_sealed_values_and_cannot_run_them(database_url: str) -> None:
    async with conveyor_with(database_url, {"k1": K1}) as keeper:
        job = await keeper.engine.enqueue("t.sensitive", PATIENT)
    async with conveyor_with(database_url, {"k2": K2}) as stranger:
        seen = await stranger.engine.get(job.id)
        assert seen.data["$sealed"] == 1 and MARKER not in str(seen.data)
        async with running_worker(stranger):
            failed = await stranger.engine.wait(job.id, timeout=10)
        assert failed.status.value == "failed" and failed.error["code"] == "SEALED_VALUE_UNREADABLE"


async def test_the_api_shows_the_caller_its_sensitive_result_in_clear(database_url: str) -> None:
    async with api_harness(database_url, encryption_keys={"k1": K1}) as api:
        headers = api.jwt("nurse-1")
        made = await api.client.post("/api/v1/jobs", json={"type": "t.sensitive", "data": PATIENT}, headers=headers)
        assert made.status_code == 201, made.text
        job_id = made.json()["data"]["jobId"]
        async with running_worker(api.conveyor):
            await api.conveyor.engine.wait(UUID(job_id), timeout=10)
        got = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=headers)).json()["data"]
        assert got["result"] == {"patient": "Jane Roe", "summary": f"dose for {MARKER} reviewed"}
    assert MARKER not in raw_text(database_url, files=True)


async def test_a_retried_sensitive_job_is_sealed_anew_and_returned_in_clear(database_url: str) -> None:
    async with conveyor_with(database_url, {"k1": K1}) as app:
        job = await app.engine.enqueue("t.sensitive", PATIENT)
        await app.engine.cancel(job.id)
        again = await app.engine.retry(job.id)
        assert again.id != job.id and again.data == PATIENT
        assert (await app.engine.get(again.id)).data == PATIENT  # its seal is bound to its own id
    assert MARKER not in raw_text(database_url, files=True)


async def test_reads_of_sensitive_data_are_recorded_and_other_reads_are_not(database_url: str) -> None:
    async with conveyor_with(database_url, {"k1": K1}) as app:
        done = await run_one(app)
        plain = await app.engine.enqueue("t.echo", {"value": 1})
        with acting_as(Actor(user_id="dr-who", name="Dr Who")):
            assert (await app.engine.get(done.id)).data == PATIENT
            page, _ = await app.engine.list(JobFilter(), limit=10)
            assert {j.id for j in page} == {done.id, plain.id}
            logs, _ = await app.engine.logs(done.id)
            assert MARKER in logs[0].message
            await app.engine.get(plain.id)
            await app.engine.logs(plain.id)
        await app.audit.seal()
        reads = [r for r in await app.store.audit_page(0, 200) if r.action == "job.read"]
        assert [(r.object_id, r.after) for r in reads if r.actor_id == "dr-who"] == [
            (str(done.id), {"fields": ["data", "result"]}),
            (None, {"count": 1, "jobIds": [str(done.id)]}),
            (str(done.id), {"fields": ["logs"]}),
        ]
        # run_one's wait returned the job once: one read, by whoever waited (here the system).
        assert [r.actor_id for r in reads if r.actor_id != "dr-who"] == ["system"]


async def test_a_reader_polling_a_sensitive_job_is_recorded_once_a_window(database_url: str) -> None:
    async with conveyor_with(database_url, {"k1": K1}) as app:
        done = await run_one(app)
        clock = [0.0]
        app.engine.reads = Reads(app.audit, timedelta(seconds=60), clock=lambda: clock[0])
        who, other = Actor(user_id="dr-who", name="Dr Who"), Actor(user_id="nurse", name="Nurse")
        with acting_as(who):
            for _ in range(5):  # a live page polling every two seconds
                await app.engine.get(done.id)
                await app.engine.logs(done.id)
                clock[0] += 2
        with acting_as(other):
            await app.engine.get(done.id)  # another reader: recorded
        clock[0] += 60
        with acting_as(who):
            await app.engine.get(done.id)  # the window has passed: recorded again
        app.engine.reads = Reads(app.audit, timedelta(0))
        with acting_as(other):
            await app.engine.get(done.id)
            await app.engine.get(done.id)  # window 0: every read
        await app.audit.seal()
        reads = [(r.actor_id, r.after["fields"]) for r in await app.store.audit_page(0, 200) if r.action == "job.read"]
        assert reads[1:] == [
            ("dr-who", ["data", "result"]),
            ("dr-who", ["logs"]),
            ("nurse", ["data", "result"]),
            ("dr-who", ["data", "result"]),
            ("nurse", ["data", "result"]),
            ("nurse", ["data", "result"]),
        ]


async def test_a_role_that_may_not_read_sensitive_data_gets_it_masked_and_no_read_is_recorded(
    database_url: str,
) -> None:
    """`jobs:read-sensitive` (access.py) decides: an admin reads a sensitive job's data, result
    and logs in clear (each read recorded); a viewer of the same organisation sees the data's
    field names with masked values, the result and log messages masked, and reads nothing."""
    async with api_harness(database_url, encryption_keys={"k1": K1}) as api:
        admin, viewer = await api.key("admin", org="org-a"), await api.key("viewer", org="org-a")
        made = await api.client.post("/api/v1/jobs", json={"type": "t.sensitive", "data": PATIENT}, headers=admin)
        job_id = made.json()["data"]["jobId"]
        echoed = {"value": [7, {"nested": True}]}
        plain = await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": echoed}, headers=admin)
        async with running_worker(api.conveyor):
            await api.conveyor.engine.wait(UUID(job_id), timeout=10)
            await api.conveyor.engine.wait(UUID(plain.json()["data"]["jobId"]), timeout=10)
        await api.conveyor.audit.seal()
        before = len(await api.conveyor.store.audit_page(0, 500))

        shown = (await api.client.get(f"/api/v1/jobs/{job_id}?include=data", headers=viewer)).json()["data"]
        assert shown["data"] == {"patient": "[masked]", "note": "[masked]"}
        assert shown["result"] == "[masked]" and shown["masked"] == ["data", "result"]
        logs = (await api.client.get(f"/api/v1/jobs/{job_id}/logs", headers=viewer)).json()["data"]["logs"]
        assert logs and all(line["message"] == "[masked]" for line in logs if line["component"] != "worker")
        waited = (await api.client.post(f"/api/v1/jobs/{job_id}/wait", json={"timeout": 0}, headers=viewer)).json()
        assert waited["data"]["result"] == "[masked]" and waited["data"]["masked"] == ["result"]
        assert "data" not in waited["data"]  # the input data only where asked for: GET …?include=data
        monitoring = (await api.client.get(f"/api/v1/jobs/jobs/{job_id}", headers=viewer)).json()["job"]
        assert monitoring["result"] == "[masked]"
        assert MARKER not in str([shown, logs, waited, monitoring]) and "Jane Roe" not in str([shown, logs, waited])
        bad = await api.client.get(f"/api/v1/jobs/{job_id}?include=everything", headers=viewer)
        assert bad.status_code == 400 and bad.json()["details"]["field"] == "include"
        # A job type that is not sensitive is shown in clear to the viewer, with nothing masked.
        echo_id = plain.json()["data"]["jobId"]
        echo = (await api.client.get(f"/api/v1/jobs/{echo_id}?include=data", headers=viewer)).json()["data"]
        assert echo["data"] == echoed and "masked" not in echo
        await api.conveyor.audit.seal()
        after = await api.conveyor.store.audit_page(0, 500)
        assert [r for r in after[before:] if r.action == "job.read"] == []  # the viewer opened nothing

        opened = (await api.client.get(f"/api/v1/jobs/{job_id}?include=data", headers=admin)).json()["data"]
        assert opened["data"] == PATIENT and opened["result"]["patient"] == "Jane Roe" and "masked" not in opened
        logs = (await api.client.get(f"/api/v1/jobs/{job_id}/logs", headers=admin)).json()["data"]["logs"]
        assert any(MARKER in line["message"] for line in logs)
        await api.conveyor.audit.seal()
        reads = [r.after for r in (await api.conveyor.store.audit_page(0, 500))[before:] if r.action == "job.read"]
        assert reads == [{"fields": ["data", "result"]}, {"fields": ["logs"]}]
