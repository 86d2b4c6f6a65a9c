"""Insights: what operators ask of the job store — totals, per-queue state, recent performance.

Core, no HTTP: the API families, the CLI and the dashboard render these dataclasses in their
own shapes. Every figure is computed by the database over the jobs a JobFilter admits, so a
caller's visibility narrows statistics exactly as it narrows listings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from conveyor.model import JobFilter, Priority, Status, utc_now
from conveyor.store.control import WorkerRecord
from conveyor.store.portable import SqlStore

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Performance:
    window: timedelta
    completed: int
    failed: int  # failed and timed out
    cancelled: int
    average_seconds: float | None

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def success_rate(self) -> float | None:
        """Completed out of completed and failed, in percent (cancelled jobs do not count)."""
        judged = self.completed + self.failed
        return round(100.0 * self.completed / judged, 1) if judged else None

    @property
    def per_minute(self) -> float:
        return self.finished / (self.window.total_seconds() / 60)


@dataclass(frozen=True, slots=True)
class Summary:
    by_status: dict[Status, int]
    by_kind: dict[str, dict[Status, int]]
    by_priority: dict[Priority, int]
    last_hour: Performance
    last_day: Performance
    peak_concurrency_last_hour: int

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    counts: dict[Status, int] = field(default_factory=dict)
    oldest_pending_at: datetime | None = None
    completed_last_hour: int = 0
    failed_last_hour: int = 0
    paused: bool = False
    concurrency: int = 0  # slots of the live workers that serve this queue
    workers: int = 0

    def age_seconds(self, now: datetime) -> float | None:
        if self.oldest_pending_at is None:
            return None
        return max((now - self.oldest_pending_at).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Jobs that finished in [start, start + the series' bucket)."""

    start: datetime
    completed: int = 0
    failed: int = 0  # failed and timed out
    cancelled: int = 0

    @property
    def error_rate(self) -> float | None:
        """Failed out of completed and failed, in percent (None: nothing was judged)."""
        judged = self.completed + self.failed
        return round(100.0 * self.failed / judged, 1) if judged else None


# A worker is counted as live while its presence is this fresh (it refreshes every few seconds).
WORKER_FRESH = timedelta(seconds=30)


class Insights:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def performance(self, where: JobFilter, window: timedelta) -> Performance:
        groups = await self.store.finished_since(where, utc_now() - window, by="status")
        completed = sum(g.completed for g in groups)
        weighted = sum((g.average_seconds or 0) * g.completed for g in groups)
        return Performance(
            window=window,
            completed=completed,
            failed=sum(g.failed for g in groups),
            cancelled=sum(g.cancelled for g in groups),
            average_seconds=weighted / completed if completed else None,
        )

    async def throughput(self, where: JobFilter, window: timedelta, bucket: timedelta) -> list[Bucket]:
        """Finished jobs per `bucket` (a whole number of minutes) over the last `window`, oldest
        first, every bucket present (empty ones as zeros); the last one is the current, partial one.
        Built from the database's per-minute counts, so a restart loses nothing."""
        step = max(int(bucket.total_seconds() // 60), 1)
        now = utc_now()
        epoch_minute = int(now.timestamp() // 60)
        last = epoch_minute - epoch_minute % step  # the current bucket's first minute
        count = max(int(window.total_seconds() // 60) // step, 1)
        first = last - (count - 1) * step
        starts = [datetime.fromtimestamp((first + i * step) * 60, UTC) for i in range(count)]
        sums = {start: [0, 0, 0] for start in starts}
        for row in await self.store.finished_by_minute(where, starts[0]):
            minute = int(row.minute.timestamp() // 60)
            if minute < first:
                continue
            key = starts[min((minute - first) // step, count - 1)]
            sums[key][0] += row.completed
            sums[key][1] += row.failed
            sums[key][2] += row.cancelled
        return [Bucket(start, *sums[start]) for start in starts]

    async def summary(self, where: JobFilter) -> Summary:
        counts = await self.store.count_grouped(where, ("kind", "status", "priority"))
        by_status: dict[Status, int] = dict.fromkeys(Status, 0)
        by_kind: dict[str, dict[Status, int]] = {}
        by_priority: dict[Priority, int] = dict.fromkeys(Priority, 0)
        for (kind, status, priority), n in counts.items():
            by_status[Status(status)] += n
            kind_counts = by_kind.setdefault(kind, dict.fromkeys(Status, 0))
            kind_counts[Status(status)] += n
            by_priority[Priority.of(priority)] += n
        return Summary(
            by_status=by_status,
            by_kind=by_kind,
            by_priority=by_priority,
            last_hour=await self.performance(where, HOUR),
            last_day=await self.performance(where, DAY),
            peak_concurrency_last_hour=await self.store.peak_concurrency(where, utc_now() - HOUR),
        )

    async def queues(self, where: JobFilter) -> list[QueueInfo]:
        """Every queue that has jobs, is paused, or is served by a live worker."""
        counts = await self.store.count_grouped(where, ("queue", "status"))
        oldest = await self.store.oldest_pending(where)
        recent = {g.key: g for g in await self.store.finished_since(where, utc_now() - HOUR, by="queue")}
        states = await self.store.queue_states()
        live = await self.live_workers()
        names = {q for q, _ in counts} | set(states) | {q for w in live for q in w.queues}
        out = []
        for name in sorted(names):
            serving = [w for w in live if name in w.queues]
            info = QueueInfo(
                name=name,
                counts={Status(s): n for (q, s), n in counts.items() if q == name},
                oldest_pending_at=oldest.get(name),
                paused=states[name].paused if name in states else False,
                concurrency=sum(w.concurrency for w in serving),
                workers=len(serving),
            )
            if name in recent:
                info = replace(info, completed_last_hour=recent[name].completed, failed_last_hour=recent[name].failed)
            out.append(info)
        return out

    async def live_workers(self) -> list[WorkerRecord]:
        return [w for w in await self.store.list_workers() if utc_now() - w.last_seen_at < WORKER_FRESH]
