"""Settings: every setting of a conveyor process, read once from the environment.

Names are `CONVEYOR_<FIELD>`; the names the seed applications already use
(`DEFAULT_TIMEOUT_MINUTES`, `MAX_TIMEOUT_MINUTES`, `MAX_LOG_ENTRIES`) are read too.
Only the runtime and the CLI read Settings; components take explicit arguments.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _alias(name: str, *seed_names: str) -> AliasChoices:
    return AliasChoices(f"CONVEYOR_{name.upper()}", *seed_names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "sqlite:///conveyor.db",
        description="sqlite:///PATH (embedded, one machine) or postgresql://USER:PASSWORD@HOST/DB",
    )
    sqlite_synchronous: str = Field(
        "NORMAL",
        description="SQLite's synchronous pragma: NORMAL survives a crash of the process; FULL also a power cut",
    )
    pool_size: int = Field(10, ge=1, description="database connections per process (PostgreSQL)")
    auto_migrate: bool = Field(True, description="apply schema migrations when a process starts")

    queues: str = Field("default", description="comma-separated queues a worker claims from")
    concurrency: int = Field(10, ge=1, le=10_000, description="jobs one worker process runs at once")
    lease_seconds: float = Field(
        30, gt=0, description="a running job is rescued this long after its worker's last heartbeat"
    )
    cancel_grace_seconds: float = Field(
        10, ge=0, description="time a cancelled or timed-out job gets to reach a checkpoint"
    )
    shutdown_grace_seconds: float = Field(30, ge=0, description="time running jobs get to finish on SIGTERM")
    process_pool_size: int | None = Field(
        None, ge=1, description="child processes for runs_in='process' job types (default: min(concurrency, CPUs))"
    )
    jobtypes: str = Field(
        "",
        description="comma-separated `module:attribute` Registries to load (the built-ins are always there)",
    )

    default_timeout_minutes: float | None = Field(
        None, gt=0, validation_alias=_alias("default_timeout_minutes", "DEFAULT_TIMEOUT_MINUTES")
    )
    max_timeout_minutes: float | None = Field(
        None, gt=0, validation_alias=_alias("max_timeout_minutes", "MAX_TIMEOUT_MINUTES")
    )
    max_log_entries: int = Field(1000, ge=1, validation_alias=_alias("max_log_entries", "MAX_LOG_ENTRIES"))
    max_item_errors: int = Field(100, ge=0)

    @field_validator("queues")
    @classmethod
    def _queues_not_empty(cls, value: str) -> str:
        if not [q for q in value.split(",") if q.strip()]:
            raise ValueError("at least one queue")
        return value

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def jobtype_paths(self) -> list[str]:
        return [p.strip() for p in self.jobtypes.split(",") if p.strip()]

    @property
    def default_timeout(self) -> timedelta | None:
        return timedelta(minutes=self.default_timeout_minutes) if self.default_timeout_minutes else None

    @property
    def max_timeout(self) -> timedelta | None:
        return timedelta(minutes=self.max_timeout_minutes) if self.max_timeout_minutes else None
