"""conveyor's errors. Each has a stable code that the API families map to their own shapes."""

from __future__ import annotations

from typing import Any
from uuid import UUID


class ConveyorError(Exception):
    code = "CONVEYOR_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class UnknownJobType(ConveyorError):
    code = "INVALID_JOB_TYPE"

    def __init__(self, kind: str, allowed: list[str]) -> None:
        super().__init__(f"unknown job type {kind!r}", kind=kind, allowed_types=allowed)
        self.kind = kind
        self.allowed = allowed


class InvalidJobData(ConveyorError):
    """The job's input failed validation; `errors` names every offending field."""

    code = "INVALID_JOB_DATA"

    def __init__(self, kind: str, errors: list[dict[str, str]]) -> None:
        fields = ", ".join(e["field"] or "(data)" for e in errors)
        super().__init__(f"invalid data for job type {kind!r}: {fields}", errors=errors)
        self.kind = kind
        self.errors = errors


class InvalidJobOptions(ConveyorError):
    code = "INVALID_JOB_OPTIONS"


class JobNotFound(ConveyorError):
    code = "JOB_NOT_FOUND"

    def __init__(self, job_id: UUID | str) -> None:
        super().__init__(f"job {job_id} not found", job_id=str(job_id))


class JobNotCancellable(ConveyorError):
    code = "JOB_NOT_CANCELLABLE"

    def __init__(self, job_id: UUID, current_status: str) -> None:
        super().__init__(
            f"job {job_id} is {current_status} and cannot be cancelled",
            job_id=str(job_id),
            current_status=current_status,
        )
        self.current_status = current_status


class JobNotRetryable(ConveyorError):
    code = "JOB_NOT_RETRYABLE"

    def __init__(self, job_id: UUID, current_status: str) -> None:
        super().__init__(
            f"job {job_id} is {current_status}; only failed, cancelled or timed-out jobs run again",
            job_id=str(job_id),
            current_status=current_status,
        )
        self.current_status = current_status


class JobNotDeletable(ConveyorError):
    """A running job is not deleted: it must be cancelled, or finish, first."""

    code = "JOB_NOT_DELETABLE"

    def __init__(self, job_id: UUID, current_status: str) -> None:
        super().__init__(
            f"job {job_id} is {current_status}; cancel it or let it finish before deleting it",
            job_id=str(job_id),
            current_status=current_status,
        )
        self.current_status = current_status


class DuplicateJobType(ConveyorError):
    code = "DUPLICATE_JOB_TYPE"


class InvalidSchedule(ConveyorError):
    """A schedule's own settings are wrong (cron, time zone, interval, policy, name);
    `details["field"]` names the one at fault. Its job's type and data fail as jobs do."""

    code = "INVALID_SCHEDULE"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)


class ScheduleNotFound(ConveyorError):
    code = "SCHEDULE_NOT_FOUND"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"schedule {schedule_id} not found", schedule_id=schedule_id)


class InvalidBatch(ConveyorError):
    """A batch's own settings are wrong (name, size, parallel_limit, an option its jobs may not
    take); `details["field"]` names the one at fault. Its jobs' types and data fail as jobs do,
    their fields prefixed with `jobs.<index>.`."""

    code = "INVALID_BATCH"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)


class BatchNotFound(ConveyorError):
    code = "BATCH_NOT_FOUND"

    def __init__(self, batch_id: UUID | str) -> None:
        super().__init__(f"batch {batch_id} not found", batch_id=str(batch_id))


class InvalidWebhook(ConveyorError):
    """A subscription's settings are wrong (events, text too long to store); `details["field"]`
    names the one at fault. A URL that may not be called is TargetRefused."""

    code = "INVALID_WEBHOOK"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)


class WebhookNotFound(ConveyorError):
    code = "WEBHOOK_NOT_FOUND"

    def __init__(self, webhook_id: UUID | str) -> None:
        super().__init__(f"webhook {webhook_id} not found", webhook_id=str(webhook_id))


class BatchNotCancellable(ConveyorError):
    code = "BATCH_NOT_CANCELLABLE"

    def __init__(self, batch_id: UUID, current_status: str) -> None:
        super().__init__(
            f"batch {batch_id} is {current_status}: all its jobs have finished",
            batch_id=str(batch_id),
            current_status=current_status,
        )
        self.current_status = current_status


class NotificationNotFound(ConveyorError):
    code = "NOTIFICATION_NOT_FOUND"

    def __init__(self, notification_id: UUID | str) -> None:
        super().__init__(f"notification {notification_id} not found", notification_id=str(notification_id))


class StateConflict(ConveyorError):
    """A pack-state write named a version that is no longer the document's: read it again."""

    code = "STATE_CONFLICT"

    def __init__(self, namespace: str, key: str) -> None:
        # The key is left out: a pack's keys may name a person, and errors are stored in clear.
        super().__init__(f"a document of state namespace {namespace!r} changed since it was read", namespace=namespace)
        self.key = key


# --- raised inside execute() -------------------------------------------------------------


class JobError(Exception):
    """Raise from execute() to fail the attempt. Retryable unless `permanent` is set."""

    retryable = True

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class PermanentError(JobError):
    """The job cannot succeed by trying again (bad input, missing record): fail it now."""

    retryable = False


class UnstorableResult(PermanentError):
    """execute() returned something JSON cannot hold (an arbitrary object)."""


class RetryableError(JobError):
    """A transient failure (network, lock, rate limit): try again after the backoff."""


class Cancelled(BaseException):
    """Raised by ctx.checkpoint() once cancellation was asked; ends the job as cancelled.

    A BaseException, so that a job's own `except Exception` does not swallow it.
    """


class TimedOut(BaseException):
    """Raised by ctx.checkpoint() once the job's timeout has passed; ends it as timeout."""
