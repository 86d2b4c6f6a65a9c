"""A reminder schedule as seed 001 gives it (frequency, times, time zone), turned into cron
expressions in that zone, and what follows from it: doses per day, doses between two
moments, the first dose a supply does not cover.

Frequencies (case and spacing do not matter):

- `daily`: one time, e.g. ["08:00"];
- `twice daily`: two different times, e.g. ["08:00", "20:00"];
- `weekly`: one time and `weekday` (monday … sunday), required;
- `every N hours`, N one of 1, 2, 3, 4, 6, 8, 12, 24: one time, the day's first dose; the
  others follow every N hours, at the same wall-clock times each day;
- a five-field cron expression (minute hour day-of-month month day-of-week): no times, the
  expression carries them.

Every firing is at the wall-clock time in `timezone` (IANA name, default UTC), whatever the
daylight-saving offset that day (conveyor.cron's rules: a time skipped when clocks go forward
fires at the first instant after the gap; one repeated when they go back fires once).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from conveyor.cron import Timing
from conveyor.errors import InvalidSchedule

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
EVERY_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)
_EVERY = re.compile(r"^every (\d{1,2}) hours?$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Doses per day are counted over this many days from now (weekly and cron schedules need weeks).
DOSE_WINDOW_DAYS = 28
# Upcoming doses walked at most, to find the first a supply does not cover (>= 10 years daily).
MAX_WALK = 5000


def _kind(frequency: str) -> str:
    text = " ".join(frequency.lower().replace("_", " ").replace("-", " ").split())
    if text in ("daily", "once daily"):
        return "daily"
    if text in ("twice daily", "bid"):
        return "twice daily"
    if text == "weekly":
        return "weekly"
    if _EVERY.match(text):
        return "every"
    return "cron"


class ReminderSchedule(BaseModel):
    """When a medication is taken (seed 001's `schedule`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    frequency: str = Field(
        min_length=1, max_length=100, description="daily, twice daily, weekly, every N hours, or a cron expression"
    )
    times: list[str] = Field(default_factory=list, max_length=24, description="HH:MM, 24-hour, in timezone")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone the times are in (default UTC)")
    weekday: Weekday | None = Field(None, validate_default=True, description="weekly only: the day of the dose")

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: str) -> str:
        kind = _kind(value)
        if kind == "every":
            hours = int(_EVERY.match(" ".join(value.lower().split())).group(1))  # type: ignore[union-attr]
            if hours not in EVERY_HOURS:
                raise ValueError(f"every N hours: N must be one of {', '.join(map(str, EVERY_HOURS))}")
        elif kind == "cron":
            try:
                Timing.of(cron=value)
            except InvalidSchedule:
                raise ValueError(
                    "frequency must be daily, twice daily, weekly, every N hours, or a five-field cron expression"
                ) from None
        return value

    @field_validator("times")
    @classmethod
    def _times(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for text in value:
            if not _TIME.match(text):
                raise ValueError("each time must be HH:MM (24-hour), e.g. 08:00")
        frequency = info.data.get("frequency")
        if frequency is None:  # already refused: nothing to count against
            return value
        kind = _kind(frequency)
        wanted = {"daily": 1, "twice daily": 2, "weekly": 1, "every": 1, "cron": 0}[kind]
        if len(value) != wanted:
            name = {"every": "every N hours (the day's first dose)", "cron": "a cron expression"}.get(kind, kind)
            raise ValueError(f"{name} takes {wanted} time{'s' if wanted != 1 else ''}, not {len(value)}")
        if len(set(value)) != len(value):
            raise ValueError("the times must differ")
        return sorted(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            Timing.of(cron="0 0 * * *", timezone=value)
        except InvalidSchedule:
            raise ValueError("timezone must be an IANA name such as Europe/Berlin") from None
        return value

    @field_validator("weekday")
    @classmethod
    def _weekday(cls, value: str | None, info: ValidationInfo) -> str | None:
        frequency = info.data.get("frequency")
        weekly = frequency is not None and _kind(frequency) == "weekly"
        if weekly and value is None:
            raise ValueError("weekly needs the weekday of the dose (monday … sunday)")
        if not weekly and value is not None and frequency is not None:
            raise ValueError("weekday is for weekly schedules only")
        return value


@dataclass(frozen=True, slots=True)
class Regimen:
    """A schedule as cron expressions in one zone."""

    crons: tuple[str, ...]
    timezone: str

    @classmethod
    def of(cls, schedule: ReminderSchedule) -> Regimen:
        return cls(tuple(crons_of(schedule)), schedule.timezone)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Regimen:
        return cls(tuple(value["crons"]), value["timezone"])

    def to_json(self) -> dict[str, Any]:
        return {"crons": list(self.crons), "timezone": self.timezone}

    def timings(self) -> list[Timing]:
        return [Timing.of(cron=c, timezone=self.timezone) for c in self.crons]

    def doses_between(self, start: datetime, end: datetime) -> list[datetime]:
        """The dose times in (start, end], in order (UTC)."""
        found: list[datetime] = []
        for timing in self.timings():
            tick = timing.first_after(start)
            while tick <= end and len(found) < MAX_WALK * 4:
                found.append(tick)
                tick = timing.first_after(tick)
        return sorted(found)

    def doses_per_day(self, now: datetime) -> float:
        """Doses over the next DOSE_WINDOW_DAYS days, per day."""
        return len(self.doses_between(now, now + timedelta(days=DOSE_WINDOW_DAYS))) / DOSE_WINDOW_DAYS

    def first_uncovered(self, supply: float, now: datetime) -> datetime:
        """The first dose after `now` that `supply` doses do not cover (UTC)."""
        covered = math.floor(supply)
        if covered > MAX_WALK:
            raise ValueError(f"supply beyond {MAX_WALK} doses cannot be projected")
        upcoming: list[datetime] = []
        horizon = now
        while len(upcoming) <= covered:
            step = horizon + timedelta(days=DOSE_WINDOW_DAYS)
            upcoming.extend(self.doses_between(horizon, step))
            horizon = step
        return upcoming[covered]

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(ZoneInfo(self.timezone)).date()


def crons_of(schedule: ReminderSchedule) -> list[str]:
    kind = _kind(schedule.frequency)
    if kind == "cron":
        return [" ".join(schedule.frequency.split())]
    if kind == "weekly":
        hour, minute = _hm(schedule.times[0])
        # cron counts weekdays from Sunday (0); WEEKDAYS from Monday
        day = (WEEKDAYS.index(schedule.weekday or "monday") + 1) % 7
        return [f"{minute} {hour} * * {day}"]
    if kind == "every":
        hours = int(_EVERY.match(" ".join(schedule.frequency.lower().split())).group(1))  # type: ignore[union-attr]
        hour, minute = _hm(schedule.times[0])
        hour_list = ",".join(str(h) for h in sorted({(hour + k * hours) % 24 for k in range(24 // hours)}))
        return [f"{minute} {hour_list} * * *"]
    return [f"{m} {h} * * *" for h, m in (_hm(t) for t in schedule.times)]


def _hm(text: str) -> tuple[int, int]:
    hour, minute = text.split(":")
    return int(hour), int(minute)


def describe(schedule: ReminderSchedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json")


__all__: Sequence[str] = ("WEEKDAYS", "Regimen", "ReminderSchedule", "crons_of")
