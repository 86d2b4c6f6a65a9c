"""Prometheus metrics of one API process, in a registry of its own (one per app).

Request latency and errors are observed as requests pass, labelled by route template (never
by raw path, whose ids would make a series per job). Job counts and queue depth are read from
the database when /metrics is scraped; job durations are observed by the worker running in
this process (`conveyor serve`), through the worker's on_finished hook.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from conveyor.insights import Insights
from conveyor.model import Job, JobFilter, Status, utc_now

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

    async def render(self, insights: Insights) -> bytes:
        """The exposition text, with the store's current counts."""
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
        return generate_latest(self.registry)
