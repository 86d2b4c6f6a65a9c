"""What the routes use, built once per app and reached through `request.app.state.services`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from conveyor.access import Principal
from conveyor.api.auth import Authenticator, JwtIssuer
from conveyor.api.errors import ApiError, api_error_of
from conveyor.apikeys import ApiKeys
from conveyor.engine import Engine
from conveyor.errors import UnknownJobType
from conveyor.insights import Insights
from conveyor.limits import JobLimits
from conveyor.runtime import Conveyor
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.api.metrics import ApiMetrics


@dataclass
class Services:
    conveyor: Conveyor
    keys: ApiKeys
    auth: Authenticator
    metrics: ApiMetrics
    insights: Insights
    limits: JobLimits
    issuer: JwtIssuer
    worker_enabled: bool = False
    started_at: float = field(default_factory=time.time)

    @property
    def engine(self) -> Engine:
        return self.conveyor.engine

    @property
    def settings(self) -> Settings:
        return self.conveyor.settings


def queue_of(svc: Services, kind: str, queue: str | None) -> list[str]:
    """The queue a job of `kind` goes to: `queue` if given, else the type's; none for a kind
    the registry does not know (creating it is refused with its own error)."""
    if queue:
        return [queue]
    return [svc.engine.registry.get(kind).queue] if kind in svc.engine.registry else []


async def admit_jobs(svc: Services, principal: Principal, n: int, queues: Iterable[str]) -> None:
    """Refuse, as an ApiError with Retry-After, jobs past the principal's creation rate (429)
    or into a full queue (503); see conveyor.limits."""
    key = f"{principal.via}:{principal.org_id or '-'}:{principal.user_id}"
    role = principal.role.value if principal.role else None
    refusal = await svc.limits.admit(key, role, n, queues)
    if refusal is None:
        return
    headers = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
    if refusal.reason == "rate":
        raise ApiError(429, "RATE_LIMITED", refusal.message, headers=headers)
    raise ApiError(503, "QUEUE_FULL", refusal.message, headers=headers)


def offered(svc: Services, kind: str, field: str) -> None:
    """Refuse, as the unknown job type it is to them, a kind the generic creation paths do not
    offer: one the platform makes itself (webhook deliveries, reminder firings) or one started
    through an endpoint of its own that checks who may (seed 001's, conveyor.api.routes.medication)."""
    registry = svc.engine.registry
    if kind in registry and registry.get(kind).internal:
        error = api_error_of(UnknownJobType(kind, registry.offered()))
        error.field = field
        raise error


async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
