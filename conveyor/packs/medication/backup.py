"""Seed 001's `backup` job: a full, encrypted, verified backup of the platform's database.

The job reaches the database through the worker's "backup" service (conveyor.backup.Backups,
offered by the runtime like the webhook deliverer): the database URL, the encryption keys, the
audit key and the backup root are the installation's settings, which a job type is never given.
The job validates the request, confines its path, reports its three steps and returns the
manifest's summary. Its logs name steps, sizes and counts, never a key or a database URL.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor import Context, JobError, PermanentError, Priority, Registry
from conveyor.backup import STEPS, BackupError, Backups, BackupUnreadable, VerificationFailed
from conveyor.paths import check_pattern

jobtypes = Registry()

BACKUP_TYPES = ("full",)
STORAGE_TYPES = ("local",)


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="where the backup is written; supported: local (a directory under the backup root)")
    path: str = Field(
        min_length=1,
        max_length=1024,
        description="a directory under the backup root (CONVEYOR_BACKUP_ROOT), created if missing; "
        "^[a-zA-Z0-9/_.-]+$, no '..'",
    )

    @field_validator("type")
    @classmethod
    def _supported_type(cls, value: str) -> str:
        if value not in STORAGE_TYPES:
            raise ValueError(f"storage type {value[:40]!r} is not supported: supported is 'local' (the backup root)")
        return value

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        return check_pattern(value)


class BackupInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup_type: str = Field(description="supported: full (the whole database)")
    storage_config: StorageConfig

    @field_validator("backup_type")
    @classmethod
    def _supported_backup(cls, value: str) -> str:
        if value not in BACKUP_TYPES:
            raise ValueError(f"backup type {value[:40]!r} is not supported: supported is 'full'")
        return value


@jobtypes.job_type(
    "backup",
    queue="default",
    priority=Priority.HIGH,
    timeout=timedelta(hours=6),
    sensitive=True,
    internal=True,
)
async def backup(ctx: Context, data: BackupInput) -> dict[str, Any]:
    """Snapshot the whole database, encrypt it with the newest key, verify it by restoring it
    into a scratch database; the manifest's summary."""
    try:
        backups: Backups = ctx.service("backup")
    except LookupError as exc:
        raise PermanentError(str(exc)) from None
    try:
        directory = backups.directory(data.storage_config.path)
    except BackupError as exc:
        raise PermanentError(exc.message, code=exc.code) from None

    def on_step(number: int, name: str) -> None:
        ctx.progress(step=number, total_steps=len(STEPS), step_name=name)
        ctx.info(f"step {number}/{len(STEPS)}: {name}", component="backup")

    try:
        result = await backups.take(directory, backup_id=str(ctx.job_id), on_step=on_step)
    except (BackupUnreadable, VerificationFailed) as exc:
        ctx.error(f"backup failed its verification ({exc.code}); the file was removed", component="backup")
        raise PermanentError(exc.message, code=exc.code) from None
    except BackupError as exc:  # a snapshot that failed (a lock, a dropped connection): worth another try
        ctx.error(f"backup failed ({exc.code})", component="backup")
        raise JobError(exc.message, code=exc.code) from None
    summary = result.summary(backups.root)
    ctx.progress(step=len(STEPS), total_steps=len(STEPS), step_name="done", percentage=100.0)
    ctx.info(
        f"{summary['rows']} rows in {summary['tables']} tables, {summary['file_bytes']} bytes encrypted, "
        f"audit head {summary['audit_seq']}, verified",
        component="backup",
    )
    return summary
