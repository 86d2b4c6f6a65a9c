"""The result cache: a job type that derives a cache key from its input (`JobType.cache_key`)
lets identical requests share one run.

A request made with `use_cache` whose key matches a job that completed within the TTL gets
that job at once, without running anything ("hit"); one matching a job still scheduled,
pending or running gets that job ("attached"), so concurrent identical requests run once;
otherwise a job is created as usual ("miss"). The answer says which, with the source job's
id and when its result was made. Results are shared within a scope: the requester's
organisation, narrowed to its study or to itself as its visibility is — one organisation
never gets another's result, and a caller only ever gets a job it may see.

Seed 003's `use_cache` on `POST /api/v1/calibrate/async`, `/api/v1/cache/stats` and
`/api/v1/cache/clear` map onto `submit`, `stats` and `clear`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from conveyor.audit import AuditEntry
from conveyor.engine import Engine, JobRequest, JobTypeRef
from conveyor.errors import InvalidJobOptions
from conveyor.model import Job, NewJob, Visibility, utc_now
from conveyor.store.cache import CacheOutcome, CacheScope, CacheStats

DEFAULT_TTL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Where a request's job came from: `hit` (a completed job's result, made at `cached_at`)
    or `attached` (a job still in flight, shared)."""

    outcome: CacheOutcome
    source_job_id: UUID
    cached_at: datetime | None


@dataclass(frozen=True, slots=True)
class Submitted:
    """The job a request made with use_cache got; `created` when it is a new job (a miss, or
    a job type without a cache key), `cache` when it came from the cache."""

    job: Job
    created: bool
    cache: CacheInfo | None = None


class ResultCache:
    """Example::

    got = await conveyor.cache.submit("calibration", data, owner=owner, visible_to=principal.visibility)
    got.cache  # None: a new job runs; else CacheInfo("hit", source_job_id, cached_at)
    """

    def __init__(self, engine: Engine, *, ttl: timedelta = DEFAULT_TTL) -> None:
        if ttl <= timedelta(0):
            raise ValueError("the cache's ttl must be positive")
        self.engine = engine
        self.store = engine.store
        self.ttl = ttl

    async def submit(
        self,
        job_type: JobTypeRef,
        data: Any = None,
        *,
        visible_to: Visibility | None = None,
        now: datetime | None = None,
        **options: Any,
    ) -> Submitted:
        """As Engine.submit, reusing an identical job's result where there is one (see the
        module). `visible_to` is the requester's scope (None: its owner's organisation)."""
        if options.get("idempotency_key") is not None:
            raise InvalidJobOptions("give use_cache or an idempotency key, not both", field="idempotency_key")
        new_job = self.engine.prepare(JobRequest(job_type, {} if data is None else data, **options))
        if new_job.cache_key is None:  # the job type derives no key: nothing to share
            job, created = await self._plain(new_job)
            return Submitted(job, created)
        scope = CacheScope.of(visible_to) if visible_to is not None else CacheScope(new_job.owner.org_id)
        fresh_after = (now or utc_now()) - self.ttl
        job, outcome = await self.store.insert_cached_job(new_job, scope, fresh_after=fresh_after)
        if outcome == "miss":
            return Submitted(job, True)
        cached_at = job.completed_at if outcome == "hit" else None
        return Submitted(job, False, CacheInfo(outcome, job.id, cached_at))

    async def _plain(self, new_job: NewJob) -> tuple[Job, bool]:
        [(job, created)] = await self.store.insert_jobs([new_job])
        return job, created

    async def stats(self, *, visible_to: Visibility | None = None, now: datetime | None = None) -> CacheStats:
        """Fresh entries `visible_to` may see (None: all), their size, oldest and newest, and the
        hit rate of requests made with use_cache (counted since their entries were last cleared)."""
        return await self.store.cache_stats(visible_to=visible_to, fresh_after=(now or utc_now()) - self.ttl)

    async def clear(self, *, visible_to: Visibility | None = None, labels: Mapping[str, str] | None = None) -> int:
        """Forget completed results `visible_to` may see (with these labels, when given): the
        next identical request runs again. How many entries were cleared (recorded in the
        audit trail as cache.cleared)."""
        signatures = self.engine.signatures
        signature = None if signatures is None else await signatures.demand("cache.clear")
        org_id = visible_to.org_id if visible_to is not None else None

        def records(cleared: int) -> list[AuditEntry]:
            after = {"cleared": cleared, "labels": dict(labels or {})}
            return [self.engine.audit.entry("cache.cleared", "cache", None, after=after, org_id=org_id,
                                            signature=signature)]  # fmt: skip

        cleared: int = await self.store.clear_cache(visible_to=visible_to, labels=labels, records=records)
        return cleared
