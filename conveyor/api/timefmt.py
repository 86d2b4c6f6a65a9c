"""Timestamps as the seeds write them: ISO 8601 in UTC, milliseconds, a trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # isoformat() is several times quicker than strftime (a job carries up to six times):
    # "2026-01-02T03:04:05.678901+00:00", without the fraction when it is zero.
    text = value.isoformat()
    return f"{text[:23]}Z" if value.microsecond else f"{text[:19]}.000Z"


def iso_now() -> str:
    return iso(datetime.now(UTC))  # type: ignore[return-value]
