"""The result cache over HTTP, in seed 003's shapes: `GET /api/v1/cache/stats` and
`DELETE /api/v1/cache/clear?confirm=true` (errors `{detail, status_code, timestamp}`).

Both cover the caller's scope only (its organisation, narrowed as its visibility is; a super
admin all of them). Reading needs `jobs:read`, clearing `cache:clear` (operators and above).
Requests reuse results with `useCache` on `POST /api/v1/jobs` (and seed 003's `use_cache`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from conveyor.access import Permission, Principal
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.params import labels_filter
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso

router = APIRouter(prefix="/api/v1/cache", tags=["result cache (seed 003)"], route_class=LeanRoute)

Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Clearer = Annotated[Principal, Depends(require(Permission.CACHE_CLEAR))]
Svc = Annotated[Services, Depends(services)]

STATS_EXAMPLE = {
    "total_cached_results": 15,
    "cache_hit_rate": 23.5,
    "total_cache_size_mb": 2.34,
    "oldest_cached_result": "2024-01-15T10:00:00Z",
    "newest_cached_result": "2024-01-15T14:28:45Z",
}


@router.get(
    "/stats",
    summary="Cache statistics (seed 003)",
    responses={200: {"content": {"application/json": {"example": STATS_EXAMPLE}}}},
)
async def cache_stats(svc: Svc, principal: Reader) -> dict[str, Any]:
    """Results reusable now (completed within CACHE_TTL), their size as stored JSON, the oldest
    and newest; the hit rate (percent) of requests made with use_cache that ran nothing — a
    completed result, or a job in flight they attached to — counted per entry until cleared."""
    stats = await svc.conveyor.cache.stats(visible_to=principal.visibility)
    return {
        "total_cached_results": stats.entries,
        "cache_hit_rate": stats.hit_rate,
        "total_cache_size_mb": round(stats.size_bytes / 1_000_000, 2),
        "oldest_cached_result": iso(stats.oldest),
        "newest_cached_result": iso(stats.newest),
    }


@router.delete(
    "/clear",
    summary="Clear cached results (seed 003); confirm=true required",
    responses={
        200: {
            "content": {
                "application/json": {"example": {"cleared_results": 15, "message": "Cleared 15 cached results"}}
            }
        }
    },
)
async def clear_cache(
    svc: Svc,
    principal: Clearer,
    confirm: Annotated[bool, Query(description="must be true")] = False,
    age_group: Annotated[str | None, Query(description="only results of jobs with this label (seed 003)")] = None,
    country: Annotated[str | None, Query(description="only results of jobs with this label (seed 003)")] = None,
    label: Annotated[list[str], Query(description="only results of jobs with this label, key:value (repeatable)")] = [],  # noqa: B006
) -> dict[str, Any]:
    """Completed results are forgotten (their jobs stay): the next identical request runs.
    Jobs still in flight keep their entries, so identical requests still attach to them."""
    if not confirm:
        raise ApiError(400, "CONFIRMATION_REQUIRED", "confirm=true is required to clear the cache", field="confirm")
    labels = labels_filter(label, age_group=age_group, country=country)
    cleared = await svc.conveyor.cache.clear(visible_to=principal.visibility, labels=labels)
    return {"cleared_results": cleared, "message": f"Cleared {cleared} cached result{'' if cleared == 1 else 's'}"}
