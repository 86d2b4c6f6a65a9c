"""What the server answers, as pydantic models of the client's own.

They follow the HTTP API's documented shapes, not the server's internals, and accept fields
they do not know (kept in `model_extra`), so a newer server does not break an older client.
Canonical answers are camelCase on the wire and snake_case here (`createdAt` → `created_at`).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

T = TypeVar("T")


class Status(enum.StrEnum):
    """A job's status. A status this client does not know arrives as a plain string."""

    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMEOUT})


class _Snake(BaseModel):
    """A shape the server writes in snake_case (monitoring family, health)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Camel(_Snake):
    """A shape the server writes in camelCase (the canonical family)."""

    model_config = ConfigDict(alias_generator=to_camel)


class Owner(_Camel):
    """Who created a job: the principal's user, organisation, study and printed name."""

    user_id: str | None = None
    org_id: str | None = None
    study_id: str | None = None
    created_by: str | None = None


class ProcessingStats(_Camel):
    """Item counts of a job that reports them (seed 002's `processingStats`)."""

    total_items: int | None = None
    processed_items: int | None = None
    successful_items: int | None = None
    failed_items: int | None = None
    average_processing_time: float | None = Field(None, description="milliseconds per item")
    current_speed: str | None = None
    estimated_completion: datetime | None = None


class CurrentStep(_Camel):
    step: int | None = None
    total_steps: int | None = None
    name: str | None = None


class JobFailure(_Camel):
    """Why an attempt failed: the exception's type and message, a code, whether it was
    retryable, and the end of its traceback."""

    type: str | None = None
    message: str | None = None
    code: str | None = None
    retryable: bool | None = None
    traceback: str | None = None


class CacheInfo(_Camel):
    """Where a job submitted with `use_cache` came from: `source` is `hit` (an identical job's
    result, made at `cached_at`) or `attached` (an identical job still running, shared)."""

    source: str
    source_job_id: UUID
    cached_at: datetime | None = None


class Job(_Camel):
    """A job as `GET /api/v1/jobs/{id}` shows it.

    Items of a list carry the summary only (id, type, status, priority, progress and the
    timestamps); `Client.get` gives the rest, `result` included.
    """

    id: UUID
    type: str
    status: Annotated[Status | str, Field(union_mode="left_to_right")]
    priority: str | None = Field(None, description="critical, high, medium or low")
    priority_level: int | None = Field(None, description="1-10")
    progress: float = Field(0.0, description="percent")
    queue: str | None = None
    created_at: datetime | None = None
    run_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    estimated_completion: datetime | None = None
    processing_stats: ProcessingStats | None = None
    current_step: CurrentStep | None = None
    result: Any = None
    error: Annotated[JobFailure | str | None, Field(union_mode="left_to_right")] = None
    item_errors: list[dict[str, Any]] = Field(default_factory=list)
    attempts: int | None = None
    max_attempts: int | None = None
    timeout_seconds: float | None = None
    cancel_requested: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    owner: Owner | None = None
    retry_of: UUID | None = None
    batch_id: UUID | None = None
    cache_info: CacheInfo | None = Field(None, description="set by submit(use_cache=True) when the cache answered")
    data: Any = Field(None, description="the job's input, from get(include_data=True) only")
    masked: list[str] = Field(default_factory=list, description="fields shown masked: sensitive, not readable here")

    @property
    def finished(self) -> bool:
        """True once the job has ended: completed, failed, cancelled or timed out."""
        return self.status in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.status == Status.COMPLETED


class Page(BaseModel, Generic[T]):
    """One page of a list: its items, how many there are in all, and where it stands."""

    items: list[T]
    total: int
    page: int
    page_size: int
    next_cursor: str | None = None  # a job list's key to the next page (None: no next page)

    @property
    def has_next(self) -> bool:
        return self.page * self.page_size < self.total


class LogEntry(_Snake):
    timestamp: datetime
    level: str
    message: str
    component: str | None = None
    attempt: int | None = None


class LogPage(_Snake):
    """Log lines of a job, oldest first: `limit` of `total` from `offset`."""

    entries: list[LogEntry]
    total: int
    limit: int
    offset: int


class Performance(_Camel):
    average_processing_time: float | None = Field(None, description="milliseconds, over the last 24 hours")
    throughput: str | None = Field(None, description="e.g. '25 jobs/minute', over the last hour")
    success_rate: float | None = Field(None, description="percent, over the last 24 hours")
    peak_concurrency: int | None = Field(None, description="most jobs running at once in the last hour")


class Stats(_Camel):
    """Counts over the jobs the caller may see (`GET /api/v1/jobs/stats/summary`)."""

    total: int = 0
    scheduled: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    timeout: int = 0
    performance: Performance = Field(default_factory=Performance)
    by_type: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_priority: dict[str, int] = Field(default_factory=dict)


class Queue(_Snake):
    """A queue's depth and pace (`GET /api/v1/jobs/queues`)."""

    name: str
    pending: int = 0
    scheduled: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    oldest_pending_at: datetime | None = None
    oldest_pending_age_seconds: float | None = None
    throughput_per_minute: float | None = None
    completed_last_hour: int | None = None
    failed_last_hour: int | None = None
    concurrency: int | None = None
    workers: int | None = None
    paused: bool = False


class QueueState(_Snake):
    """A queue's paused flag after a pause or resume."""

    name: str
    paused: bool
    changed_at: datetime | None = None


class Schedule(_Snake):
    """A cron or interval schedule (`/api/v1/jobs/schedules`)."""

    id: UUID
    name: str
    job_type: str
    data: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = None
    timezone: str | None = None
    interval_seconds: float | None = None
    priority: str | None = None
    priority_level: int | None = None
    queue: str | None = None
    enabled: bool = True
    missed_policy: str | None = None
    owner: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_run_at: datetime | None = None
    next_run_at: datetime | None = Field(None, description="None while paused")


class BatchMember(_Camel):
    """One job of a batch, as the batch shows it (`Client.get` gives the whole job)."""

    id: UUID
    type: str
    status: Annotated[Status | str, Field(union_mode="left_to_right")]
    waiting_for_slot: bool = Field(False, description="scheduled, waiting for the batch's parallel_limit")
    progress: float = 0.0
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None


class Batch(_Camel):
    """A batch (`/api/v1/batches`): its overall `status` (pending, running, then completed,
    failed or cancelled), job counts by status, and its jobs (not in list items)."""

    id: UUID
    name: str
    status: str
    parallel_limit: int | None = None
    fail_fast: bool = False
    total: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    created_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = Field(None, description="cancelled (by hand) or fail_fast")
    owner: Owner | None = None
    jobs: list[BatchMember] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed", "cancelled")


class CacheStats(_Snake):
    """`GET /api/v1/cache/stats` (seed 003's shape)."""

    total_cached_results: int = 0
    cache_hit_rate: float = Field(0.0, description="percent of requests made with use_cache that ran nothing")
    total_cache_size_mb: float = 0.0
    oldest_cached_result: datetime | None = None
    newest_cached_result: datetime | None = None


class Health(_Snake):
    """`GET /api/v1/jobs/health`: `healthy`, `degraded` (no live worker: jobs wait) or
    `unhealthy` (the database does not answer)."""

    status: str
    database: str | None = None
    workers: str | None = None
    live_workers: int | None = None
    queue_stats: dict[str, int] = Field(default_factory=dict)
    timestamp: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status == "healthy"


class AuditRecord(_Camel):
    """One record of the audit trail (`GET /api/v1/audit`): who did what to which object, the
    object's state before and after, and the record's place in the hash chain."""

    seq: int
    recorded_at: datetime
    actor_id: str | None = None
    actor_name: str | None = None
    action: str
    object_type: str | None = None
    object_id: str | None = None
    before: Any = None
    after: Any = None
    request_id: str | None = None
    client_address: str | None = None
    org_id: str | None = None
    prev_hash: str | None = None
    hash: str


class AuditVerdict(_Camel):
    """`GET /api/v1/audit/verify`: whether the chain is intact, and where it first breaks."""

    ok: bool
    records: int = 0
    head_seq: int | None = None
    head_hash: str | None = None
    checkpoints: int = 0
    checkpoints_signed: bool = False
    broken_seq: int | None = None
    problem: str | None = None
    warnings: list[str] = Field(default_factory=list)


class ApiKey(_Camel):
    """An API key as `/api/v1/api-keys` shows it (never its secret)."""

    id: str
    name: str
    role: str
    org_id: str | None = None
    study_id: str | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    revoked_at: datetime | None = None
    active: bool = True


class NewApiKey(ApiKey):
    """A key just created: `key` is the secret, shown this once."""

    key: str


class User(_Camel):
    """A local user (`/api/v1/users`): who signs in and signs critical operations. Never a
    password or its hash."""

    user_id: str
    name: str
    role: str
    org_id: str | None = None
    disabled: bool = False
    locked_until: datetime | None = None
    failed_attempts: int = 0
    password_changed_at: datetime | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    last_sign_in_at: datetime | None = None


class SignedInUser(_Camel):
    user_id: str
    name: str
    role: str
    org_id: str | None = None


class SignIn(_Camel):
    """`POST /api/v1/auth/token`: a JWT (`access_token`) for a user id and password, for
    `Client(token=…)` until `expires_at`."""

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_at: datetime | None = None
    user: SignedInUser


class Caller(_Camel):
    """`GET /api/v1/me`: who the credentials are (`via` says api_key or jwt) and what they may do."""

    user_id: str | None = None
    name: str | None = None
    role: str | None = None
    roles: list[str] = Field(default_factory=list)
    org_id: str | None = None
    study_id: str | None = None
    via: str | None = None
    super_admin: bool = False
    permissions: list[str] = Field(default_factory=list)


class SignatureRecord(_Camel):
    """An e-signature applied to a job (`GET /api/v1/jobs/{id}/signatures`), bound to the audit
    record whose content hash it names."""

    id: str
    signer_id: str
    printed_name: str
    meaning: str
    signed_at: datetime
    action: str
    object_type: str | None = None
    object_id: str | None = None
    record_hash: str | None = None
    requested_by: str | None = None


class SignaturePolicy(_Camel):
    """`GET /api/v1/auth/signature-policy`: the server's own rules for e-signatures.

    `operations` maps each operation that can be made critical (`job.cancel`, `cache.clear`,
    `schedule.change`…) to `always`, `critical_jobs` (only on critical-priority jobs) or
    `never`; `meanings` are those a signer may state."""

    operations: dict[str, str] = Field(default_factory=dict)
    meanings: list[str] = Field(default_factory=list)

    def requires(self, operation: str, *, critical_job: bool = False) -> bool:
        """Whether the server demands a signature for `operation` (on a critical-priority
        job, when `critical_job`)."""
        when = self.operations.get(operation, "never")
        return when == "always" or (critical_job and when == "critical_jobs")


class Worker(_Camel):
    """A live worker (`GET /api/v1/workers`): one that reported within the last 30 seconds."""

    id: str
    hostname: str | None = None
    pid: int | None = None
    queues: list[str] = Field(default_factory=list)
    concurrency: int | None = None
    running: int | None = None
    started_at: datetime | None = None
    last_seen_at: datetime | None = None
    last_seen_seconds_ago: float | None = None
