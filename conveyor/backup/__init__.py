"""Backups of the whole database while jobs run, encrypted, checksummed, verified; restores.

`Backups` is the service the runtime offers job types as `ctx.service("backup")` (the
medication pack's `backup` job type) and the CLI uses directly (`conveyor backup`,
`conveyor restore`). A backup is three steps:

1. snapshot: a consistent copy of the database, with the row count of every table and the
   audit chain's head read from that same copy (databases.py);
2. encrypt: the copy streamed through AES-256-GCM in chunks with the newest key, its SHA-256
   and a manifest sealed into the file (fileformat.py), and the manifest also written beside
   it in clear (`<file>.manifest.json`, with the file's own SHA-256) for operators and tools;
3. verify: the file decrypted and restored into a scratch database, whose row counts and audit
   head must equal the manifest's and whose audit chain must verify from its first record.

Temporary files (the plaintext copy, the decrypted dump) live in a private directory under the
backup root and are removed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.backup import databases, fileformat
from conveyor.backup.databases import Snapshot
from conveyor.backup.errors import BackupError, BackupUnreadable, RestoreRefused, VerificationFailed
from conveyor.paths import check_pattern

if TYPE_CHECKING:
    from conveyor.audit import Verdict
    from conveyor.crypto import Keyring
    from conveyor.engine.audit import Audit

MANIFEST_FORMAT = 1
_T = TypeVar("_T")

SUFFIX = ".cvbak"
MANIFEST_SUFFIX = ".manifest.json"
STEPS = ("snapshot", "encrypt", "verify")

# step number (1-based), step name: told before each step starts
StepHook = Callable[[int, str], None]


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    file: Path
    manifest_file: Path
    file_bytes: int
    file_sha256: str
    manifest: dict[str, Any]
    verified: bool

    def summary(self, root: Path | None = None) -> dict[str, Any]:
        """What a job's result or the CLI shows: paths relative to `root` when under it."""

        def shown(p: Path) -> str:
            return str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)

        m = self.manifest
        return {
            "backup_id": self.backup_id,
            "file": shown(self.file),
            "manifest": shown(self.manifest_file),
            "file_bytes": self.file_bytes,
            "file_sha256": self.file_sha256,
            "dialect": m["dialect"],
            "schema_revision": m["schema_revision"],
            "tables": len(m["tables"]),
            "rows": sum(m["tables"].values()),
            "audit_seq": m["audit"]["seq"],
            "key_id": m["key_id"],
            "verified": self.verified,
        }


@dataclass(frozen=True)
class RestoreResult:
    manifest: dict[str, Any]
    rows: int
    audit: dict[str, Any]


class Backups:
    """Take, restore and verify backups of one database, with one keyring, under one root."""

    def __init__(
        self,
        database_url: str,
        *,
        keyring: Keyring | None,
        root: Path,
        audit_key: str | None = None,
        pg_bin: str = "",
        audit: Audit | None = None,
    ) -> None:
        self.database_url = database_url
        self.keyring = keyring
        self.root = root
        self.audit_key = audit_key
        self.pg_bin = pg_bin
        self.audit = audit

    # --- where backups go ---------------------------------------------------------------

    def directory(self, raw: str) -> Path:
        """The real directory `raw` names under the backup root, created if missing. Resolved
        (`..` collapsed, every symlink followed) before the containment check, so neither a
        traversal nor a symlink planted under the root leads out of it."""
        try:
            check_pattern(raw)
        except ValueError as exc:
            raise BackupError(f"storage_config.path {exc}") from None
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = Path(os.path.realpath(self.root))
        candidate = Path(raw) if raw.startswith("/") else root / raw
        if not _within(Path(os.path.realpath(candidate)), root):
            raise BackupError(f"storage_config.path {raw!r} is outside the backup root")
        Path(candidate).mkdir(mode=0o700, parents=True, exist_ok=True)
        real = Path(os.path.realpath(candidate))  # again: a symlink may have appeared meanwhile
        if not _within(real, root) or not real.is_dir():
            raise BackupError(f"storage_config.path {raw!r} is outside the backup root")
        return real

    # --- take ---------------------------------------------------------------------------

    async def take(
        self, directory: Path, *, backup_id: str | None = None, verify: bool = True, on_step: StepHook | None = None
    ) -> BackupResult:
        """A backup of the whole database into `directory` (the file and its manifest)."""
        keyring = self._keyring()
        backup_id = backup_id or uuid.uuid4().hex
        created = datetime.now(UTC)
        dialect = databases.dialect_of(self.database_url)
        name = f"conveyor-backup-{created:%Y%m%dT%H%M%SZ}-{backup_id.replace('-', '')}"
        final = directory / f"{name}{SUFFIX}"
        partial = directory / f".{name}{SUFFIX}.part"
        step = on_step or (lambda _n, _name: None)
        try:
            with self._workspace() as work:
                step(1, "snapshot")
                if self.audit is not None:  # the manifest's audit head then covers all recorded so far
                    await self.audit.seal()
                dump = work / "snapshot.dump"
                snap = await _stoppable(databases.snapshot, self.database_url, dump, pg_bin=self.pg_bin)
                step(2, "encrypt")
                header = {"backup_id": backup_id, "dialect": dialect, "created_at": created.isoformat()}

                def manifest_of(dump_bytes: int, dump_sha256: str) -> dict[str, Any]:
                    return _manifest(backup_id, created, snap, keyring.current, dump_bytes, dump_sha256)

                written = await asyncio.to_thread(fileformat.encrypt, dump, partial, keyring, header, manifest_of)
                dump.unlink()
                manifest = await asyncio.to_thread(fileformat.read_manifest, partial, keyring)
                if verify:
                    step(3, "verify")
                    await self._verify_file(partial, manifest, work)
            partial.rename(final)
        finally:
            partial.unlink(missing_ok=True)
        manifest_file = directory / f"{name}{SUFFIX}{MANIFEST_SUFFIX}"
        sidecar = {**manifest, "file": final.name, "file_bytes": written.file_bytes, "file_sha256": written.file_sha256}
        manifest_file.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        result = BackupResult(
            backup_id, final, manifest_file, written.file_bytes, written.file_sha256, manifest, verified=verify
        )
        if self.audit is not None:
            await self.audit.record("backup.create", "backup", backup_id, after=result.summary(self.root))
        return result

    # --- verify and restore ---------------------------------------------------------------

    async def verify(self, backup: Path) -> dict[str, Any]:
        """Restore `backup` into a scratch database and check it against its manifest; the
        manifest, or VerificationFailed / BackupUnreadable."""
        keyring = self._keyring()
        self._check_sidecar(backup)
        manifest = await asyncio.to_thread(fileformat.read_manifest, backup, keyring)
        with self._workspace() as work:
            await self._verify_file(backup, manifest, work)
        return manifest

    async def restore(self, backup: Path, target_url: str, *, force: bool = False) -> RestoreResult:
        """Decrypt `backup` (checking its checksums), restore it into `target_url`, then check
        the restored database against the manifest and verify its audit chain."""
        keyring = self._keyring()
        self._check_sidecar(backup)
        with self._workspace() as work:
            dump = work / "restore.dump"
            header, manifest = await asyncio.to_thread(fileformat.decrypt, backup, dump, keyring)
            await _stoppable(databases.restore, dump, header["dialect"], target_url, force=force, pg_bin=self.pg_bin)
        verdict = await self._check_restored(target_url, manifest)
        await self._record_restore(target_url, backup, manifest)
        return RestoreResult(manifest, sum(manifest["tables"].values()), verdict.as_json())

    async def _verify_file(self, backup: Path, manifest: dict[str, Any], work: Path) -> None:
        dump = work / "verify.dump"
        try:
            header, opened = await asyncio.to_thread(fileformat.decrypt, backup, dump, self._keyring())
            if opened != manifest:
                raise VerificationFailed("the manifest read back differs from the one written")
            with databases.scratch_database(self.database_url, work) as scratch:
                await _stoppable(databases.restore, dump, header["dialect"], scratch, pg_bin=self.pg_bin)
                dump.unlink()
                await self._check_restored(scratch, manifest)
        finally:
            dump.unlink(missing_ok=True)

    async def _check_restored(self, url: str, manifest: dict[str, Any]) -> Verdict:
        restored = await asyncio.to_thread(databases.describe, url)
        differ = {
            t: {"manifest": n, "restored": restored.tables.get(t)}
            for t, n in manifest["tables"].items()
            if restored.tables.get(t) != n
        }
        if differ:
            raise VerificationFailed("the restored database's row counts differ from the manifest", tables=differ)
        head = {"seq": restored.audit_seq, "hash": restored.audit_hash}
        if head != manifest["audit"]:
            raise VerificationFailed("the restored audit chain's head differs from the manifest", audit=head)
        verdict = await self._verify_chain(url)
        if not verdict.ok:
            problem = f"the restored audit chain does not verify: {verdict.problem}"
            raise VerificationFailed(problem, **verdict.as_json())
        return verdict

    async def _verify_chain(self, url: str) -> Verdict:
        """The audit chain of the database at `url` verified (its journal sealed first, as
        every verification does)."""
        from conveyor.engine.audit import Audit
        from conveyor.store import open_store

        store = open_store(url, pool_size=1)
        try:
            return await Audit(store, key=self.audit_key).verify()
        finally:
            await store.close()

    async def _record_restore(self, url: str, backup: Path, manifest: dict[str, Any]) -> None:
        """The restore, in the restored database's own audit trail (after its verification)."""
        from conveyor.engine.audit import Audit
        from conveyor.store import open_store

        store = open_store(url, pool_size=1)
        try:
            after = {"file": backup.name, "created_at": manifest["created_at"], "audit_seq": manifest["audit"]["seq"]}
            audit = Audit(store, key=self.audit_key)
            await audit.record("backup.restore", "backup", manifest["backup_id"], after=after)
        finally:
            await store.close()

    # --- helpers ----------------------------------------------------------------------------

    def _keyring(self) -> Keyring:
        if self.keyring is None:
            raise BackupError("backups are encrypted: configure a key (CONVEYOR_ENCRYPTION_KEYS)")
        return self.keyring

    def _check_sidecar(self, backup: Path) -> None:
        """The file's SHA-256 against its manifest beside it, when there is one (a copy taken
        without it still opens: each record is authenticated)."""
        if not backup.is_file():
            raise BackupUnreadable(f"no backup file at {backup}")
        sidecar = backup.with_name(backup.name + MANIFEST_SUFFIX)
        if not sidecar.is_file():
            return
        try:
            expected = json.loads(sidecar.read_text(encoding="utf-8"))["file_sha256"]
        except (ValueError, KeyError):
            raise BackupUnreadable(f"{sidecar.name} is not a backup manifest") from None
        if fileformat.file_sha256(backup) != expected:
            raise BackupUnreadable("the backup file's SHA-256 differs from its manifest's: the file was altered")

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[Path]:
        """A private directory (0700) under the backup root for plaintext intermediates."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".work-", dir=self.root))
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("conveyor")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _manifest(
    backup_id: str, created: datetime, snap: Snapshot, key_id: str, dump_bytes: int, dump_sha256: str
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "backup_id": backup_id,
        "backup_type": "full",
        "created_at": created.isoformat(),
        "conveyor_version": _version(),
        "dialect": snap.dialect,
        "schema_revision": snap.revision,
        "tables": snap.tables,
        "audit": {"seq": snap.audit_seq, "hash": snap.audit_hash},
        "key_id": key_id,
        "cipher": "AES-256-GCM",
        "chunk_bytes": fileformat.CHUNK_BYTES,
        "dump_bytes": dump_bytes,
        "dump_sha256": dump_sha256,
    }


__all__ = [
    "BackupError",
    "BackupResult",
    "BackupUnreadable",
    "Backups",
    "RestoreRefused",
    "RestoreResult",
    "VerificationFailed",
]


async def _stoppable(tool: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """`tool(*args, stop=…, **kwargs)` in a thread. A thread cannot be cancelled: when the task
    awaiting it is (a job cancelled or timed out, a worker shutting down), the stop event makes
    the pg_dump or pg_restore it runs exit, so that neither the thread nor the process's
    shutdown waits for it to finish."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(tool, *args, stop=stop, **kwargs)
    finally:
        stop.set()
