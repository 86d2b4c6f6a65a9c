"""Retention: how long finished jobs and log lines are kept, and the leader's Pruner.

Defaults (seeds 001 and 002): completed jobs 24 h after they completed, failed 72 h, log lines
30 days. Cancelled jobs are kept as completed ones (24 h: a cancel is a decision, not a fault
to investigate), timed-out ones as failed ones (72 h: a timeout is a failure). Each may be set
per queue. A TTL of None keeps those jobs for good.

A job is removed with its log lines and the result-cache entries that point at it (a later
identical request runs afresh). Jobs of a batch go with their batch, all at once, when every
member is past its own TTL: a batch is never shown with members missing. Job types may keep
files for their jobs; their prune hooks (`Registry.on_pruned`) are told of the jobs removed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.engine import Engine
from conveyor.model import FINISHED, PrunedJob, Status

log = logging.getLogger("conveyor.retention")

BATCH_ROWS = 500  # rows per statement: short transactions
MAX_ROWS_PER_PASS = 50_000  # a backlog is worked through over several passes


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """TTLs of finished jobs by status; None keeps them."""

    completed: timedelta | None = timedelta(hours=24)
    failed: timedelta | None = timedelta(hours=72)
    cancelled: timedelta | None = timedelta(hours=24)
    timeout: timedelta | None = timedelta(hours=72)

    def ttl(self, status: Status) -> timedelta | None:
        return getattr(self, status.value)  # type: ignore[no-any-return]

    @classmethod
    def of_hours(cls, hours: Mapping[str, float | None], base: RetentionPolicy | None = None) -> RetentionPolicy:
        """From {"completed_hours": 168, …} (0 or None: keep), the rest as in `base`."""
        base = base or cls()
        values: dict[str, timedelta | None] = {}
        for status in FINISHED:
            name = f"{status.value}_hours"
            if name in hours:
                h = hours[name]
                values[status.value] = timedelta(hours=h) if h else None
            else:
                values[status.value] = base.ttl(status)
        return cls(**values)


@dataclass(frozen=True)
class Retention:
    default: RetentionPolicy = field(default_factory=RetentionPolicy)
    queues: Mapping[str, RetentionPolicy] = field(default_factory=dict)
    logs: timedelta | None = timedelta(days=30)
    # Job counters outlive their jobs: analytics sum them over ranges of up to a year.
    counters: timedelta | None = timedelta(days=400)

    def ttl(self, status: Status, queue: str) -> timedelta | None:
        return self.queues.get(queue, self.default).ttl(status)

    def expired(self, c: Any, now: datetime) -> sa.ColumnElement[bool]:
        """SQL over the jobs table's columns `c`: the job is finished and past its TTL at `now`."""
        cases = []
        overridden = list(self.queues)
        for status in FINISHED:
            for queue, policy in self.queues.items():
                if (ttl := policy.ttl(status)) is not None:
                    cases.append(sa.and_(c.status == status.value, c.queue == queue, c.completed_at < now - ttl))
            if (ttl := self.default.ttl(status)) is not None:
                in_default = c.queue.notin_(overridden) if overridden else sa.true()
                cases.append(sa.and_(c.status == status.value, in_default, c.completed_at < now - ttl))
        return sa.or_(*cases) if cases else sa.false()

    def shortest(self) -> timedelta | None:
        ttls = [p.ttl(s) for p in (self.default, *self.queues.values()) for s in FINISHED]
        known = [t for t in ttls if t is not None]
        return min(known) if known else None


class Pruner:
    """Deletes what is past retention, in short batches; one audit record per pass that did."""

    def __init__(
        self,
        engine: Engine,
        retention: Retention,
        *,
        data_dir: Path | None = None,
        batch_rows: int = BATCH_ROWS,
        max_rows: int = MAX_ROWS_PER_PASS,
    ) -> None:
        self.engine = engine
        self.store: Any = engine.store
        self.retention = retention
        self.data_dir = data_dir
        self.batch_rows = batch_rows
        self.max_rows = max_rows

    async def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """One pass; how many of each were deleted (jobs by status, batches, log lines,
        deliveries, alerts, read notifications, job counters). `now` fixes the clock (tests); by
        default the database's."""
        now = now or await self.store.database_now()
        counts: dict[str, int] = {}
        budget = self.max_rows
        for status in sorted(FINISHED, key=lambda s: s.value):
            budget -= await self._prune_status(status, now, counts, budget)
        budget -= await self._prune_batches(now, counts, budget)
        if self.retention.logs is not None:
            before = now - self.retention.logs
            for name, prune in (
                ("logs", self.store.prune_logs),
                ("deliveries", self.store.prune_deliveries),
                ("alerts", self.store.prune_alerts),
                ("notifications", self.store.prune_notifications),  # read ones only
            ):
                budget -= await self._repeat(lambda p=prune: p(before, self.batch_rows), name, counts, budget)  # type: ignore[misc]
        if self.retention.counters is not None:
            counters_before = now - self.retention.counters
            step = functools.partial(self.store.prune_counters, counters_before, self.batch_rows)
            budget -= await self._repeat(step, "counters", counts, budget)
        counts = {k: v for k, v in counts.items() if v}
        if counts:
            log.info("retention pruned %s", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
            await self.engine.audit.record(
                "retention.pruned", "retention", None, after={"counts": counts, "before": now.isoformat()}
            )
        return counts

    async def _repeat(self, step: Any, name: str, counts: dict[str, int], budget: int) -> int:
        done = 0
        while done < budget:
            n = await step()
            done += n
            if n < self.batch_rows:
                break
        counts[name] = counts.get(name, 0) + done
        return done

    async def _prune_status(self, status: Status, now: datetime, counts: dict[str, int], budget: int) -> int:
        done = 0
        targets: list[tuple[timedelta | None, dict[str, Any]]] = [
            (policy.ttl(status), {"queues": [queue]}) for queue, policy in self.retention.queues.items()
        ]
        targets.append((self.retention.default.ttl(status), {"not_queues": list(self.retention.queues)}))
        for ttl, where in targets:
            if ttl is None:
                continue
            while done < budget:
                pruned = await self.store.prune_jobs(status, now - ttl, limit=self.batch_rows, **where)
                done += len(pruned)
                self._tell_hooks(pruned)
                if len(pruned) < self.batch_rows:
                    break
        counts[f"jobs.{status.value}"] = done
        return done

    async def _prune_batches(self, now: datetime, counts: dict[str, int], budget: int) -> int:
        shortest = self.retention.shortest()
        if shortest is None:
            return 0
        done = batches = 0
        candidates = await self.store.finished_batches_before(now - shortest)
        for batch_id, members in candidates.items():
            if done >= budget:
                break
            if not all(self._member_expired(m, now) for m in members):
                continue
            pruned = await self.store.prune_batch(batch_id, lambda c: self.retention.expired(c, now))
            if pruned or not members:
                batches += 1
            done += len(pruned)
            self._tell_hooks(pruned)
        counts["batches"] = batches
        counts["jobs.batch_members"] = done
        return done

    def _member_expired(self, member: Any, now: datetime) -> bool:
        ttl = self.retention.ttl(Status(member.status), member.queue)
        return ttl is not None and member.completed_at is not None and member.completed_at < now - ttl

    def _tell_hooks(self, pruned: list[PrunedJob]) -> None:
        if not pruned or self.data_dir is None:
            return
        hooks = self.engine.registry.prune_hooks
        by_kind: dict[str, list[PrunedJob]] = {}
        for job in pruned:
            if job.kind in hooks:
                by_kind.setdefault(job.kind, []).append(job)
        for kind, jobs in by_kind.items():
            for hook in hooks[kind]:
                try:
                    hook(self.data_dir, jobs)
                except Exception:
                    log.exception("prune hook of %s failed", kind)
