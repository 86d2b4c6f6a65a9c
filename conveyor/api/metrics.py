"""Prometheus metrics of one API process, in a registry of its own (one per app).

Request latency and errors are observed as requests pass, labelled by route template (never
by raw path, whose ids would make a series per job). Job counts and queue depth are read from
the database when /metrics is scraped; job durations are observed by the worker running in
this process (`conveyor serve`), through the worker's on_finished hook.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from conveyor.insights import Insights
from conveyor.model import Job, JobFilter, Status, utc_now

DEFAULT_WINDOW = timedelta(minutes=5)
DURATION_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "conveyor_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "conveyor_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "conveyor_http_errors",
            "HTTP answers with status >= 400",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.jobs = Gauge("conveyor_jobs", "Jobs stored", ["status", "type", "queue"], registry=self.registry)
        self.queue_depth = Gauge("conveyor_queue_depth", "Pending jobs per queue", ["queue"], registry=self.registry)
        self.oldest_pending = Gauge(
            "conveyor_queue_oldest_pending_seconds", "Age of the oldest pending job", ["queue"], registry=self.registry
        )
        self.job_duration = Histogram(
            "conveyor_job_duration_seconds",
            "Run time of jobs finished by this process's worker",
            ["type", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.alerts_active = Gauge(
            "conveyor_alerts_active",
            "Active alerts (conveyor.engine.alerts), each at the value that raised it",
            ["org", "type", "metric"],
            registry=self.registry,
        )
        # Per job type (and organisation, as the alerts), over the alerts' sliding window:
        # read from the database at each scrape, so they cover every worker, not only this one.
        window = ["org", "type"]
        self.window_finished = Gauge(
            "conveyor_job_window_finished", "Jobs that ran to an end (completed, failed, timed out) in the window",
            window, registry=self.registry,
        )  # fmt: skip
        self.window_success_rate = Gauge(
            "conveyor_job_window_success_rate", "Completed / ran to an end, over the alert window",
            window, registry=self.registry,
        )  # fmt: skip
        self.window_error_rate = Gauge(
            "conveyor_job_window_error_rate", "Failed or timed out / ran to an end, over the alert window",
            window, registry=self.registry,
        )  # fmt: skip
        self.window_p95 = Gauge(
            "conveyor_job_window_duration_p95_seconds", "95th percentile run time over the alert window",
            window, registry=self.registry,
        )  # fmt: skip
        self.window_retries = Gauge(
            "conveyor_job_window_retries", "Attempts beyond the first, of the jobs that ran to an end in the window",
            window, registry=self.registry,
        )  # fmt: skip
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() validates and locks on every call; the children of a (method, route, status)
        # are looked up once. Routes are templates, so the keys are few.
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            error = self.errors.labels(method, route, str(status)) if status >= 400 else None
            children = self._request_children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
                error,
            )
        requests, latency, errors = children
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()

    def observe_job(self, job: Job, status: Status, seconds: float) -> None:
        self.job_duration.labels(job.kind, status.value).observe(seconds)

    async def render(self, insights: Insights, window: timedelta = DEFAULT_WINDOW) -> bytes:
        """The exposition text, with the store's current counts and the per job type figures
        of the last `window` (the alerts' window)."""
        counts = await insights.store.count_grouped(JobFilter(), ("status", "kind", "queue"))
        self.jobs.clear()
        for (status, kind, queue), n in counts.items():
            self.jobs.labels(status, kind, queue).set(n)
        self.queue_depth.clear()
        self.oldest_pending.clear()
        now = utc_now()
        for queue in await insights.queues(JobFilter()):
            self.queue_depth.labels(queue.name).set(queue.counts.get(Status.PENDING, 0))
            age = queue.age_seconds(now)
            if age is not None:
                self.oldest_pending.labels(queue.name).set(age)
        self.alerts_active.clear()
        for alert in await insights.store.active_alerts():
            self.alerts_active.labels(alert.org_id or "", alert.kind, alert.metric).set(alert.value)
        await self._render_window(insights, window)
        return generate_latest(self.registry)

    async def _render_window(self, insights: Insights, window: timedelta) -> None:
        gauges = (self.window_finished, self.window_success_rate, self.window_error_rate, self.window_p95)
        for gauge in (*gauges, self.window_retries):
            gauge.clear()
        since = await insights.store.database_now() - window
        for s in await insights.store.window_stats(since):
            labels = (s.org_id or "", s.kind)
            self.window_finished.labels(*labels).set(s.samples)
            self.window_success_rate.labels(*labels).set(s.success_rate)
            self.window_error_rate.labels(*labels).set(s.error_rate)
            self.window_retries.labels(*labels).set(s.retries)
            if s.p95_ms is not None:
                self.window_p95.labels(*labels).set(s.p95_ms / 1000.0)
