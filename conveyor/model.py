"""The job and its vocabulary: statuses, priorities, progress, log lines, owner, outcomes.

Pure data; nothing here does I/O. The store returns these objects, the engine decides
transitions between them, and the edges render them.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, SafeUUID

from uuid_utils import uuid7

from conveyor.audit import Actor


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"  # run_at is in the future (delayed, or waiting for a retry)
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMEOUT})
CANCELLABLE_AT_ONCE = frozenset({Status.SCHEDULED, Status.PENDING})
RETRYABLE_BY_HAND = frozenset({Status.FAILED, Status.CANCELLED, Status.TIMEOUT})
# A job of a batch that waits for a slot (its batch's parallel_limit) is `scheduled` at this
# run_at: far beyond any real schedule (the engine refuses run_at past ~10 years), so neither
# the stager nor the claim ever reads it. The batch releases it to pending when a slot frees.
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)


class Priority(enum.StrEnum):
    """Named priority classes. Jobs store an integer 1-10; higher runs first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def value_int(self) -> int:
        return _CLASS_TO_INT[self]

    @classmethod
    def of(cls, level: int) -> Priority:
        """The class an integer priority belongs to (9-10 critical, 7-8 high, 4-6 medium, 1-3 low)."""
        if not 1 <= level <= 10:
            raise ValueError(f"priority must be between 1 and 10, got {level}")
        if level >= 9:
            return cls.CRITICAL
        if level >= 7:
            return cls.HIGH
        if level >= 4:
            return cls.MEDIUM
        return cls.LOW


# The integer a named class is stored as: the top of its band, so that an explicit integer
# in the same band never outranks the name.
_CLASS_TO_INT = {Priority.CRITICAL: 10, Priority.HIGH: 8, Priority.MEDIUM: 6, Priority.LOW: 3}

PriorityLike = Priority | str | int


def priority_level(priority: PriorityLike) -> int:
    """Normalise a class name, Priority or integer 1-10 to the stored integer."""
    if isinstance(priority, bool):
        raise ValueError("priority must be a class name or an integer 1-10")
    if isinstance(priority, int):
        Priority.of(priority)  # range check
        return priority
    try:
        return Priority(priority).value_int
    except ValueError:
        allowed = ", ".join(p.value for p in Priority)
        raise ValueError(f"unknown priority {priority!r}: use one of {allowed} or 1-10") from None


class LogLevel(enum.IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @classmethod
    def parse(cls, level: str | int | LogLevel) -> LogLevel:
        if isinstance(level, int):
            return cls(level)
        name = level.upper()
        if name == "WARN":
            name = "WARNING"
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}") from None


# The longest text the jobs table keeps in these columns (store/schema.py sizes them by
# these): the engine refuses longer, naming the field, so that both databases answer alike
# (PostgreSQL would raise its own error, SQLite store it whole).
MAX_QUEUE_LENGTH = 100
MAX_KEY_LENGTH = 500  # idempotency keys and cache keys
MAX_NAME_LENGTH = 200  # job types, owner ids, created_by, schedule ids
# Labels are JSON, bounded by no column: these are the API's bounds, which the engine keeps too.
MAX_LABEL_KEY_LENGTH = 100
MAX_LABEL_VALUE_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a job belongs to: the principal that created it and the scope it is visible in."""

    user_id: str | None = None
    org_id: str | None = None
    study_id: str | None = None
    created_by: str | None = None


def stored_key(key: str, prefix: str = "") -> str:
    """`prefix` + `key` as a key column holds it: past MAX_KEY_LENGTH, `prefix` + the key's
    SHA-256 instead (still one stored key per key)."""
    if len(prefix) + len(key) <= MAX_KEY_LENGTH:
        return prefix + key
    return f"{prefix}sha256:{hashlib.sha256(key.encode()).hexdigest()}"


@functools.lru_cache(maxsize=1024)
def too_long_owner_field(owner: Owner) -> str | None:
    """The field of `owner` longer than its column holds ("owner.org_id", say), if any.
    Cached: the jobs of a bulk call, and one principal's calls, share their owner."""
    for name in ("user_id", "org_id", "study_id", "created_by"):
        value = getattr(owner, name)
        if value is not None and len(value) > MAX_NAME_LENGTH:
            return f"owner.{name}"
    return None


@dataclass(slots=True)
class Progress:
    """Where a running job is. Percentage is derived: steps when given, else items."""

    total: int | None = None
    processed: int = 0
    successful: int = 0
    failed: int = 0
    step: int | None = None
    total_steps: int | None = None
    step_name: str | None = None
    speed: float | None = None  # items per second, over the job's run so far
    eta: datetime | None = None
    percentage_override: float | None = None

    @property
    def percentage(self) -> float:
        if self.percentage_override is not None:
            return round(min(max(self.percentage_override, 0.0), 100.0), 1)
        if self.total:
            return round(min(100.0 * self.processed / self.total, 100.0), 1)
        if self.total_steps:
            done = max((self.step or 1) - 1, 0)
            return round(min(100.0 * done / self.total_steps, 100.0), 1)
        return 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "processed": self.processed,
            "successful": self.successful,
            "failed": self.failed,
            "step": self.step,
            "total_steps": self.total_steps,
            "step_name": self.step_name,
            "speed": self.speed,
            "eta": self.eta.isoformat() if self.eta else None,
            "percentage": self.percentage_override,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Progress:
        if not raw:
            return cls()
        eta = raw.get("eta")
        return cls(
            total=raw.get("total"),
            processed=raw.get("processed") or 0,
            successful=raw.get("successful") or 0,
            failed=raw.get("failed") or 0,
            step=raw.get("step"),
            total_steps=raw.get("total_steps"),
            step_name=raw.get("step_name"),
            speed=raw.get("speed"),
            eta=datetime.fromisoformat(eta) if eta else None,
            percentage_override=raw.get("percentage"),
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    job_id: UUID
    timestamp: datetime
    level: LogLevel
    message: str
    component: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class ItemError:
    """One failed item of a batch job (a row, a text): where, and why."""

    item: str | int | None
    message: str
    code: str | None = None
    details: dict[str, Any] | None = None  # more about the item (a row's key), kept as given

    def to_json(self) -> dict[str, Any]:
        out = {"item": self.item, "message": self.message, "code": self.code}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(slots=True)
class Job:
    id: UUID
    kind: str
    queue: str
    status: Status
    priority: int
    data: dict[str, Any]
    attempt: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    run_at: datetime
    result: Any = None
    error: dict[str, Any] | None = None
    item_errors: list[dict[str, Any]] = field(default_factory=list)
    item_errors_dropped: int = 0
    progress: Progress = field(default_factory=Progress)
    timeout: timedelta | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    batch_id: UUID | None = None
    schedule_id: str | None = None
    retry_of: UUID | None = None
    cache_key: str | None = None
    idempotency_key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    file_info: dict[str, Any] | None = None
    owner: Owner = field(default_factory=Owner)

    @property
    def priority_class(self) -> Priority:
        return Priority.of(self.priority)

    @property
    def is_held(self) -> bool:
        """Waiting for a slot in its batch (see HELD_UNTIL)."""
        return self.status is Status.SCHEDULED and self.run_at >= HELD_UNTIL


def job_state(job: Job) -> dict[str, Any]:
    """What the audit trail keeps of a job's state: not its data (which may be sensitive)."""
    return {
        "kind": job.kind,
        "queue": job.queue,
        "status": job.status.value,
        "priority": job.priority,
        "cancelRequested": job.cancel_requested,
        "attempt": job.attempt,
        "ownerUserId": job.owner.user_id,
        "retryOf": None if job.retry_of is None else str(job.retry_of),
    }


@dataclass(slots=True)
class NewJob:
    """A job as the engine hands it to the store for insertion (validated, defaults applied)."""

    id: UUID
    kind: str
    queue: str
    status: Status
    priority: int
    data: dict[str, Any]
    max_attempts: int
    run_at: datetime
    timeout: timedelta | None = None
    idempotency_key: str | None = None
    cache_key: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    owner: Owner = field(default_factory=Owner)
    batch_id: UUID | None = None
    schedule_id: str | None = None
    retry_of: UUID | None = None
    file_info: dict[str, Any] | None = None
    actor: Actor | None = None  # who asked, for the audit trail's job.created (None: system)


class OutcomeKind(enum.StrEnum):
    COMPLETED = "completed"
    RETRY = "retry"  # back to scheduled, run again at run_at
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    RELEASED = "released"  # worker shutting down: back to pending, attempt not counted


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt, decided by the engine and written by the store.

    The store applies it only while the job is still running this attempt on this worker,
    so a worker whose lease was taken away can never record a second completion.
    """

    job_id: UUID
    attempt: int
    worker_id: str
    kind: OutcomeKind
    result: Any = None
    error: dict[str, Any] | None = None
    run_at: datetime | None = None  # for RETRY
    # The job's counters (Context.count), written with an outcome that finishes the job.
    counters: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    job_id: UUID
    attempt: int
    progress: Progress
    item_errors: list[dict[str, Any]]
    item_errors_dropped: int


@dataclass(frozen=True, slots=True)
class Visibility:
    """The jobs one caller may see: its organisation's (None: jobs of no organisation),
    narrowed to one study or to its own jobs where set."""

    org_id: str | None
    study_id: str | None = None
    user_id: str | None = None

    def allows(self, owner: Owner) -> bool:
        return (
            owner.org_id == self.org_id
            and (self.study_id is None or owner.study_id == self.study_id)
            and (self.user_id is None or owner.user_id == self.user_id)
        )


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a listing or count may see and match. Empty fields match everything."""

    statuses: tuple[Status, ...] = ()
    kinds: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    priorities: tuple[int, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict)
    owner_user_id: str | None = None
    owner_org_id: str | None = None
    batch_id: UUID | None = None
    visible_to: Visibility | None = None  # None: every job (super admin, CLI, library code)


# What a listing may be ordered by: each key names a job column; ties are broken by creation
# time, then id, so every order is total and pages by key (JobOrder.key_of, after=).
SORT_KEYS = ("created", "priority", "status", "type", "run_at", "finished")


@dataclass(frozen=True, slots=True)
class JobOrder:
    """A listing's order: one of SORT_KEYS, ascending or descending. A job not finished has
    no finish time and counts as later than any that has (last ascending, first descending)."""

    key: str = "created"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {self.key!r}: {', '.join(SORT_KEYS)}")

    def value_of(self, job: Job) -> Any:
        """The job's value of the sort key (what a page's cursor carries beside its created_at
        and id)."""
        return {
            "created": job.created_at,
            "priority": job.priority,
            "status": job.status.value,
            "type": job.kind,
            "run_at": job.run_at,
            "finished": job.completed_at,
        }[self.key]


@dataclass(frozen=True, slots=True)
class PrunedJob:
    """A finished job retention deleted, as a job type's prune hook learns of it (to remove
    files it keeps for the job). `data` is as stored: sealed for a sensitive job type."""

    id: UUID
    kind: str
    queue: str
    status: str
    data: Any
    file_info: Any


def utc_now() -> datetime:
    return datetime.now(UTC)


_new_uuid = UUID.__new__
_set = object.__setattr__
_UNKNOWN_SAFETY = SafeUUID.unknown


def new_job_id() -> UUID:
    """A UUIDv7 (time-ordered, so ids sort by creation) as the standard library's UUID.

    Built from uuid_utils' integer directly, as uuid_utils.compat does, but without its
    per-call enum lookup: bulk enqueue makes one per job.
    """
    job_id = _new_uuid(UUID)
    _set(job_id, "int", uuid7().int)
    _set(job_id, "is_safe", _UNKNOWN_SAFETY)
    return job_id
