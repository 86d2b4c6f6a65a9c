"""Jobs as each family shows them. Pure functions from the core's Job to JSON-ready dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.api.timefmt import iso
from conveyor.crypto import is_sealed
from conveyor.engine.sealing import MASK
from conveyor.insights import Summary
from conveyor.jobtypes import jsonable
from conveyor.model import Job, Status, utc_now

# Seed 003 names a completed job "success" (DESIGN section 4: mapped in its own shapes only).
SEED003_STATUS = {Status.COMPLETED: "success"}


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def shown_progress(job: Job) -> float:
    """A completed job is at 100 %, whatever its last progress report said."""
    return 100.0 if job.status is Status.COMPLETED else job.progress.percentage


def processing_stats(job: Job, now: datetime | None = None) -> dict[str, Any] | None:
    """Seed 002's processingStats, for jobs that count items."""
    p = job.progress
    if p.total is None and not p.processed:
        return None
    now = now or utc_now()
    end = job.completed_at or now
    elapsed = (end - job.started_at).total_seconds() if job.started_at else None
    speed = p.speed
    if speed is None and elapsed and p.processed:
        speed = p.processed / elapsed
    average_ms = round(1000 * elapsed / p.processed) if elapsed and p.processed else None
    return _compact(
        {
            "totalItems": p.total,
            "processedItems": p.processed,
            "successfulItems": p.successful,
            "failedItems": p.failed,
            "averageProcessingTime": average_ms,
            "currentSpeed": f"{speed:.0f} items/second" if speed is not None else None,
            "estimatedCompletion": iso(p.eta) if job.status is Status.RUNNING else None,
        }
    )


def current_step(job: Job) -> dict[str, Any] | None:
    p = job.progress
    if p.total_steps is None:
        return None
    return _compact({"step": p.step, "totalSteps": p.total_steps, "name": p.step_name})


def job_links(job: Job) -> dict[str, str]:
    base = f"/api/v1/jobs/{job.id}"
    return {"self": base, "logs": f"{base}/logs", "wait": f"{base}/wait", "cancel": f"{base}/cancel"}


def shown_value(value: Any) -> Any:
    """A job's data or result as the API shows it: one this process could not open (its key is
    not configured here) is masked rather than shown as ciphertext."""
    return MASK if is_sealed(value) else jsonable(value)


def canonical_job(
    job: Job, *, full: bool = True, masked: list[str] | None = None, with_data: bool = False
) -> dict[str, Any]:
    """Seed 002's job (camelCase). `full` adds result, error, stats and everything else the
    detail view shows (`with_data`: the input data too); the list shows the summary keys.
    `masked` names the fields the engine masked for a caller who may not read sensitive data
    (Engine.get's `reveal`); only those shown are named."""
    out: dict[str, Any] = {
        "id": str(job.id),
        "type": job.kind,
        "status": job.status.value,
        "priority": job.priority_class.value,
        "progress": shown_progress(job),
        "createdAt": iso(job.created_at),
    }
    out.update(_compact({"startedAt": iso(job.started_at), "completedAt": iso(job.completed_at)}))
    if not full:
        return out
    if job.status is Status.RUNNING and job.progress.eta is not None:
        out["estimatedCompletion"] = iso(job.progress.eta)
    out.update(
        _compact(
            {
                "processingStats": processing_stats(job),
                "currentStep": current_step(job),
                "result": shown_value(job.result) if job.status is Status.COMPLETED else None,
                "error": job.error,
            }
        )
    )
    if job.item_errors:
        out["itemErrors"] = job.item_errors
        out["itemErrorsOmitted"] = job.item_errors_dropped
    if with_data:
        out["data"] = shown_value(job.data)
    if shown_masked := [f for f in masked or () if f != "data" or with_data]:
        out["masked"] = shown_masked
    out.update(
        {
            "queue": job.queue,
            "priorityLevel": job.priority,
            "attempts": job.attempt,
            "maxAttempts": job.max_attempts,
            "runAt": iso(job.run_at),
            "updatedAt": iso(job.updated_at),
            "timeoutSeconds": job.timeout.total_seconds() if job.timeout else None,
            "cancelRequested": job.cancel_requested,
            "labels": job.labels,
            "owner": _compact(
                {
                    "userId": job.owner.user_id,
                    "orgId": job.owner.org_id,
                    "studyId": job.owner.study_id,
                    "createdBy": job.owner.created_by,
                }
            ),
            "retryOf": str(job.retry_of) if job.retry_of else None,
            "batchId": str(job.batch_id) if job.batch_id else None,
            "links": job_links(job),
        }
    )
    return out


def seed003_keys(job: Job) -> dict[str, Any]:
    """The snake_case keys seed 003's list items carry (added beside seed 002's)."""
    return {
        "job_id": str(job.id),
        "job_type": job.kind,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "priority_level": job.priority,
        "job_status": SEED003_STATUS.get(job.status, job.status.value),
        "age_group": job.labels.get("age_group"),
        "country": job.labels.get("country"),
    }


def monitoring_job(job: Job) -> dict[str, Any]:
    """Seed 000 documents no job body; it gets the platform's snake_case view of a job."""
    return {
        "job_id": str(job.id),
        "job_type": job.kind,
        "queue": job.queue,
        "status": job.status.value,
        "priority": job.priority_class.value,
        "priority_level": job.priority,
        "progress": shown_progress(job),
        "attempts": job.attempt,
        "max_attempts": job.max_attempts,
        "created_at": iso(job.created_at),
        "run_at": iso(job.run_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "updated_at": iso(job.updated_at),
        "result": shown_value(job.result) if job.status is Status.COMPLETED else None,
        "error": job.error,
        "labels": job.labels,
        "owner": {
            "user_id": job.owner.user_id,
            "org_id": job.owner.org_id,
            "study_id": job.owner.study_id,
            "created_by": job.owner.created_by,
        },
        "retry_of": str(job.retry_of) if job.retry_of else None,
        "cancel_requested": job.cancel_requested,
    }


def render_summary(summary: Summary) -> dict[str, Any]:
    """Seed 002's stats summary (every status, not only the five it shows)."""
    day, hour = summary.last_day, summary.last_hour
    return {
        "total": summary.total,
        **{status.value: n for status, n in summary.by_status.items()},
        "performance": {
            "averageProcessingTime": round(day.average_seconds * 1000) if day.average_seconds is not None else 0,
            "throughput": f"{hour.per_minute:.{1 if hour.per_minute < 10 else 0}f} jobs/minute",
            "successRate": day.success_rate if day.success_rate is not None else 100.0,
            "peakConcurrency": summary.peak_concurrency_last_hour,
            "window": {"throughput": "1h", "averageProcessingTime": "24h", "successRate": "24h"},
        },
        "byType": {
            kind: {"total": sum(counts.values()), **{s.value: n for s, n in counts.items() if n}}
            | {k: counts[Status(k)] for k in ("completed", "failed", "cancelled")}
            for kind, counts in sorted(summary.by_kind.items())
        },
        "byPriority": {p.value: n for p, n in summary.by_priority.items()},
    }
