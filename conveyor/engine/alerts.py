"""Alerts (seed 001's monitoring): per organisation and job type, over a sliding window.

Each pass of the leader (every `interval`) reads the jobs that ran to an end in the last
`window` (completed, failed, timed out; cancelled ones are neither errors nor run times) and,
where there were at least `min_samples` of them:

- error rate (failed + timed out) / ran, above `error_threshold` (default 0.01);
- p95 run time (started -> completed), above `latency_threshold_ms` (default 1,000 ms);

raises an alert (a row, an alert.raised webhook event in the same transaction, a warning in
the log, the `conveyor_alerts_active` gauge on /metrics), and clears it (alert.cleared) once a
window with enough samples is back at or under the threshold. With fewer than `min_samples`
in the window nothing changes: a single failure of a rarely run job type does not raise, and
an alert raised stays until traffic shows recovery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor.model import Visibility
from conveyor.store.alerts import Alert, WindowStats

log = logging.getLogger("conveyor.alerts")

ERROR_RATE, LATENCY = "error_rate", "latency_p95_ms"


@dataclass(frozen=True, slots=True)
class AlertRules:
    error_threshold: float = 0.01
    latency_threshold_ms: float = 1000.0
    window: timedelta = timedelta(minutes=5)
    min_samples: int = 20

    def threshold(self, metric: str) -> float:
        return self.error_threshold if metric == ERROR_RATE else self.latency_threshold_ms


def alert_json(alert: Alert, rules: AlertRules | None = None) -> dict[str, Any]:
    """An alert as the API and the webhook events show it."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": str(alert.id),
        "orgId": alert.org_id,
        "jobType": alert.kind,
        "metric": alert.metric,
        "threshold": alert.threshold,
        "value": alert.value,
        "samples": alert.samples,
        "status": "active" if alert.active else "cleared",
        "raisedAt": iso(alert.raised_at),
        "clearedAt": iso(alert.cleared_at),
        "clearedValue": alert.cleared_value,
        **({"windowSeconds": rules.window.total_seconds()} if rules else {}),
    }


class Alerts:
    def __init__(self, store: Any, rules: AlertRules) -> None:
        self.store = store
        self.rules = rules

    async def list(
        self, *, visible_to: Visibility | None, active: bool | None, limit: int, offset: int
    ) -> tuple[list[Alert], int]:
        """A page of alerts of `visible_to`'s organisation (None: all), newest first."""
        return await self.store.list_alerts(visible_to=visible_to, active=active, limit=limit, offset=offset)  # type: ignore[no-any-return]

    async def run_once(self, now: datetime | None = None) -> tuple[list[Alert], list[Alert]]:
        """One evaluation; the alerts raised and those cleared."""
        now = now or await self.store.database_now()
        stats: list[WindowStats] = await self.store.window_stats(now - self.rules.window)
        active = {(a.org_id, a.kind, a.metric): a for a in await self.store.active_alerts()}
        raised: list[Alert] = []
        cleared: list[Alert] = []
        for s in stats:
            if s.samples < self.rules.min_samples:
                continue
            for metric, value in ((ERROR_RATE, s.error_rate), (LATENCY, s.p95_ms)):
                if value is None:
                    continue
                threshold = self.rules.threshold(metric)
                current = active.get((s.org_id, s.kind, metric))
                if value > threshold and current is None:
                    raised.append(await self._raise(s, metric, value, threshold))
                elif value <= threshold and current is not None and (done := await self._clear(current, value)):
                    cleared.append(done)
        return raised, cleared

    async def _raise(self, s: WindowStats, metric: str, value: float, threshold: float) -> Alert:
        event = {
            "orgId": s.org_id, "jobType": s.kind, "metric": metric, "threshold": threshold, "value": value,
            "samples": s.samples, "status": "active", "windowSeconds": self.rules.window.total_seconds(),
        }  # fmt: skip
        alert: Alert = await self.store.raise_alert(
            org_id=s.org_id,
            kind=s.kind,
            metric=metric,
            threshold=threshold,
            value=value,
            samples=s.samples,
            event=event,
        )
        log.warning(
            "alert raised: %s of job type %s (organisation %s) is %.4g, over %.4g, on %d jobs in %ds",
            metric, s.kind, s.org_id or "-", value, threshold, s.samples, self.rules.window.total_seconds(),
        )  # fmt: skip
        return alert

    async def _clear(self, alert: Alert, value: float) -> Alert | None:
        event = {**alert_json(alert, self.rules), "status": "cleared", "clearedValue": value}
        event.pop("id", None)
        done: Alert | None = await self.store.clear_alert(alert.id, value, event=event)
        if done is not None:
            log.info(
                "alert cleared: %s of job type %s (organisation %s) is %.4g, at or under %.4g",
                alert.metric, alert.kind, alert.org_id or "-", value, alert.threshold,
            )  # fmt: skip
        return done
