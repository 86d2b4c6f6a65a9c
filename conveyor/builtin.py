"""Built-in job types for operations and benchmarks: `noop` and `sleep`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.context import Context
from conveyor.jobtypes import Registry

jobtypes = Registry()


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="allow")


class SleepInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=86_400, description="how long to sleep")


@jobtypes.job_type("noop")
async def noop(ctx: Context, data: NoopInput) -> dict[str, Any]:
    """Returns at once (its input echoed back): for health checks and benchmarks."""
    return data.model_dump()


@jobtypes.job_type("sleep")
async def sleep(ctx: Context, data: SleepInput) -> dict[str, Any]:
    """Sleeps, reporting progress each second; stops at once when cancelled."""
    whole = int(data.seconds)
    steps = whole + (1 if data.seconds > whole else 0)
    ctx.progress(processed=0, total=max(steps, 1))
    remaining = data.seconds
    done = 0
    while remaining > 0:
        chunk = min(1.0, remaining)
        await ctx.sleep(chunk)
        remaining -= chunk
        done += 1
        ctx.progress(processed=done)
    return {"slept": data.seconds}
