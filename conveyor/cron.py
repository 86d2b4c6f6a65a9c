"""When schedules fire: cron expressions in a time zone, fixed intervals, and what happens to
ticks that passed while no scheduler ran (pure: no I/O, time is always given).

Cron ticks are computed by croniter on aware datetimes in the schedule's IANA time zone, so a
`0 9 * * *` job runs at 09:00 local time before and after a daylight-saving change. Across the
changes themselves:
- clocks go forward: a wall time that does not exist (02:30 on that night in Europe) fires at
  the first instant after the gap (03:00), once;
- clocks go back: a wall time that happens twice fires once, at its first occurrence, for
  expressions with fixed hours (as Vixie cron does); expressions whose hour field is `*`
  (`*/15 * * * *`, `@hourly`) fire on every real tick, the repeated hour included.

Intervals are a grid: from the first tick (creation, resume or a change + the interval) every
`interval` after it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from conveyor.errors import InvalidSchedule

MIN_INTERVAL = timedelta(seconds=1)
# The longest interval, far beyond any real use, well inside what timestamps hold.
MAX_INTERVAL = timedelta(days=3660)


class MissedPolicy(enum.StrEnum):
    """What happens to ticks that came due while no scheduler could fire them.

    - skip: only the latest due tick fires, and only if it is at most the grace late;
    - run_once: the latest due tick fires however late; earlier ones are dropped;
    - run_all: every due tick fires, the latest `cap` of them when more are due.
    """

    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


def parse_policy(value: str) -> MissedPolicy:
    try:
        return MissedPolicy(value)
    except ValueError:
        allowed = ", ".join(p.value for p in MissedPolicy)
        raise InvalidSchedule(f"missed_policy {value!r}: use one of {allowed}", field="missed_policy") from None


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # OSError: a name that is a directory of the zone database ("Europe") or too long a path
    except (ZoneInfoNotFoundError, ValueError, OSError):
        message = f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin"
        raise InvalidSchedule(message, field="timezone") from None


@dataclass(frozen=True, slots=True)
class Timing:
    """A cron expression in a time zone, or a fixed interval. Build it with `Timing.of`."""

    cron: str | None
    timezone: str
    interval: timedelta | None

    @classmethod
    def of(cls, *, cron: str | None, timezone: str = "UTC", interval_seconds: float | None = None) -> Timing:
        """A validated timing; InvalidSchedule naming the field at fault otherwise."""
        parse_timezone(timezone)
        if (cron is None) == (interval_seconds is None):
            raise InvalidSchedule("give either cron or interval_seconds, not both", field="cron")
        if interval_seconds is not None:
            # Compared as a number first: timedelta cannot even hold some floats (±1e17 s, NaN).
            seconds_ok = MIN_INTERVAL.total_seconds() <= interval_seconds <= MAX_INTERVAL.total_seconds()
            interval = timedelta(seconds=interval_seconds) if seconds_ok else None
            if interval is None:
                longest = MAX_INTERVAL.total_seconds()
                raise InvalidSchedule(f"interval_seconds must be between 1 and {longest:.0f}", field="interval_seconds")
            return cls(None, timezone, interval)
        # type narrowing: the branch above returned for interval schedules (bandit B101)
        assert cron is not None  # nosec B101
        expression = " ".join(cron.split())
        _check_cron(expression, parse_timezone(timezone))
        return cls(expression, timezone, None)

    @property
    def interval_seconds(self) -> float | None:
        return self.interval.total_seconds() if self.interval is not None else None

    def first_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`: where a new, resumed or changed schedule starts."""
        if self.interval is not None:
            return moment + self.interval
        return _Cron(self.cron, self.timezone).after(moment)  # type: ignore[arg-type]

    def due(self, first: datetime, now: datetime, limit: int) -> tuple[list[datetime], datetime]:
        """Of the ticks from `first` (itself a tick) up to `now`, the latest `limit`, oldest
        first; and the first tick after `now`. Never walks more than `limit` ticks."""
        if self.interval is not None:
            last = (now - first) // self.interval
            ticks = [first + k * self.interval for k in range(max(0, last - limit + 1), last + 1)]
            return ticks, first + (last + 1) * self.interval
        cron = _Cron(self.cron, self.timezone)  # type: ignore[arg-type]
        return cron.latest(first, now, limit), cron.after(now)


@dataclass(frozen=True, slots=True)
class TickPlan:
    fire: list[datetime]  # the ticks that get a job, oldest first
    next_run_at: datetime  # the first tick after now


def plan_ticks(
    timing: Timing, first: datetime, now: datetime, policy: MissedPolicy, *, grace: timedelta, cap: int
) -> TickPlan:
    """Which of the ticks due since `first` (the schedule's next_run_at) fire at `now`."""
    if first > now:
        return TickPlan([], first)
    ticks, following = timing.due(first, now, cap if policy is MissedPolicy.RUN_ALL else 1)
    if policy is MissedPolicy.SKIP and ticks and now - ticks[-1] > grace:
        ticks = []
    return TickPlan(ticks, following)


def tick_key(schedule_id: str, tick: datetime) -> str:
    """The idempotency key of one tick's job: the same whoever fires it, so a tick can only
    ever have one job (the jobs table's unique index decides)."""
    return f"schedule:{schedule_id}:{tick.astimezone(UTC).isoformat(timespec='microseconds')}"


def tick_of(job_key: str | None, schedule_id: str | None) -> datetime | None:
    """The tick a schedule's job was made for, read back from its idempotency key (None: not
    a tick's job): what a job type reports as the time it was due."""
    prefix = f"schedule:{schedule_id}:"
    if job_key is None or schedule_id is None or not job_key.startswith(prefix):
        return None
    try:
        return datetime.fromisoformat(job_key[len(prefix) :])
    except ValueError:
        return None


# --- cron ----------------------------------------------------------------------------------


def _check_cron(expression: str, zone: ZoneInfo) -> None:
    fields = expression.split()
    if not (len(fields) == 5 or (len(fields) == 1 and expression.startswith("@"))):
        raise InvalidSchedule(
            f"cron {expression!r}: five fields (minute hour day-of-month month day-of-week) or an alias like @daily",
            field="cron",
        )
    try:
        croniter(expression, datetime.now(zone)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidSchedule(f"cron {expression!r} never fires", field="cron") from None
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise InvalidSchedule(f"invalid cron {expression!r}: {exc}", field="cron") from None


class _Cron:
    """croniter over aware datetimes in one zone, with the repeated-hour rule applied."""

    def __init__(self, expression: str, timezone: str) -> None:
        self.expression = expression
        self.zone = ZoneInfo(timezone)
        # Fixed hours fire once when clocks go back; `*` hours fire on every real hour.
        self.fixed_hours = croniter(expression).expanded[1] != ["*"]

    def _counts(self, tick: datetime) -> bool:
        return not (self.fixed_hours and _repeated(tick))

    def after(self, moment: datetime) -> datetime:
        ticks = croniter(self.expression, moment.astimezone(self.zone))
        while True:
            tick: datetime = ticks.get_next(datetime)
            if self._counts(tick):
                return tick.astimezone(UTC)

    def latest(self, first: datetime, now: datetime, limit: int) -> list[datetime]:
        # croniter's get_prev is strictly before its start: start just after now, so that a
        # tick at exactly now is included.
        ticks = croniter(self.expression, (now + timedelta(microseconds=1)).astimezone(self.zone))
        found: list[datetime] = []
        while len(found) < limit:
            tick: datetime = ticks.get_prev(datetime)
            if tick < first:
                break
            if self._counts(tick):
                found.append(tick.astimezone(UTC))
        return found[::-1]


def _repeated(tick: datetime) -> bool:
    """Whether `tick` is the second occurrence of a wall time (clocks went back over it).
    croniter's `fold` cannot tell: it sets it on unambiguous times too."""
    wall = tick.replace(tzinfo=None)
    earlier = wall.replace(tzinfo=tick.tzinfo, fold=0).utcoffset()
    later = wall.replace(tzinfo=tick.tzinfo, fold=1).utcoffset()
    return earlier is not None and later is not None and earlier > later and tick.utcoffset() == later
