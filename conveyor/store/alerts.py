"""Alerts: the window statistics they are decided on, and their rows (a mixin of SqlStore)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from conveyor.model import Status, Visibility, new_job_id, utc_now
from conveyor.store.hooks import StoreHooks
from conveyor.store.schema import alerts, jobs
from conveyor.store.webhooks import ALERT_CLEARED, ALERT_RAISED, DELIVERY_KIND

# Jobs that ran to an end: their share of failures is the error rate, their run times the latency.
RAN = (Status.COMPLETED.value, Status.FAILED.value, Status.TIMEOUT.value)
ERRORS = (Status.FAILED.value, Status.TIMEOUT.value)


@dataclass(frozen=True, slots=True)
class WindowStats:
    """One job type of one organisation over the window."""

    org_id: str | None
    kind: str
    samples: int  # jobs that ran to an end (completed, failed, timed out)
    errors: int  # of those, failed or timed out
    p95_ms: float | None  # 95th percentile of their run time (started -> completed)
    retries: int = 0  # of those, attempts beyond the first, summed

    @property
    def success_rate(self) -> float:
        return (self.samples - self.errors) / self.samples if self.samples else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.samples if self.samples else 0.0


@dataclass(frozen=True, slots=True)
class Alert:
    id: UUID
    org_id: str | None
    kind: str
    metric: str  # "error_rate" or "latency_p95_ms"
    threshold: float
    value: float
    samples: int
    raised_at: datetime
    cleared_at: datetime | None = None
    cleared_value: float | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None


def alert_from_row(row: Any) -> Alert:
    m = row._mapping
    return Alert(**{f: m[f] for f in Alert.__dataclass_fields__})


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class AlertTables(StoreHooks):
    """Alert rows and window statistics (mixed into SqlStore)."""

    async def window_stats(self, since: datetime) -> list[WindowStats]:
        """Per organisation and job type, the jobs that ran to an end since `since` (webhook
        deliveries left out: a receiver that is down is not the job type's failure)."""
        c = jobs.c
        ran = [c.status.in_(RAN), c.completed_at >= since, c.kind != DELIVERY_KIND]
        if self.dialect == "postgresql":
            ms = sa.func.extract("epoch", c.completed_at - c.started_at) * 1000.0
            stmt = (
                sa.select(
                    c.owner_org_id,
                    c.kind,
                    sa.func.count(),
                    sa.func.count().filter(c.status.in_(ERRORS)),
                    sa.func.percentile_cont(0.95).within_group(ms).filter(c.started_at.isnot(None)),
                    sa.func.coalesce(sa.func.sum(c.attempt - 1), 0),
                )
                .where(*ran)
                .group_by(c.owner_org_id, c.kind)
            )
            async with self._read_engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            return [
                WindowStats(o, k, int(n), int(e), float(p) if p is not None else None, int(r))
                for o, k, n, e, p, r in rows
            ]
        seconds = self._seconds_between(c.started_at, c.completed_at)  # type: ignore[attr-defined]
        stmt = sa.select(c.owner_org_id, c.kind, c.status, seconds, c.attempt).where(*ran)
        groups: dict[tuple[str | None, str], tuple[int, int, list[float], int]] = {}
        async with self._read_engine.connect() as conn:
            for org_id, kind, status, seconds, attempt in await conn.execute(stmt):
                n, e, durations, r = groups.get((org_id, kind), (0, 0, [], 0))
                if seconds is not None:
                    durations.append(float(seconds) * 1000.0)
                groups[(org_id, kind)] = (n + 1, e + (status in ERRORS), durations, r + max(attempt - 1, 0))
        return [WindowStats(o, k, n, e, percentile(d, 0.95), r) for (o, k), (n, e, d, r) in groups.items()]

    async def active_alerts(self) -> list[Alert]:
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(sa.select(alerts).where(alerts.c.cleared_at.is_(None)))).all()
        return [alert_from_row(r) for r in rows]

    async def raise_alert(
        self, *, org_id: str | None, kind: str, metric: str, threshold: float, value: float, samples: int,
        event: dict[str, Any] | None = None,
    ) -> Alert:  # fmt: skip
        """Store a raised alert and, in the same transaction, its alert.raised event (where the
        organisation subscribes). `event` is the payload, the alert's id filled in."""
        alert = Alert(new_job_id(), org_id, kind, metric, threshold, value, samples, utc_now())
        async with self._write() as conn:
            await conn.execute(alerts.insert().values(**{f: getattr(alert, f) for f in Alert.__dataclass_fields__}))
            if event is not None:
                await self.insert_event(conn, ALERT_RAISED, org_id, {**event, "id": str(alert.id)})
        return alert

    async def clear_alert(self, alert_id: UUID, value: float, event: dict[str, Any] | None = None) -> Alert | None:
        """Mark an active alert cleared and put its alert.cleared event in the outbox, in one
        transaction; None when it was not active."""
        stmt = (
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.cleared_at.is_(None))
            .values(cleared_at=utc_now(), cleared_value=value)
            .returning(*alerts.c)
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            alert = alert_from_row(row)
            if event is not None:
                await self.insert_event(conn, ALERT_CLEARED, alert.org_id, {**event, "id": str(alert.id)})
        return alert

    async def list_alerts(
        self, *, visible_to: Visibility | None, active: bool | None, limit: int, offset: int
    ) -> tuple[list[Alert], int]:
        """A page of alerts of the caller's organisation (None: every one), newest first."""
        c = alerts.c
        clauses: list[sa.ColumnElement[bool]] = []
        if visible_to is not None:
            clauses.append(c.org_id.is_(None) if visible_to.org_id is None else c.org_id == visible_to.org_id)
        if active is not None:
            clauses.append(c.cleared_at.is_(None) if active else c.cleared_at.isnot(None))
        page = sa.select(alerts).where(*clauses).order_by(c.raised_at.desc(), c.id.desc()).limit(limit).offset(offset)
        total = sa.select(sa.func.count()).select_from(alerts).where(*clauses)
        async with self._read_engine.connect() as conn:
            rows = (await conn.execute(page)).all()
            count = (await conn.execute(total)).scalar_one()
        return [alert_from_row(r) for r in rows], int(count)

    async def prune_alerts(self, before: datetime, limit: int = 500) -> int:
        """Cleared alerts cleared before `before`, up to `limit`; how many went."""
        c = alerts.c
        chosen = sa.select(c.id).where(c.cleared_at < before).limit(limit)
        async with self._write() as conn:
            result = await conn.execute(alerts.delete().where(c.id.in_(chosen.scalar_subquery())))
        return int(result.rowcount or 0)
