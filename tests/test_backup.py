"""Backups (seed 001's `backup` job, `conveyor restore`) on both databases: a backup taken while
1,000 jobs run restores to a database identical to its snapshot (every table's row count, the
audit chain verifying to the same head, finished jobs' rows byte for byte); the file is
encrypted (no plaintext of the database in it), checksummed and authenticated chunk by chunk;
tampering, truncation, an unknown key, a forged manifest and a broken audit chain are each
caught; storage paths are confined to the backup root; restore refuses a non-empty target."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
import sqlalchemy as sa
from conftest import TEST_ENCRYPTION, _drop_database, eventually, make_settings, pg_admin_url, running_worker
from jobtypes_for_tests import jobtypes
from typer.testing import CliRunner

from conveyor import Conveyor, JobRequest, Priority
from conveyor.backup import BackupError, Backups, BackupUnreadable, RestoreRefused, VerificationFailed, fileformat
from conveyor.backup.databases import describe
from conveyor.cli import app as cli
from conveyor.crypto import Keyring, parse_keys
from conveyor.errors import InvalidJobData
from conveyor.packs.medication.backup import BackupInput
from conveyor.store.audit import AuditFilter
from conveyor.store.migrate import HEAD_REVISION, sync_engine

MARKER = "SSN-078-05-1120"  # plaintext that must not be found in a backup file
runner = CliRunner()


@contextlib.contextmanager
def empty_database(like: str, directory: Path) -> Iterator[str]:
    """A new, empty database of the same kind as `like` (a restore target), dropped after."""
    if like.startswith("sqlite"):
        yield f"sqlite:///{directory / f'restored-{secrets.token_hex(3)}.db'}"
        return
    admin = pg_admin_url()
    name = f"conveyor_restored_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)


def rows_of(url: str, table: str, key: str = "id") -> dict[str, dict[str, Any]]:
    engine = sync_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()
            # SQLite keeps a UUID as 32 hex digits, PostgreSQL as a uuid
            return {str(UUID(str(r[key]))) if isinstance(r[key], str | UUID) else str(r[key]): dict(r) for r in rows}
    finally:
        engine.dispose()


def scratch_databases() -> list[str]:
    with psycopg.connect(pg_admin_url()) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'conveyor_verify_%'")]


def without_audit(tables: dict[str, int]) -> dict[str, int]:
    # Sealing the journal moves its records into the chain and lists the jobs they name in
    # conveyor_audit_subjects: these three change when a restored chain is verified.
    audit_tables = ("conveyor_audit", "conveyor_audit_journal", "conveyor_audit_subjects")
    return {t: n for t, n in tables.items() if t not in audit_tables}


def audit_rows(tables: dict[str, int]) -> int:
    """Records chained and waiting in the journal (verifying a chain seals the journal first)."""
    return tables["conveyor_audit"] + tables["conveyor_audit_journal"]


@contextlib.asynccontextmanager
async def backing_up(database_url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Conveyor]:
    settings = make_settings(
        database_url, backup_root=str(tmp_path / "backups"), data_dir=str(tmp_path / "data"),
        **{**TEST_ENCRYPTION, **overrides},
    )  # fmt: skip
    conveyor = Conveyor.from_settings(settings, registries=[jobtypes])
    await conveyor.start()
    try:
        yield conveyor
    finally:
        await conveyor.close()


BACKUP = {"backup_type": "full", "storage_config": {"type": "local", "path": "nightly"}}


async def test_a_backup_taken_while_1000_jobs_run_restores_to_an_identical_database(
    database_url: str, tmp_path: Path
) -> None:
    async with backing_up(database_url, tmp_path) as app:
        jobs = await app.engine.enqueue_many([JobRequest("sleep", {"seconds": 0.05}) for _ in range(1000)])
        before_scratch = [] if database_url.startswith("sqlite") else scratch_databases()
        async with running_worker(app, concurrency=10):

            async def some_done() -> bool:
                return (await app.engine.counts()).get("completed", 0) >= 50

            await eventually(some_done, timeout=60)
            job = await app.engine.enqueue("backup", BACKUP, priority=Priority.CRITICAL)
            done = await app.engine.wait(job.id, timeout=120)
            assert done.status == "completed", done.error
        result = done.result
        assert result["verified"] is True and result["file"].startswith("nightly/")
        backup_file = tmp_path / "backups" / result["file"]
        manifest = json.loads((tmp_path / "backups" / result["manifest"]).read_text())
        assert manifest["dialect"] == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
        assert manifest["schema_revision"] == HEAD_REVISION
        assert manifest["tables"]["conveyor_jobs"] == 1001  # the 1,000 and the backup job itself
        assert manifest["file_sha256"] == result["file_sha256"] == fileformat.file_sha256(backup_file)
        assert manifest["audit"]["seq"] > 0
        # The job's own record of it, in the source's audit trail.
        records, _ = await app.audit.list(AuditFilter(action="backup.create"), limit=5)
        assert [r.object_id for r in records] == [str(job.id)]
        if not database_url.startswith("sqlite"):
            # The verification's database was dropped. Another test process may be verifying a
            # backup of its own at this moment: wait for scratch databases that are not ours to go.
            async def ours_gone() -> bool:
                return not set(scratch_databases()) - set(before_scratch)

            await eventually(ours_gone, timeout=60, interval=0.5)

        with empty_database(database_url, tmp_path) as target:
            restored = await app.backups.restore(backup_file, target)
            assert restored.audit["ok"] is True and restored.audit["headSeq"] >= manifest["audit"]["seq"]
            snapshot = await asyncio.to_thread(describe, target)
            # Every table as in the snapshot; the audit trail too, with the restore's own record.
            assert without_audit(snapshot.tables) == without_audit(manifest["tables"])
            assert audit_rows(snapshot.tables) == audit_rows(manifest["tables"]) + 1
            # The chain up to the snapshot's head, record for record.
            source_chain = rows_of(database_url, "conveyor_audit", "seq")
            restored_chain = rows_of(target, "conveyor_audit", "seq")
            head = manifest["audit"]["seq"]
            assert {s: r for s, r in restored_chain.items() if int(s) <= head} == {
                s: r for s, r in source_chain.items() if int(s) <= head
            }
            # The jobs were running: some had finished at the snapshot, others had not. Those
            # finished are stored in the restore exactly as in the source; the backup job itself
            # was running when its snapshot was taken.
            source_jobs, restored_jobs = rows_of(database_url, "conveyor_jobs"), rows_of(target, "conveyor_jobs")
            assert set(restored_jobs) == {str(j.id) for j in jobs} | {str(job.id)}
            assert restored_jobs[str(job.id)]["status"] == "running"
            finished = [i for i, r in restored_jobs.items() if r["status"] == "completed"]
            assert 50 <= len(finished) < 1000
            assert all(restored_jobs[i] == source_jobs[i] for i in finished)


async def test_the_backup_file_holds_no_plaintext_and_the_job_no_secret(database_url: str, tmp_path: Path) -> None:
    async with backing_up(database_url, tmp_path) as app:
        await app.engine.enqueue("t.sensitive", {"patient": "Jane Roe", "note": f"dose for {MARKER}"})
        await app.engine.enqueue("t.echo", {"value": MARKER})  # not sensitive: plain in the database
        async with running_worker(app):
            job = await app.engine.enqueue("backup", BACKUP)
            done = await app.engine.wait(job.id, timeout=60)
        assert done.status == "completed", done.error
        raw = (tmp_path / "backups" / done.result["file"]).read_bytes()
        assert MARKER.encode() not in raw and b"conveyor_jobs" not in raw
        assert raw.startswith(fileformat.MAGIC)
        # The job's own data, result and logs are sealed at rest (sensitive), and its logs say
        # what happened without a key or the database's address.
        stored = rows_of(database_url, "conveyor_jobs")[str(job.id)]
        assert "$sealed" in json.dumps(stored["data"]) and "$sealed" in json.dumps(stored["result"])
        logs, _ = await app.engine.logs(job.id)
        text = "\n".join(entry.message for entry in logs)
        assert "step 1/3: snapshot" in text and "step 3/3: verify" in text and "verified" in text
        secret = TEST_ENCRYPTION["encryption_keys"]["test"]
        assert secret not in text and sa.make_url(database_url).database not in text
        assert done.progress.step_name == "done" and done.progress.total_steps == 3


async def test_the_request_is_validated_naming_the_field(sqlite_url: str, tmp_path: Path) -> None:
    async with backing_up(sqlite_url, tmp_path) as app:
        definition = app.engine.registry.get("backup")  # from the medication pack, as the API finds it
        assert definition.input_model is BackupInput and definition.sensitive
        assert set(BackupInput.model_fields) == {"backup_type", "storage_config"}
        assert set(BackupInput.model_fields["storage_config"].annotation.model_fields) == {"type", "path"}
        cases = [
            ({**BACKUP, "backup_type": "incremental"}, "backup_type", "'full'"),
            ({**BACKUP, "storage_config": {"type": "s3", "path": "x"}}, "storage_config.type", "'local'"),
            ({**BACKUP, "storage_config": {"type": "local", "path": "../etc"}}, "storage_config.path", ".."),
            ({**BACKUP, "storage_config": {"type": "local", "path": "a b"}}, "storage_config.path", "^[a-zA-Z0-9"),
            ({"backup_type": "full"}, "storage_config", "required"),
            ({**BACKUP, "compress": True}, "compress", "not permitted"),
        ]
        for data, field, says in cases:
            with pytest.raises(InvalidJobData) as caught:
                await app.engine.enqueue("backup", data)
            [error] = caught.value.errors
            assert error["field"] == field and says in error["message"], error


async def test_storage_paths_stay_under_the_backup_root(sqlite_url: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    async with backing_up(sqlite_url, tmp_path) as app:
        root = tmp_path / "backups"
        assert app.backups.directory("a/b") == (root / "a" / "b").resolve()
        assert app.backups.directory(str(root / "c")) == (root / "c").resolve()  # absolute, inside
        (root / "escape").symlink_to(outside)
        for raw in ("escape", "escape/deeper", str(outside), "/etc"):
            with pytest.raises(BackupError, match="outside the backup root"):
                app.backups.directory(raw)
        assert not (outside / "deeper").exists()
        # Through the job: it fails for good, naming the field, and writes nothing outside.
        async with running_worker(app):
            job = await app.engine.enqueue("backup", {**BACKUP, "storage_config": {"type": "local", "path": "escape"}})
            done = await app.engine.wait(job.id, timeout=30)
        assert done.status == "failed" and "storage_config.path" in done.error["message"]
        assert done.attempt == 1 and list(outside.iterdir()) == []


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "conveyor.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(parse_keys(TEST_ENCRYPTION["encryption_keys"]), "test")


def test_the_file_is_authenticated_record_by_record(tmp_path: Path, keyring: Keyring) -> None:
    dump = tmp_path / "dump"
    dump.write_bytes(os.urandom(10_000))
    out = tmp_path / "b.cvbak"
    written = fileformat.encrypt(
        dump, out, keyring, {"dialect": "sqlite"}, lambda n, h: {"dump_bytes": n, "dump_sha256": h}, chunk_bytes=1000
    )
    assert written.dump_bytes == 10_000 and written.file_sha256 == fileformat.file_sha256(out)
    header, manifest = fileformat.decrypt(out, tmp_path / "plain", keyring)
    assert (tmp_path / "plain").read_bytes() == dump.read_bytes() and header["kid"] == "test"
    assert (
        fileformat.read_manifest(out, keyring) == manifest == {"dump_bytes": 10_000, "dump_sha256": written.dump_sha256}
    )
    raw = out.read_bytes()
    record = 4 + 1000 + fileformat.TAG_BYTES
    head_length = int.from_bytes(raw[len(fileformat.MAGIC) : len(fileformat.MAGIC) + 4], "big")
    start = len(fileformat.MAGIC) + 4 + head_length  # the first record
    first, second = raw[start : start + record], raw[start + record : start + 2 * record]
    flipped = bytearray(raw)
    flipped[start + 500] ^= 1
    swapped = raw[:start] + second + first + raw[start + 2 * record :]
    # cut: the last record (the manifest) dropped, so that a dump chunk ends the file
    cut = raw[: len(raw) - (4 + len(json.dumps(manifest, sort_keys=True)) + fileformat.TAG_BYTES)]
    header_altered = raw.replace(b'"dialect":"sqlite"', b'"dialect":"sqlitf"')
    for name, damaged in [("flipped", flipped), ("swapped", swapped), ("cut", cut), ("header", header_altered),
                          ("half", raw[: len(raw) // 2])]:  # fmt: skip
        path = tmp_path / f"{name}.cvbak"
        path.write_bytes(bytes(damaged))
        with pytest.raises(BackupUnreadable):
            fileformat.decrypt(path, tmp_path / f"{name}.plain", keyring)
    other = Keyring(parse_keys({"other": Keyring.new_key()}), "other")
    with pytest.raises(BackupUnreadable, match="key 'test', which is not configured"):
        fileformat.decrypt(out, tmp_path / "other.plain", other)


def test_restore_refuses_damage_a_forged_manifest_and_a_non_empty_target(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = database_url
    monkeypatch.setenv("CONVEYOR_ENCRYPTION_KEYS", json.dumps(TEST_ENCRYPTION["encryption_keys"]))
    monkeypatch.setenv("CONVEYOR_BACKUP_ROOT", str(tmp_path / "backups"))
    taken = runner.invoke(cli, ["backup", "--path", "cli", "--database-url", source])
    assert taken.exit_code == 0, taken.output
    summary = json.loads(taken.output)
    file = tmp_path / "backups" / summary["file"]

    with empty_database(source, tmp_path) as target, empty_database(source, tmp_path) as untouched:
        restored = runner.invoke(cli, ["restore", str(file), "--database-url", target])
        assert restored.exit_code == 0, restored.output
        shown = json.loads(restored.output)
        assert shown["backup_id"] == summary["backup_id"] and shown["audit"]["ok"] is True
        assert "backup.restore" in {r["action"] for r in rows_of(target, "conveyor_audit_journal").values()}

        again = runner.invoke(cli, ["restore", str(file), "--database-url", target])
        assert again.exit_code == 4 and json.loads(again.stderr)["error"] == RestoreRefused.code
        forced = runner.invoke(cli, ["restore", str(file), "--force", "--database-url", target])
        assert forced.exit_code == 0, forced.output
        assert json.loads(forced.output)["audit"]["ok"] is True

        # One byte changed: the manifest beside the file catches it before anything is
        # decrypted; without that manifest, the chunk's tag does. Nothing reaches the target.
        damaged = tmp_path / "damaged.cvbak"
        raw = bytearray(file.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        damaged.write_bytes(bytes(raw))
        shutil.copy(f"{file}.manifest.json", f"{damaged}.manifest.json")
        for says in ("SHA-256 differs", "does not open"):
            failed = runner.invoke(cli, ["restore", str(damaged), "--database-url", untouched])
            assert failed.exit_code == 4 and json.loads(failed.stderr)["error"] == BackupUnreadable.code
            assert says in json.loads(failed.stderr)["message"]
            Path(f"{damaged}.manifest.json").unlink(missing_ok=True)
            if not untouched.startswith("sqlite") or Path(sa.make_url(untouched).database or "").exists():
                assert describe(untouched).tables == {}
    missing = runner.invoke(cli, ["restore", str(tmp_path / "none.cvbak"), "--database-url", source])
    assert missing.exit_code == 3

    # An authentic file (made with the key) whose manifest does not match its dump: the
    # restore is checked against the manifest, and the mismatch ends with exit 1.
    keyring = Keyring(parse_keys(TEST_ENCRYPTION["encryption_keys"]), "test")
    dump = tmp_path / "dump"
    fileformat.decrypt(file, dump, keyring)
    manifest = fileformat.read_manifest(file, keyring)
    forged = tmp_path / "forged.cvbak"
    lying = {**manifest, "tables": {**manifest["tables"], "conveyor_jobs": manifest["tables"]["conveyor_jobs"] + 7}}

    def lie(dump_bytes: int, dump_sha256: str) -> dict[str, Any]:
        return {**lying, "dump_bytes": dump_bytes, "dump_sha256": dump_sha256}

    fileformat.encrypt(dump, forged, keyring, {"dialect": manifest["dialect"]}, lie)
    checked = runner.invoke(cli, ["verify-backup", str(forged), "--database-url", source])
    assert checked.exit_code == 1 and checked.stderr, (checked.exception, checked.output)
    assert json.loads(checked.stderr)["error"] == VerificationFailed.code
    assert json.loads(checked.stderr)["tables"]["conveyor_jobs"]["manifest"] == lying["tables"]["conveyor_jobs"]
    assert runner.invoke(cli, ["verify-backup", str(file), "--database-url", source]).exit_code == 0


async def test_a_database_whose_audit_chain_is_broken_gives_no_backup(sqlite_url: str, tmp_path: Path) -> None:
    async with backing_up(sqlite_url, tmp_path) as app:
        for n in range(3):
            await app.audit.record("test.event", "thing", str(n))
        await app.audit.seal()
        engine = sync_engine(sqlite_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE conveyor_audit SET action = 'test.rewritten' WHERE seq = 2"))
        engine.dispose()
        async with running_worker(app):
            job = await app.engine.enqueue("backup", BACKUP)
            done = await app.engine.wait(job.id, timeout=60)
        assert done.status == "failed" and done.error["code"] == VerificationFailed.code
        assert "audit chain does not verify" in done.error["message"] and done.attempt == 1
        left = [p.name for p in (tmp_path / "backups").rglob("*") if p.is_file()]
        assert left == []  # an unverified file is no backup: removed, with the work files


async def test_without_a_key_there_is_no_backup(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nokey.db'}"
    backups = Backups(url, keyring=None, root=tmp_path / "backups")
    with pytest.raises(BackupError, match="CONVEYOR_ENCRYPTION_KEYS"):
        await backups.take(tmp_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_cancelled_backup_stops_its_pg_dump(postgres_url: str, tmp_path: Path) -> None:
    # A thread cannot be cancelled: without the stop event, the worker (and its process's
    # shutdown) would wait for the dump to finish. This pg_dump never would.
    pg_bin, pid_file = tmp_path / "bin", tmp_path / "pg_dump.pid"
    pg_bin.mkdir()
    (pg_bin / "pg_dump").write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    (pg_bin / "pg_dump").chmod(0o755)
    settings = {"backup_pg_bin": str(pg_bin), "cancel_grace_seconds": 0.2}
    async with backing_up(postgres_url, tmp_path, **settings) as app, running_worker(app):
        job = await app.engine.enqueue("backup", BACKUP)
        await eventually(lambda: asyncio.sleep(0, pid_file.exists() and pid_file.read_text().strip()))
        pid = int(pid_file.read_text())
        assert _alive(pid)
        await app.engine.cancel(job.id)
        done = await app.engine.wait(job.id, timeout=30)
        assert done.status == "cancelled"
        await eventually(lambda: asyncio.sleep(0, not _alive(pid)), timeout=10)
    assert [p.name for p in (tmp_path / "backups").rglob("*") if p.is_file()] == []
