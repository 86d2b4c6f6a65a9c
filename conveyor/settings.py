"""Settings: every setting of a conveyor process, read once from the environment.

Names are `CONVEYOR_<FIELD>`; the names the seed applications already use
(`DEFAULT_TIMEOUT_MINUTES`, `MAX_TIMEOUT_MINUTES`, `MAX_LOG_ENTRIES`, `BATCH_MAX_SIZE`,
`CACHE_TTL`) are read too.
Seed 003's Redis and Celery variables (IGNORED_SEED_VARIABLES) are accepted and ignored:
conveyor keeps jobs, results and its cache in its database. Only the runtime and the CLI read
Settings; components take explicit arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Seed 003 configured Redis and Celery; conveyor needs neither. Set, they change nothing, and
# the runtime says so once when it starts (Conveyor.start).
IGNORED_SEED_VARIABLES = ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def ignored_seed_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The seed's Redis and Celery variables set in `environ` (default: this process's)."""
    environ = os.environ if environ is None else environ
    return [name for name in IGNORED_SEED_VARIABLES if name in environ]


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
    pool_size: int = Field(
        10,
        ge=1,
        description="size of each of a process's two PostgreSQL connection pools (the hot statements',"
        " the rest's); with a worker's 2 claim connections and 1 listening, up to 2 x this + 3 per process",
    )
    pool_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="how long a call waits for a pooled PostgreSQL connection while all are busy before it fails"
        " (the API then answers 503 DATABASE_UNAVAILABLE; while the server refuses new connections, half a"
        " second): past a client's own timeout, waiting longer serves no one",
    )
    startup_wait_seconds: float = Field(
        30.0,
        ge=0,
        description="how long `conveyor worker`, `serve` and `migrate` wait at start for a PostgreSQL server"
        " that cannot be reached (started together with it, restarting), trying again with a growing pause and"
        " a warning line each time, before they exit 6; 0: at once",
    )
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
    packs: str = Field(
        "all",
        description="job-type packs to load, by entry-point name (group conveyor.packs): comma-separated, all or none",
    )
    data_dir: str = Field(
        "conveyor-data",
        description="where jobs keep their files (uploads, results); shared by API and workers (one machine or NFS)",
    )
    vacalibration_data: str = Field(
        "",
        description="the directory of the R package vacalibration's data (VA calibration, seed 003); "
        "unset: calibration requests are refused",
    )
    data_roots: str = Field(
        "",
        description="comma-separated directories whose files jobs may name by path (filePath), besides the data "
        "directory; a path that resolves outside all of them (../, a symlink) is refused",
    )
    backup_root: str = Field(
        "",
        description="the directory backups are written under (a backup job's storage_config.path is confined to "
        "it); empty: backups/ under the data directory",
    )
    backup_pg_bin: str = Field(
        "",
        description="the directory holding pg_dump and pg_restore (PostgreSQL backups); empty: PATH, then the "
        "newest /usr/lib/postgresql/<version>/bin",
    )

    default_timeout_minutes: float | None = Field(
        None, gt=0, validation_alias=_alias("default_timeout_minutes", "DEFAULT_TIMEOUT_MINUTES")
    )
    max_timeout_minutes: float | None = Field(
        None, gt=0, validation_alias=_alias("max_timeout_minutes", "MAX_TIMEOUT_MINUTES")
    )
    max_log_entries: int = Field(1000, ge=1, validation_alias=_alias("max_log_entries", "MAX_LOG_ENTRIES"))
    max_item_errors: int = Field(100, ge=0)
    batch_max_size: int = Field(
        50, ge=1, le=10_000, validation_alias=_alias("batch_max_size", "BATCH_MAX_SIZE"), description="jobs per batch"
    )
    cache_ttl: float = Field(
        3600,
        gt=0,
        validation_alias=_alias("cache_ttl", "CACHE_TTL"),
        description="seconds a completed job's result is reused for identical requests made with use_cache",
    )

    # --- the scheduler (in every worker and serve process; one of them leads) ---
    scheduler_enabled: bool = Field(True, description="run the scheduler in worker and serve processes")
    scheduler_interval_seconds: float = Field(
        1, gt=0, le=60, description="how often the scheduler renews its lease and fires due schedules"
    )
    scheduler_lease_seconds: float = Field(
        20, gt=0, description="a leader that stops renewing is replaced this long after its last renewal"
    )
    scheduler_grace_seconds: float = Field(
        60, ge=0, description="missed policy skip: how late the latest due tick may be and still fire"
    )
    scheduler_run_all_cap: int = Field(
        100, ge=1, le=10_000, description="missed policy run_all: most missed ticks fired at once"
    )

    # --- the HTTP service (conveyor serve) ---
    api_host: str = Field("127.0.0.1", validation_alias=_alias("api_host", "API_HOST"))
    api_port: int = Field(8000, ge=0, le=65535, validation_alias=_alias("api_port", "API_PORT"))
    cors_origins: str = Field(
        "",
        validation_alias=_alias("cors_origins", "CORS_ORIGINS"),
        description='origins browsers may call the API from: a JSON list (["*"]) or comma-separated',
    )
    api_workers: int = Field(1, ge=1, le=64, description="API processes `conveyor serve` runs")
    serve_worker: bool = Field(True, description="`conveyor serve` runs a worker in each API process")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body the API reads")
    jobs_per_minute: int = Field(
        60, ge=0, description="jobs one principal may create over the API in any 60 s (seed 002); 0: no limit"
    )
    jobs_per_hour: int = Field(3600, ge=0, description="jobs one principal may create in any hour; 0: no limit")
    role_rate_limits: dict[str, tuple[int, int]] = Field(
        default_factory=dict,
        description='per role, (per minute, per hour) in place of the two above, e.g. {"admin": [600, 36000]}',
    )
    encryption_keys: dict[str, str] = Field(
        default_factory=dict,
        description='AES-256 keys (base64 of 32 bytes) by key id, sealing sensitive job types: {"k1": "…"}',
    )
    encryption_key_id: str | None = Field(None, description="the key that seals new values (one key: that one)")
    max_queue_size: int = Field(
        1000, ge=0, description="pending jobs a queue may hold before API creations are refused (503); 0: no limit"
    )
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, description="largest file a bulk upload may send (predictions), in bytes"
    )
    predictions_chunk_rows: int = Field(
        50_000, ge=10, le=1_000_000, description="rows a predictions job reads, scores and writes at a time"
    )
    public_docs: bool = Field(True, description="serve /docs and /openapi.json without credentials")
    jwt_secret: str | None = Field(None, description="HS256 key for bearer JWTs")
    jwt_public_key: str | None = Field(None, description="RS256 public key (PEM, or a path to one) for bearer JWTs")
    jwt_audience: str | None = Field(None, description="when set, a JWT's aud must name it")
    jwt_issuer: str | None = Field(None, description="when set, a JWT's iss must equal it")
    api_key_cache_seconds: float = Field(
        10, ge=0, description="how long a process trusts an API key lookup (a revocation elsewhere takes this long)"
    )

    # --- local users, sign-in, e-signatures (21 CFR Part 11) ---
    password_min_length: int = Field(12, ge=8, le=256, description="shortest password a local user may set")
    password_hash_time_cost: int = Field(3, ge=1, le=100, description="argon2id passes (RFC 9106 low-memory: 3)")
    password_hash_memory_kib: int = Field(
        65536, ge=1024, le=4 * 1024 * 1024, description="argon2id memory per hash, KiB (RFC 9106 low-memory: 64 MiB)"
    )
    password_hash_parallelism: int = Field(4, ge=1, le=64, description="argon2id lanes (RFC 9106 low-memory: 4)")
    sign_in_max_failures: int = Field(
        5, ge=1, le=1000, description="consecutive failed sign-ins (or signatures) that lock a local user out"
    )
    sign_in_lockout_minutes: float = Field(15, gt=0, description="how long a lock-out lasts")
    sign_in_token_minutes: float = Field(
        60, gt=0, le=24 * 60, description="lifetime of the JWT POST /api/v1/auth/token issues"
    )
    critical_operations: str = Field(
        "job.cancel:critical,job.retry:critical,job.delete,cache.clear,schedule.change,schedule.delete,api_key.revoke",
        description="operations that need an e-signature (comma-separated; `:critical`: only on critical-priority "
        "jobs; empty or `none`: none)",
    )
    signature_meanings: str = Field(
        "approved,responsible,reviewed,authored", description="the meanings a signer may state (comma-separated)"
    )

    audit_key: str | None = Field(
        None, description="HMAC-SHA256 key signing the audit trail's checkpoints; unset: checkpoints are unsigned"
    )
    audit_checkpoint_every: int = Field(
        1000, ge=1, description="a checkpoint of the audit chain's head every this many records"
    )
    audit_read_window_seconds: float = Field(
        0.0,
        ge=0,
        description="a reader opening the same sensitive job's sealed fields again within this many seconds "
        "is not recorded again (job.read); 0: every read is recorded",
    )

    # --- webhooks (leader dispatch, delivery jobs) ---
    webhook_allow_hosts: str = Field(
        "",
        description="comma-separated host names and CIDR blocks webhooks may reach although not public "
        "(e.g. hooks.internal,10.1.0.0/16); everything else private, loopback or link-local is refused",
    )
    webhook_timeout_seconds: float = Field(10, gt=0, le=300, description="how long a delivery waits for an answer")
    webhook_max_attempts: int = Field(8, ge=1, le=50, description="delivery attempts before a delivery job fails")
    webhook_retry_base_seconds: float = Field(
        30, gt=0, description="first retry delay of a failed delivery, doubling each time (with jitter, at most 6 h)"
    )
    webhook_queue: str = Field("default", min_length=1, max_length=100, description="the queue delivery jobs go to")

    # --- medication pack (seed 001) ---
    medication_refill_window_days: float = Field(
        7,
        gt=0,
        le=365,
        description="refill_check and supply_monitor call a refill due at this many days of supply or fewer",
    )

    # --- retention (the leader prunes; seeds 001 and 002) ---
    retention_completed_hours: float = Field(24, ge=0, description="completed jobs kept this long; 0: for good")
    retention_failed_hours: float = Field(72, ge=0, description="failed jobs kept this long; 0: for good")
    retention_cancelled_hours: float = Field(24, ge=0, description="cancelled jobs kept this long; 0: for good")
    retention_timeout_hours: float = Field(72, ge=0, description="timed-out jobs kept this long; 0: for good")
    retention_logs_days: float = Field(
        30,
        ge=0,
        description="log lines (also webhook deliveries, cleared alerts, read notifications) kept this long; 0: keep",
    )
    retention_counters_days: float = Field(
        400, ge=0, description="job counters (ctx.count) kept this long after their job finished; 0: for good"
    )
    retention_queues: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description='per queue, TTLs in place of the defaults: {"reports": {"completed_hours": 168}}',
    )
    retention_interval_seconds: float = Field(60, gt=0, description="how often the leader prunes")

    # --- alerts (seed 001's monitoring) ---
    alert_error_threshold: float = Field(
        0.01, ge=0, le=1, validation_alias=_alias("alert_error_threshold", "ERROR_THRESHOLD"),
        description="error rate of a job type over the window above which an alert is raised",
    )  # fmt: skip
    alert_latency_threshold_ms: float = Field(
        1000, gt=0, validation_alias=_alias("alert_latency_threshold_ms", "LATENCY_THRESHOLD"),
        description="p95 run time (ms) of a job type over the window above which an alert is raised",
    )  # fmt: skip
    alert_window_seconds: float = Field(300, gt=0, description="the sliding window alerts are decided over")
    alert_min_samples: int = Field(
        20, ge=1, description="jobs a job type must have run to an end in the window before it may raise or clear"
    )
    alert_interval_seconds: float = Field(30, gt=0, description="how often the leader evaluates alerts")

    # --- analytics (seed 001's analytics_roll_up) ---
    analytics_max_span_days: float = Field(
        366, gt=0, le=3660, description="the longest time range one analytics_roll_up job may cover, in days"
    )

    @field_validator("retention_queues")
    @classmethod
    def _retention_queues_known(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        known = {"completed_hours", "failed_hours", "cancelled_hours", "timeout_hours"}
        for queue, ttls in value.items():
            if unknown := set(ttls) - known:
                raise ValueError(f"queue {queue!r}: unknown {sorted(unknown)}; use {sorted(known)}")
            if any(h is not None and h < 0 for h in ttls.values()):
                raise ValueError(f"queue {queue!r}: hours may not be negative")
        return value

    @property
    def webhook_allow_list(self) -> list[str]:
        return [h.strip() for h in self.webhook_allow_hosts.split(",") if h.strip()]

    @model_validator(mode="after")
    def _lease_outlasts_interval(self) -> Settings:
        if self.scheduler_lease_seconds <= self.scheduler_interval_seconds:
            raise ValueError("scheduler_lease_seconds must be longer than scheduler_interval_seconds")
        return self

    @field_validator("critical_operations")
    @classmethod
    def _critical_operations_parse(cls, value: str) -> str:
        from conveyor.signatures import CriticalOperations

        CriticalOperations.parse(value)
        return value

    @field_validator("signature_meanings")
    @classmethod
    def _meanings_not_empty(cls, value: str) -> str:
        meanings = [m.strip() for m in value.split(",") if m.strip()]
        if not meanings or any(len(m) > 64 for m in meanings):
            raise ValueError("at least one meaning, each at most 64 characters")
        return value

    @field_validator("queues")
    @classmethod
    def _queues_not_empty(cls, value: str) -> str:
        if not [q for q in value.split(",") if q.strip()]:
            raise ValueError("at least one queue")
        return value

    @property
    def cors_origin_list(self) -> list[str]:
        raw = self.cors_origins.strip()
        if raw.startswith("["):
            return [str(o) for o in json.loads(raw)]
        return [o.strip() for o in raw.split(",") if o.strip()]

    @field_validator("cors_origins")
    @classmethod
    def _cors_parses(cls, value: str) -> str:
        if value.strip().startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
            if not isinstance(parsed, list):
                raise ValueError("a JSON list of origins, or comma-separated origins")
        return value

    @property
    def queue_list(self) -> list[str]:
        return [q.strip() for q in self.queues.split(",") if q.strip()]

    @property
    def pack_names(self) -> list[str] | None:
        """The packs to load by name; None: every installed one."""
        raw = self.packs.strip().lower()
        if raw == "all":
            return None
        if raw in ("", "none"):
            return []
        return [p.strip() for p in self.packs.split(",") if p.strip()]

    @property
    def data_root_paths(self) -> tuple[Path, ...]:
        return tuple(Path(r.strip()) for r in self.data_roots.split(",") if r.strip())

    @property
    def backup_root_path(self) -> Path:
        return Path(self.backup_root) if self.backup_root else Path(self.data_dir) / "backups"

    @property
    def jobtype_paths(self) -> list[str]:
        return [p.strip() for p in self.jobtypes.split(",") if p.strip()]

    @property
    def default_timeout(self) -> timedelta | None:
        return timedelta(minutes=self.default_timeout_minutes) if self.default_timeout_minutes else None

    @property
    def max_timeout(self) -> timedelta | None:
        return timedelta(minutes=self.max_timeout_minutes) if self.max_timeout_minutes else None
