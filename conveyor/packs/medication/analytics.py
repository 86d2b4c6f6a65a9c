"""analytics_roll_up (seed 001): a report on one organisation's jobs over a time range.

The report is the job's result (sealed, as all medication data). Its figures are summed by
the database through the worker's "analytics" service (conveyor.analytics), always over the
organisation of the job itself: counters the job types report (reminders sent, refills due,
interactions found), and per job type the success rate, run times and retries of the jobs
that finished in the range.
"""

from __future__ import annotations

import functools
import os
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor import Context, Registry

# Sums of job counters (Context.count) of the same name.
COUNTER_METRICS = ("reminders_sent", "refills_due", "interactions_found")
# From the jobs table, per job type.
JOB_METRICS = ("job_success_rate", "execution_time", "retry_count")
METRICS = COUNTER_METRICS + JOB_METRICS
Metric = Literal[
    "reminders_sent", "refills_due", "interactions_found", "job_success_rate", "execution_time", "retry_count"
]
SPAN_SETTING = "CONVEYOR_ANALYTICS_MAX_SPAN_DAYS"

jobtypes = Registry()


@functools.cache
def _max_span_days(_environment_value: str | None) -> float:
    """Settings.analytics_max_span_days, read again only when the variable changes (every
    validation of an input asks)."""
    from conveyor.settings import Settings

    return Settings().analytics_max_span_days


def max_span() -> timedelta:
    return timedelta(days=_max_span_days(os.environ.get(SPAN_SETTING)))


class TimeRange(BaseModel):
    """ISO 8601 instants; one without an offset is taken as UTC. The range is [start, end)."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start >= self.end:
            raise ValueError("start must be before end")
        limit = max_span()
        if self.end - self.start > limit:
            raise ValueError(f"the range may span at most {limit.total_seconds() / 86400:g} days ({SPAN_SETTING})")
        return self


class AnalyticsRollUpInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    time_range: TimeRange
    metrics_types: list[Metric] = Field(min_length=1, max_length=len(METRICS))

    @field_validator("metrics_types")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each metric once")
        return value


@jobtypes.job_type("analytics_roll_up", sensitive=True, internal=True)
async def analytics_roll_up(ctx: Context, data: AnalyticsRollUpInput) -> dict[str, Any]:
    analytics = ctx.service("analytics")
    org_id = ctx.owner.org_id
    start, end = data.time_range.start, data.time_range.end
    wanted = set(data.metrics_types)
    metrics: dict[str, Any] = {}
    if counters := [m for m in COUNTER_METRICS if m in wanted]:
        sums = await analytics.counter_sums(org_id, start, end, counters)
        for name in counters:
            mine = [s for s in sums if s.name == name]
            metrics[name] = {
                "total": sum(s.total for s in mine),
                "jobs": sum(s.jobs for s in mine),
                "by_job_type": {s.kind: s.total for s in mine},
            }
    if wanted & set(JOB_METRICS):
        kinds = await analytics.job_types(org_id, start, end)
        metrics.update({m: _JOB_METRIC[m](kinds) for m in JOB_METRICS if m in wanted})
    ctx.info(f"roll-up of {len(metrics)} metric(s) over {(end - start).total_seconds():g} s", component="analytics")
    return {
        "organisation": org_id,
        "time_range": {"start": _iso(start), "end": _iso(end)},
        "generated_at": _iso(datetime.now(UTC)),
        "metrics": {m: metrics[m] for m in data.metrics_types},
    }


def _success_rate(kinds: list[Any]) -> dict[str, Any]:
    ran = sum(k.ran for k in kinds)
    completed = sum(k.completed for k in kinds)
    return {
        "success_rate": completed / ran if ran else None,
        "ran": ran,
        "by_job_type": {
            k.kind: {
                "success_rate": k.completed / k.ran if k.ran else None,
                "error_rate": (k.failed + k.timeout) / k.ran if k.ran else None,
                "ran": k.ran,
                "completed": k.completed,
                "failed": k.failed,
                "timeout": k.timeout,
                "cancelled": k.cancelled,
            }
            for k in kinds
        },
    }


def _execution_time(kinds: list[Any]) -> dict[str, Any]:
    return {
        "by_job_type": {
            k.kind: {"jobs": k.ran, "mean_ms": k.mean_ms, "p50_ms": k.p50_ms, "p95_ms": k.p95_ms}
            for k in kinds
            if k.ran
        }
    }


def _retry_count(kinds: list[Any]) -> dict[str, Any]:
    return {
        "total": sum(k.retries for k in kinds),
        "by_job_type": {
            k.kind: {"retries": k.retries, "retried_jobs": k.retried_jobs, "jobs": k.ran + k.cancelled} for k in kinds
        },
    }


_JOB_METRIC = {"job_success_rate": _success_rate, "execution_time": _execution_time, "retry_count": _retry_count}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
