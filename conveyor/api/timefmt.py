"""Timestamps as the seeds write them: ISO 8601 in UTC, milliseconds, a trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return iso(datetime.now(UTC))  # type: ignore[return-value]
