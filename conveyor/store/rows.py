"""Rows and model objects: how a job, a new job, an outcome and a log line map to columns.

Pure (no I/O); shared by both dialects' stores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from conveyor.audit import SYSTEM, SYSTEM_ACTOR, Actor, AuditEntry, journal_row
from conveyor.model import Job, LogEntry, NewJob, OutcomeKind, Owner, Progress, Status, job_state

OUTCOME_STATUS = {
    OutcomeKind.COMPLETED: Status.COMPLETED,
    OutcomeKind.FAILED: Status.FAILED,
    OutcomeKind.CANCELLED: Status.CANCELLED,
    OutcomeKind.TIMEOUT: Status.TIMEOUT,
    OutcomeKind.RETRY: Status.SCHEDULED,
    OutcomeKind.RELEASED: Status.PENDING,
}


def job_from_row(row: Any) -> Job:
    return job_from_mapping(row._mapping)


def job_from_mapping(m: Mapping[str, Any]) -> Job:
    timeout = m["timeout_seconds"]
    return Job(
        id=m["id"],
        kind=m["kind"],
        queue=m["queue"],
        status=Status(m["status"]),
        priority=m["priority"],
        data=m["data"],
        attempt=m["attempt"],
        max_attempts=m["max_attempts"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        run_at=m["run_at"],
        result=m["result"],
        error=m["error"],
        item_errors=m["item_errors"] or [],
        item_errors_dropped=m["item_errors_dropped"],
        progress=Progress.from_json(m["progress"]),
        timeout=timedelta(seconds=timeout) if timeout is not None else None,
        started_at=m["started_at"],
        completed_at=m["completed_at"],
        worker_id=m["worker_id"],
        lease_expires_at=m["lease_expires_at"],
        cancel_requested=bool(m["cancel_requested"]),
        batch_id=m["batch_id"],
        schedule_id=m["schedule_id"],
        retry_of=m["retry_of"],
        cache_key=m["cache_key"],
        idempotency_key=m["idempotency_key"],
        labels=m["labels"] or {},
        file_info=m["file_info"],
        owner=Owner(m["owner_user_id"], m["owner_org_id"], m["owner_study_id"], m["created_by"]),
    )


# What a worker needs to run a job; the rest (results, errors of earlier attempts, progress)
# would only be decoded to be thrown away.
CLAIMED_COLUMNS = (
    "id", "kind", "queue", "priority", "data", "attempt", "max_attempts", "timeout_seconds",
    "run_at", "created_at", "updated_at", "started_at", "lease_expires_at", "cancel_requested",
    "batch_id", "schedule_id", "retry_of", "cache_key", "idempotency_key", "labels", "file_info",
    "owner_user_id", "owner_org_id", "owner_study_id", "created_by",
)  # fmt: skip


_RUNNING = Status.RUNNING


def claimed_job(
    id: UUID,
    kind: str,
    queue: str,
    priority: int,
    data: Any,
    attempt: int,
    max_attempts: int,
    timeout_seconds: float | None,
    run_at: datetime,
    created_at: datetime,
    updated_at: datetime,
    started_at: datetime,
    lease_expires_at: datetime,
    cancel_requested: bool,
    batch_id: UUID | None,
    schedule_id: str | None,
    retry_of: UUID | None,
    cache_key: str | None,
    idempotency_key: str | None,
    labels: dict[str, str] | None,
    file_info: dict[str, Any] | None,
    owner_user_id: str | None,
    owner_org_id: str | None,
    owner_study_id: str | None,
    created_by: str | None,
    *,
    worker_id: str,
) -> Job:
    # Positional, in the dataclass's order (as job_of_new): a worker makes one per job claimed.
    return Job(
        id,
        kind,
        queue,
        _RUNNING,
        priority,
        data,
        attempt,
        max_attempts,
        created_at,
        updated_at,
        run_at,
        None,  # result
        None,  # error
        [],  # item_errors
        0,  # item_errors_dropped
        Progress(),
        timedelta(seconds=timeout_seconds) if timeout_seconds is not None else None,
        started_at,
        None,  # completed_at
        worker_id,
        lease_expires_at,
        cancel_requested,
        batch_id,
        schedule_id,
        retry_of,
        cache_key,
        idempotency_key,
        labels or {},
        file_info,
        Owner(owner_user_id, owner_org_id, owner_study_id, created_by),
    )


def row_of(new: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "id": new.id,
        "kind": new.kind,
        "queue": new.queue,
        "status": new.status.value,
        "priority": new.priority,
        "data": new.data,
        "item_errors_dropped": 0,
        "attempt": 0,
        "max_attempts": new.max_attempts,
        "timeout_seconds": new.timeout.total_seconds() if new.timeout else None,
        "run_at": new.run_at,
        "created_at": now,
        "updated_at": now,
        "cancel_requested": False,
        "batch_id": new.batch_id,
        "schedule_id": new.schedule_id,
        "retry_of": new.retry_of,
        "cache_key": new.cache_key,
        "idempotency_key": new.idempotency_key,
        "labels": new.labels or None,  # NULL when empty: nothing to decode on every read
        "file_info": new.file_info,
        "owner_user_id": new.owner.user_id,
        "owner_org_id": new.owner.org_id,
        "owner_study_id": new.owner.study_id,
        "created_by": new.owner.created_by,
    }


def count_key(n: NewJob) -> tuple[Any, ...]:
    """A new job's group in the roll-ups: owner, type, queue, priority and status."""
    return (n.owner.org_id, n.owner.user_id, n.owner.study_id, n.kind, n.queue, n.priority, n.status.value)


def count_deltas(groups: Mapping[tuple[Any, ...], int]) -> list[dict[str, Any]]:
    """conveyor_job_counts' rows for jobs just stored, `groups` counting them by count_key
    (see migration 0017)."""
    return [
        {"org_id": o, "user_id": u, "study_id": s, "kind": k, "queue": q, "priority": p, "status": st, "n": n}
        for (o, u, s, k, q, p, st), n in groups.items()
    ]


def job_of_new(new: NewJob, now: datetime, due: datetime | None = None) -> Job:
    """The job `new` became when stored at `now`; a pending one due at `due` when given (the
    database's clock, which PostgreSQL's bulk path stores as its run_at)."""
    # Positional, in the dataclass's order: keywords cost a bulk enqueue about 2 µs a job.
    return Job(
        new.id,
        new.kind,
        new.queue,
        new.status,
        new.priority,
        new.data,
        0,  # attempt
        new.max_attempts,
        now,  # created_at
        now,  # updated_at
        new.run_at if due is None or new.status is not Status.PENDING else due,
        None,  # result
        None,  # error
        [],  # item_errors
        0,  # item_errors_dropped
        Progress(),
        new.timeout,
        None,  # started_at
        None,  # completed_at
        None,  # worker_id
        None,  # lease_expires_at
        False,  # cancel_requested
        new.batch_id,
        new.schedule_id,
        new.retry_of,
        new.cache_key,
        new.idempotency_key,
        new.labels,
        new.file_info,
        new.owner,
    )


def created_record(job: Job, new: NewJob, now: datetime) -> dict[str, Any]:
    """The audit journal's row for `job`, made from `new` at `now` (see conveyor.audit)."""
    entry = AuditEntry("job.created", "job", str(job.id), new.actor or SYSTEM_ACTOR, after=job_state(job))
    return journal_row(entry, now, org_id=job.owner.org_id, plain=True)


def bulk_created_record(made: list[Job], new: NewJob, now: datetime) -> dict[str, Any]:
    """One journal row for jobs stored by one bulk call (its jobs share `new`'s actor), naming
    every job: a row per job would cost bulk enqueue about a third of its speed."""
    orgs = {j.owner.org_id for j in made}
    after = {
        "count": len(made),
        "jobIds": [str(j.id) for j in made],
        "kinds": sorted({j.kind for j in made}),
        "queues": sorted({j.queue for j in made}),
    }
    entry = AuditEntry("job.created", "job", None, new.actor or SYSTEM_ACTOR, after=after)
    return journal_row(entry, now, org_id=orgs.pop() if len(orgs) == 1 else None, plain=True)


# The audit action a job's new status makes, when a worker's outcome or a rescue writes it.
OUTCOME_ACTIONS = {
    "completed": "job.completed",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
    "timeout": "job.timeout",
    "scheduled": "job.retry_scheduled",  # a retryable failure, run again after the backoff
    "pending": "job.released",  # handed back by a worker shutting down, attempt not counted
}
RESCUE_ACTIONS = {**OUTCOME_ACTIONS, "pending": "job.rescued"}


def grouped_records(
    done: list[tuple[UUID, str, str | None]], actor: Actor, now: datetime, actions: dict[str, str]
) -> list[dict[str, Any]]:
    """The audit journal's rows for jobs whose status one statement changed: (job id, new
    status, organisation) each; one row per action and organisation, naming its jobs (as
    PostgreSQL's outcome statement writes them)."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for job_id, status, org in done:
        groups.setdefault((actions[status], org), []).append(str(job_id))
    return [
        journal_row(
            AuditEntry(action, "job", None, actor, after={"count": len(ids), "jobIds": sorted(ids)}),
            now,
            org_id=org,
            plain=True,
        )
        for (action, org), ids in groups.items()
    ]


def outcome_records(done: list[tuple[UUID, str, str | None]], worker_id: str, now: datetime) -> list[dict[str, Any]]:
    """Journal rows for the outcomes a worker wrote, in its name."""
    return grouped_records(done, Actor(user_id=SYSTEM, name=worker_id), now, OUTCOME_ACTIONS)


def log_row(e: LogEntry) -> dict[str, Any]:
    return {
        "job_id": e.job_id,
        "ts": e.timestamp,
        "level": int(e.level),
        "component": e.component,
        "message": e.message,
        "attempt": e.attempt,
    }


# One encoder for every call: json.dumps given any option makes a new JSONEncoder each time
# (~1 µs of a single enqueue's two documents, and of every job's data in a bulk one).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)
