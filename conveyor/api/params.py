"""Query parameters shared by the families: statuses, priorities, dates, label filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from conveyor.api.errors import ApiError
from conveyor.model import Priority, Status, priority_level

_STATUS_NAMES = {s.value: s for s in Status} | {"success": Status.COMPLETED}


def statuses(raw: str | None) -> tuple[Status, ...]:
    if not raw:
        return ()
    out = []
    for name in raw.split(","):
        status = _STATUS_NAMES.get(name.strip().lower())
        if status is None:
            allowed = ", ".join(_STATUS_NAMES)
            raise ApiError(400, "INVALID_QUERY", f"unknown status {name!r}; use one of {allowed}", field="status")
        out.append(status)
    return tuple(out)


def priorities(raw: str | None) -> tuple[int, ...]:
    if not raw:
        return ()
    out: list[int] = []
    for name in raw.split(","):
        name = name.strip().lower()
        try:
            if name.isdigit():
                out.append(priority_level(int(name)))
            else:
                # a class means its whole band (high: 7 and 8)
                cls = Priority(name)
                out.extend(level for level in range(1, 11) if Priority.of(level) is cls)
        except ValueError:
            raise ApiError(
                400, "INVALID_QUERY", f"unknown priority {name!r}; use critical, high, medium, low or 1-10",
                field="priority",
            ) from None  # fmt: skip
    return tuple(out)


# Dates outside these never match a job (and some do not fit the databases' timestamps).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def aware(value: datetime | None) -> datetime | None:
    """A query date in UTC (naive means UTC), clamped to what the store can compare."""
    if value is None:
        return None
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        return EARLIEST if value.year < 2000 else LATEST
    return min(max(value, EARLIEST), LATEST)


def labels_filter(pairs: list[str], **named: str | None) -> dict[str, str]:
    labels = {k: v for k, v in named.items() if v is not None}
    for pair in pairs:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise ApiError(400, "INVALID_QUERY", f"label filter {pair!r}: use key:value", field="label")
        labels[key] = value
    for key in labels:
        if not LABEL_KEY.match(key):
            raise ApiError(400, "INVALID_QUERY", f"label key {key!r}: letters, digits, _ . - (1-100)", field="label")
    return labels


LABEL_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
