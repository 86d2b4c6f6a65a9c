"""The job lifecycle's decisions, pure: what an attempt's end means for the job.

scheduled ──(run_at comes)──▶ pending ──(claim)──▶ running ──▶ completed
    ▲                            ▲                   │ ├──▶ failed     (permanent, or out of attempts)
    └──────(retryable error)─────┼───────────────────┘ ├──▶ cancelled  (asked, seen at a checkpoint)
                                 └──(lease expired,    └──▶ timeout    (past its timeout)
                                      worker shutdown)
scheduled/pending ──(cancel)──▶ cancelled
"""

from __future__ import annotations

import random
import traceback
from datetime import datetime
from typing import Any

from conveyor.errors import Cancelled, JobError, TimedOut
from conveyor.model import Job, Outcome, OutcomeKind, Priority
from conveyor.retry import RetryPolicy, policy_for

MAX_TRACEBACK_CHARS = 8_000


def error_record(exc: BaseException, *, retryable: bool) -> dict[str, Any]:
    record = getattr(exc, "record", None)  # an error already recorded in a child process
    if isinstance(record, dict):
        return record
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "code": getattr(exc, "code", None),
        "retryable": retryable,
        "traceback": tb[-MAX_TRACEBACK_CHARS:],
    }


def is_retryable(exc: BaseException) -> bool:
    """JobError says for itself; any other exception is taken as transient."""
    if isinstance(exc, JobError):
        return exc.retryable
    return isinstance(exc, Exception)  # UnknownJobType too: a deploy may be half-way


def outcome_of_success(job: Job, worker_id: str, result: Any) -> Outcome:
    return Outcome(job.id, job.attempt, worker_id, OutcomeKind.COMPLETED, result=result)


def outcome_of_stop(job: Job, worker_id: str, reason: type[BaseException]) -> Outcome:
    if reason is TimedOut:
        seconds = job.timeout.total_seconds() if job.timeout else None
        error = {"type": "Timeout", "message": f"job exceeded its timeout of {seconds}s", "retryable": False}
        return Outcome(job.id, job.attempt, worker_id, OutcomeKind.TIMEOUT, error=error)
    # the only stop reason left; a new one would fail tests loudly (bandit B101)
    assert reason is Cancelled  # nosec B101
    return Outcome(job.id, job.attempt, worker_id, OutcomeKind.CANCELLED)


def outcome_of_error(
    job: Job,
    worker_id: str,
    exc: BaseException,
    *,
    now: datetime,
    policy: RetryPolicy | None = None,
    class_policies: dict[Priority, RetryPolicy] | None = None,
    rng: random.Random | None = None,
) -> Outcome:
    """Retry after the backoff while attempts remain and the error is retryable; else fail."""
    retryable = is_retryable(exc)
    error = error_record(exc, retryable=retryable)
    if not retryable or job.attempt >= job.max_attempts:
        return Outcome(job.id, job.attempt, worker_id, OutcomeKind.FAILED, error=error)
    chosen = policy or policy_for(job.priority, class_policies)
    run_at = now + chosen.delay(job.attempt, rng)
    return Outcome(job.id, job.attempt, worker_id, OutcomeKind.RETRY, error=error, run_at=run_at)
