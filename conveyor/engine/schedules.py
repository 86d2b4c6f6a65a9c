"""Schedules: jobs made again and again, at cron times in a time zone or every N seconds.

`Schedules` is what edges call (create, list, get, update, pause, resume, delete), with the
same visibility rule as jobs; `fire_due` is what the scheduler calls in the leading process
(conveyor.scheduler). A tick's job is validated like any enqueue and carries the
schedule's owner, its `schedule_id`, and the tick's idempotency key (cron.tick_key).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from conveyor.audit import AuditEntry, SignatureMark
from conveyor.cron import MissedPolicy, Timing, parse_policy, plan_ticks, tick_key
from conveyor.engine import Engine, JobRequest
from conveyor.errors import InvalidJobData, InvalidJobOptions, InvalidSchedule, ScheduleNotFound
from conveyor.model import (
    MAX_NAME_LENGTH,
    Job,
    NewJob,
    Owner,
    Priority,
    PriorityLike,
    Visibility,
    new_job_id,
    priority_level,
    too_long_owner_field,
    utc_now,
)
from conveyor.storable import text_problem
from conveyor.store.schedules import Schedule, timing_columns

log = logging.getLogger("conveyor.schedules")

# Schedules fired per pass of the scheduler (the rest are due in the next pass, a second later).
FIRE_BATCH = 100


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule should be: a job type and its data, and when (`cron` in `timezone`, or
    every `interval_seconds`). Checked by Schedules.create and Schedules.update."""

    name: str
    job_type: str
    data: Any = field(default_factory=dict)
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    priority: PriorityLike | None = None
    queue: str | None = None
    enabled: bool = True
    missed_policy: str = MissedPolicy.SKIP.value

    @classmethod
    def of(cls, schedule: Schedule) -> ScheduleSpec:
        return cls(
            name=schedule.name,
            job_type=schedule.kind,
            data=schedule.data,
            cron=schedule.timing.cron,
            interval_seconds=schedule.timing.interval_seconds,
            timezone=schedule.timing.timezone,
            priority=schedule.priority,
            queue=schedule.queue,
            enabled=schedule.enabled,
            missed_policy=schedule.missed_policy.value,
        )


SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(ScheduleSpec))


def describe(s: Schedule) -> dict[str, Any]:
    """A schedule as the edges show it (API and CLI): snake_case, datetimes left to the edge."""
    return {
        "id": s.id,
        "name": s.name,
        "job_type": s.kind,
        "data": s.data,
        "cron": s.timing.cron,
        "timezone": s.timing.timezone,
        "interval_seconds": s.timing.interval_seconds,
        "priority": Priority.of(s.priority).value if s.priority is not None else None,
        "priority_level": s.priority,
        "queue": s.queue,
        "enabled": s.enabled,
        "missed_policy": s.missed_policy.value,
        "owner": dataclasses.asdict(s.owner),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "last_run_at": s.last_run_at,
        "next_run_at": s.next_run_at,
    }


@dataclass(frozen=True, slots=True)
class _Checked:
    name: str
    kind: str
    data: dict[str, Any]
    priority: int | None
    queue: str | None
    timing: Timing
    missed_policy: MissedPolicy


class Schedules:
    """Example::

    schedule = await conveyor.schedules.create(
        ScheduleSpec("nightly backup", "backup", {"target": "s3"}, cron="0 2 * * *", timezone="Europe/Berlin")
    )
    """

    def __init__(self, engine: Engine, *, grace: timedelta = timedelta(seconds=60), run_all_cap: int = 100) -> None:
        if run_all_cap < 1:
            raise ValueError("run_all_cap must be at least 1")
        self.engine = engine
        self.store = engine.store
        self.grace = grace
        self.run_all_cap = run_all_cap

    # --- definitions ------------------------------------------------------------------------

    def check(self, spec: ScheduleSpec) -> _Checked:
        """`spec` validated: unknown job type, data the job type refuses (every field named),
        bad priority, bad cron or time zone, an interval under a second, an unknown policy."""
        _check_types(spec)
        name = spec.name.strip()
        if not 1 <= len(name) <= 200 or text_problem(name):
            raise InvalidSchedule("name must be 1-200 characters of text", field="name")
        if spec.queue is not None and (not 1 <= len(spec.queue) <= 100 or text_problem(spec.queue)):
            raise InvalidSchedule("queue must be 1-100 characters of text", field="queue")
        # The job a tick would make, validated as an enqueue is (UnknownJobType, InvalidJobData,
        # InvalidJobOptions naming the field); its data is stored as the job type dumped it:
        # not sealed, even for a sensitive job type, whose tick jobs are sealed as each is made
        # (data sealed here would be bound to this throwaway job, and no tick could open it).
        job = self.engine.prepare(JobRequest(spec.job_type, spec.data, queue=spec.queue, priority=spec.priority))
        timing = Timing.of(cron=spec.cron, timezone=spec.timezone, interval_seconds=spec.interval_seconds)
        return _Checked(
            name=name,
            kind=job.kind,
            data=self.engine.registry.get(job.kind).dump_input(spec.data),
            priority=priority_level(spec.priority) if spec.priority is not None else None,
            queue=spec.queue,
            timing=timing,
            missed_policy=parse_policy(spec.missed_policy),
        )

    async def create(self, spec: ScheduleSpec, *, owner: Owner | None = None, now: datetime | None = None) -> Schedule:
        checked = self.check(spec)
        if owner and (field := too_long_owner_field(owner)):
            raise InvalidSchedule(f"{field} longer than {MAX_NAME_LENGTH} characters", field=field)
        now = now or utc_now()
        schedule = Schedule(
            id=str(new_job_id()),
            name=checked.name,
            kind=checked.kind,
            data=checked.data,
            priority=checked.priority,
            queue=checked.queue,
            timing=checked.timing,
            enabled=spec.enabled,
            missed_policy=checked.missed_policy,
            owner=owner or Owner(),
            created_at=now,
            updated_at=now,
            next_run_at=checked.timing.first_after(now) if spec.enabled else None,
        )
        await self.store.insert_schedule(schedule)
        await self._record("schedule.created", schedule, None, schedule)
        return schedule

    async def _record(self, action: str, schedule: Schedule, before: Schedule | None, after: Schedule | None) -> None:
        await self.engine.audit.record_many([self._entry(action, schedule, before, after)])

    def _entry(
        self,
        action: str,
        schedule: Schedule,
        before: Schedule | None,
        after: Schedule | None,
        signature: SignatureMark | None = None,
    ) -> AuditEntry:
        return self.engine.audit.entry(
            action,
            "schedule",
            schedule.id,
            before=None if before is None else describe(before),
            after=None if after is None else describe(after),
            org_id=schedule.owner.org_id,
            signature=signature,
        )

    async def _signature(self, operation: str) -> SignatureMark | None:
        signatures = self.engine.signatures
        return None if signatures is None else await signatures.demand(operation)

    async def get(self, schedule_id: str, *, visible_to: Visibility | None = None) -> Schedule:
        """The schedule; ScheduleNotFound also when it lies outside `visible_to`."""
        schedule = await self.store.get_schedule(schedule_id)
        if schedule is None or (visible_to is not None and not visible_to.allows(schedule.owner)):
            raise ScheduleNotFound(schedule_id)
        return schedule

    async def list(
        self, *, visible_to: Visibility | None = None, limit: int = 20, offset: int = 0
    ) -> tuple[list[Schedule], int]:
        return await self.store.list_schedules(visible_to=visible_to, limit=limit, offset=offset)

    async def update(
        self,
        schedule_id: str,
        changes: Mapping[str, Any],
        *,
        visible_to: Visibility | None = None,
        now: datetime | None = None,
    ) -> Schedule:
        """Change some of a schedule's settings (ScheduleSpec's names), checked as at creation.
        Giving `cron` switches an interval schedule to cron and `interval_seconds` the other
        way. A change of timing, or pausing or resuming, starts the schedule afresh from now."""
        if unknown := sorted(set(changes) - SPEC_FIELDS):
            raise InvalidSchedule(f"unknown setting {unknown[0]!r}", field=unknown[0])
        current = await self.get(schedule_id, visible_to=visible_to)
        if not changes:
            return current
        changes = dict(changes)
        for one, other in (("cron", "interval_seconds"), ("interval_seconds", "cron")):
            if changes.get(one) is not None and other not in changes:
                changes[other] = None
        spec = dataclasses.replace(ScheduleSpec.of(current), **changes)
        checked = self.check(spec)
        values: dict[str, Any] = {
            "name": checked.name,
            "kind": checked.kind,
            "data": checked.data,
            "priority": checked.priority,
            "queue": checked.queue,
            **timing_columns(checked.timing),
            "enabled": spec.enabled,
            "missed_policy": checked.missed_policy.value,
        }
        if checked.timing != current.timing or spec.enabled != current.enabled:
            values["next_run_at"] = checked.timing.first_after(now or utc_now()) if spec.enabled else None
        signature = await self._signature("schedule.change")
        updated = await self.store.update_schedule(
            schedule_id, values, lambda s: [self._entry("schedule.changed", s, current, s, signature)]
        )
        if updated is None:
            raise ScheduleNotFound(schedule_id)
        return updated

    async def pause(self, schedule_id: str, *, visible_to: Visibility | None = None) -> Schedule:
        """No ticks until resumed (ticks in between never fire, whatever the missed policy)."""
        return await self._set_enabled(schedule_id, False, visible_to)

    async def resume(self, schedule_id: str, *, visible_to: Visibility | None = None) -> Schedule:
        """Ticks again, from the first one after now."""
        return await self._set_enabled(schedule_id, True, visible_to)

    async def _set_enabled(self, schedule_id: str, enabled: bool, visible_to: Visibility | None) -> Schedule:
        # Not through update(): pausing needs no validation, and must work for a schedule
        # whose job type this process does not know.
        current = await self.get(schedule_id, visible_to=visible_to)
        if current.enabled == enabled:
            return current
        next_run_at = current.timing.first_after(utc_now()) if enabled else None
        signature = await self._signature("schedule.change")
        action = "schedule.resumed" if enabled else "schedule.paused"
        updated = await self.store.update_schedule(
            schedule_id,
            {"enabled": enabled, "next_run_at": next_run_at},
            lambda s: [self._entry(action, s, current, s, signature)],
        )
        if updated is None:
            raise ScheduleNotFound(schedule_id)
        return updated

    async def delete(self, schedule_id: str, *, visible_to: Visibility | None = None) -> Schedule:
        """Delete the schedule (jobs it made stay); the schedule as it was."""
        schedule = await self.get(schedule_id, visible_to=visible_to)
        signature = await self._signature("schedule.delete")
        if not await self.store.delete_schedule(
            schedule_id, [self._entry("schedule.deleted", schedule, schedule, None, signature)]
        ):
            raise ScheduleNotFound(schedule_id)
        return schedule

    async def run_now(self, schedule_id: str, *, visible_to: Visibility | None = None) -> Job:
        """One job of the schedule, now: an operator's "run now", paused or not. Its ticks stay
        as they were. Recorded as schedule.run naming the job, in the transaction that stores it."""
        schedule = await self.get(schedule_id, visible_to=visible_to)
        new_job = self.engine.prepare(
            JobRequest(
                schedule.kind,
                schedule.data,
                queue=schedule.queue,
                priority=schedule.priority,
                owner=schedule.owner,
                schedule_id=schedule.id,
            )
        )
        ran = self.engine.audit.entry(
            "schedule.run", "schedule", schedule.id, after={"jobId": str(new_job.id)}, org_id=schedule.owner.org_id
        )
        [(job, _created)] = await self.store.insert_jobs([new_job], also=[ran])
        return self.engine.sealing.opened(job)

    # --- ticks ------------------------------------------------------------------------------

    async def fire_due(self, now: datetime) -> list[Job]:
        """Fire the ticks due at `now`, as each schedule's missed policy says; the jobs made.

        Safe to run in several processes at once (the leader election only saves the work):
        each schedule moves on by a compare-and-set, and a tick's job has the tick's key."""
        made: list[Job] = []
        due = await self.store.due_schedules(now, FIRE_BATCH, kinds=self.engine.registry.kinds())
        for schedule in due:
            made.extend(await self._fire(schedule, now))
        return made

    async def _fire(self, schedule: Schedule, now: datetime) -> list[Job]:
        # type narrowing: due_schedules selects rows with next_run_at set (bandit B101)
        assert schedule.next_run_at is not None  # nosec B101
        plan = plan_ticks(
            schedule.timing,
            schedule.next_run_at,
            now,
            schedule.missed_policy,
            grace=self.grace,
            cap=self.run_all_cap,
        )
        try:
            new_jobs = [self._job(schedule, tick) for tick in plan.fire]
        except (InvalidJobData, InvalidJobOptions) as exc:
            # The job type changed under the schedule: these ticks cannot make a job. They are
            # passed over (not retried every second); the schedule needs fixing.
            log.error(
                "schedule %s (%s): its job no longer validates; ticks skipped: %s", schedule.id, schedule.name, exc
            )
            new_jobs = []
        last = plan.fire[-1] if new_jobs else None
        made = await self.store.fire_schedule(
            schedule, next_run_at=plan.next_run_at, last_run_at=last, new_jobs=new_jobs
        )
        return made or []

    def _job(self, schedule: Schedule, tick: datetime) -> NewJob:
        return self.engine.prepare(
            JobRequest(
                schedule.kind,
                schedule.data,
                queue=schedule.queue,
                priority=schedule.priority,
                owner=schedule.owner,
                schedule_id=schedule.id,
                idempotency_key=tick_key(schedule.id, tick),
            )
        )


# The settings' types, for callers that bypass a typed edge (library code, a PATCH of nulls).
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "text"),
    "job_type": ((str,), "text"),
    "cron": ((str, type(None)), "text or null"),
    "interval_seconds": ((int, float, type(None)), "a number or null"),
    "timezone": ((str,), "text"),
    "queue": ((str, type(None)), "text or null"),
    "enabled": ((bool,), "true or false"),
    "missed_policy": ((str,), "text"),
}


def _check_types(spec: ScheduleSpec) -> None:
    for name, (types, wanted) in _TYPES.items():
        value = getattr(spec, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise InvalidSchedule(f"{name} must be {wanted}", field=name)
