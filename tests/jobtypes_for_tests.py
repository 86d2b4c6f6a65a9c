"""Job types the tests run. A module of its own, so that child processes can import them."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from conveyor import Context, JobType, PermanentError, Registry, RetryableError, RetryPolicy

jobtypes = Registry()


class Echo(BaseModel):
    value: Any = None


class Report(BaseModel):
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=100)
    tags: list[str] = []


class Fail(BaseModel):
    permanent: bool = False
    message: str = "boom"


class Spin(BaseModel):
    seconds: float = 30
    checkpoints: bool = True
    pid_file: str | None = None


class Items(BaseModel):
    items: list[int]
    bad: list[int] = []


@jobtypes.job_type("t.echo")
async def echo(ctx: Context, data: Echo) -> dict[str, Any]:
    return {"value": data.value, "attempt": ctx.attempt}


@jobtypes.job_type("t.collector")
async def collector(ctx: Context, data: Echo) -> dict[str, int]:
    """How many objects the garbage collector of the process running it leaves out of its walks."""
    return {"frozen": gc.get_freeze_count()}


@jobtypes.job_type("t.unstorable")
async def unstorable(ctx: Context, data: Echo) -> dict[str, object]:
    return {"connection": object()}


@jobtypes.job_type("t.report", queue="reports")
async def report(ctx: Context, data: Report) -> dict[str, Any]:
    return {"name": data.name}


@jobtypes.job_type("t.fail")
async def fail(ctx: Context, data: Fail) -> None:
    if data.permanent:
        raise PermanentError(data.message, code="BAD_INPUT")
    raise ConnectionError(data.message)


@jobtypes.job_type("t.fail_fast_retry", retry=RetryPolicy(max_retries=2, base=timedelta(milliseconds=50), jitter=0))
async def fail_fast_retry(ctx: Context, data: Fail) -> None:
    raise ConnectionError(f"{data.message} on attempt {ctx.attempt}")


@jobtypes.job_type("t.flaky", retry=RetryPolicy(max_retries=3, base=timedelta(milliseconds=50), jitter=0))
async def flaky(ctx: Context, data: Echo) -> dict[str, int]:
    if ctx.attempt < 3:
        raise TimeoutError(f"transient failure on attempt {ctx.attempt}")
    return {"succeeded_on": ctx.attempt}


@jobtypes.job_type("t.loop_spin")
async def loop_spin(ctx: Context, data: Spin) -> str:
    deadline = time.monotonic() + data.seconds
    while time.monotonic() < deadline:
        await ctx.sleep(0.02)
    return "finished"


@jobtypes.job_type("t.loop_stubborn")
async def loop_stubborn(ctx: Context, data: Spin) -> str:
    import asyncio

    await asyncio.sleep(data.seconds)  # never checks: only a hard stop ends it early
    return "finished"


@jobtypes.job_type("t.hang_first_attempt")
async def hang_first_attempt(ctx: Context, data: Echo) -> dict[str, int]:
    """Hangs on its first attempt (for a worker to be killed under it); completes after."""
    import asyncio

    if ctx.attempt == 1:
        await asyncio.sleep(3600)
    return {"completed_on": ctx.attempt}


@jobtypes.job_type("t.thread_spin")
def thread_spin(ctx: Context, data: Spin) -> str:
    deadline = time.monotonic() + data.seconds
    while time.monotonic() < deadline:
        if data.checkpoints:
            ctx.checkpoint()
        time.sleep(0.01)
    return "finished"


@jobtypes.job_type("t.process_spin", runs_in="process")
def process_spin(ctx: Context, data: Spin) -> dict[str, Any]:
    import os
    from pathlib import Path

    if data.pid_file:
        Path(data.pid_file).write_text(str(os.getpid()))
    deadline = time.monotonic() + data.seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if data.checkpoints:
            ctx.progress(processed=n)
        time.sleep(0.01)
    return {"pid": os.getpid(), "spins": n}


@jobtypes.job_type("t.process_square", runs_in="process")
def process_square(ctx: Context, data: Items) -> dict[str, Any]:
    import os

    ctx.info("squaring", component="math")
    for n in range(1, len(data.items) + 1):
        ctx.progress(processed=n, total=len(data.items))
    return {"squares": [i * i for i in data.items], "pid": os.getpid()}


@jobtypes.job_type("t.items")
async def items(ctx: Context, data: Items) -> dict[str, int]:
    ok = bad = 0
    ctx.progress(total=len(data.items), step=1, total_steps=2, step_name="scoring")
    for n, item in enumerate(data.items, start=1):
        if item in data.bad:
            bad += 1
            ctx.item_error(item, f"item {item} is bad", code="BAD_ITEM")
        else:
            ok += 1
        ctx.progress(processed=n, successful=ok, failed=bad)
        ctx.debug(f"item {item}", component="scorer")
    ctx.progress(step=2, step_name="summarising")
    ctx.info("done", component="summary")
    ctx.warning("some items failed", component="summary")
    return {"ok": ok, "bad": bad}


class Estimated(JobType):
    kind = "t.estimated"
    queue = "estimates"

    async def execute(self, ctx: Context, data: Items) -> int:
        return sum(data.items)

    def estimate_time(self, data: Items) -> timedelta:
        return timedelta(seconds=len(data.items))

    def cache_key(self, data: Items) -> str:
        return "sum:" + ",".join(map(str, data.items))


jobtypes.add(Estimated)


class Expecting(JobType):
    """Silent for `pause` seconds (no progress report), then reports every item at once."""

    kind = "t.expecting"

    async def execute(self, ctx: Context, data: Spin) -> int:
        deadline = asyncio.get_running_loop().time() + data.seconds
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
            ctx.checkpoint()
        ctx.progress(processed=1, total=4)
        await asyncio.sleep(0.3)
        return 4

    def estimate_time(self, data: Spin) -> timedelta:
        return timedelta(minutes=10)


jobtypes.add(Expecting)


# --- batches and the result cache ---------------------------------------------------------------

# What t.tracked jobs saw, by group: how many ran at once (now, most), every start, and how
# many bodies of each cache key ran. In-process: the tests that read it run their workers here.
TRACKED: dict[str, dict[str, Any]] = {}


def tracked(group: str) -> dict[str, Any]:
    return TRACKED.setdefault(group, {"now": 0, "most": 0, "starts": [], "runs": 0})


class Tracked(BaseModel):
    group: str
    seconds: float = 0.1
    fail: bool = False
    value: int = 0


@jobtypes.job_type("t.tracked")
async def tracked_job(ctx: Context, data: Tracked) -> dict[str, Any]:
    seen = tracked(data.group)
    seen["now"] += 1
    seen["runs"] += 1
    seen["most"] = max(seen["most"], seen["now"])
    seen["starts"].append(str(ctx.job_id))
    try:
        await ctx.sleep(data.seconds)  # ends early (Cancelled) when the job is asked to stop
        ctx.checkpoint()
        if data.fail:
            raise PermanentError(f"{data.group}: failing as asked")
        return {"group": data.group, "value": data.value}
    finally:
        seen["now"] -= 1


class CachedSum(JobType):
    """A job type with a cache key: the same items give the same sum."""

    kind = "t.cached_sum"

    async def execute(self, ctx: Context, data: Tracked) -> dict[str, Any]:
        return await tracked_job(ctx, data)

    def cache_key(self, data: Tracked) -> str:
        return f"{data.group}:{data.value}"


jobtypes.add(CachedSum)


class Patient(BaseModel):
    patient: str
    note: str


@jobtypes.job_type("t.sensitive", sensitive=True)
async def sensitive(ctx: Context, data: Patient) -> dict[str, Any]:
    ctx.info(f"reviewing {data.note}")
    return {"patient": data.patient, "summary": f"{data.note} reviewed"}


class Counting(BaseModel):
    counts: dict[str, Any] = {}
    fail_attempts: int = 0  # attempts that count, then fail (retried, then failed for good)


def _count_then_maybe_fail(ctx: Context, data: Counting) -> dict[str, Any]:
    for name, value in data.counts.items():
        ctx.count(name, value)
    ctx.count("attempts_counted")
    if ctx.attempt <= data.fail_attempts:
        raise RuntimeError(f"attempt {ctx.attempt} fails as asked")
    return {"attempt": ctx.attempt}


COUNTING_RETRY = RetryPolicy(max_retries=1, base=timedelta(milliseconds=20), jitter=0)


@jobtypes.job_type("t.counting", retry=COUNTING_RETRY)
def counting_job(ctx: Context, data: Counting) -> dict[str, Any]:
    return _count_then_maybe_fail(ctx, data)


@jobtypes.job_type("t.counting_process", runs_in="process", retry=COUNTING_RETRY)
def counting_process_job(ctx: Context, data: Counting) -> dict[str, Any]:
    return _count_then_maybe_fail(ctx, data)


@jobtypes.job_type("t.counting_sensitive", sensitive=True, retry=COUNTING_RETRY)
async def counting_sensitive_job(ctx: Context, data: Counting) -> dict[str, Any]:
    return _count_then_maybe_fail(ctx, data)


@jobtypes.job_type("t.sensitive_failing", sensitive=True, retry=COUNTING_RETRY)
async def sensitive_failing(ctx: Context, data: Patient) -> None:
    """Fails as a medication job may, every error quoting the patient: a retryable error first,
    then an item error (free text in its code too) and a permanent error."""
    if ctx.attempt == 1:
        raise RetryableError(f"pharmacy did not answer about {data.note}", code="PHARMACY_TIMEOUT")
    note = data.note
    ctx.item_error(data.patient, f"no schedule for {note}", code=f"missing {note}", details={"who": data.patient})
    raise PermanentError(f"cannot review {data.note}", code="REVIEW_REFUSED")


class Tally(BaseModel):
    key: str = "tally"


@jobtypes.job_type("t.tally")
async def tally(ctx: Context, data: Tally) -> dict[str, Any]:
    """Counts its runs in the owner's pack state (namespace `tests`), racing other tallies."""
    document = await ctx.state("tests").update(data.key, lambda value: {"runs": (value or {}).get("runs", 0) + 1})
    return {"runs": document.value["runs"], "version": document.version}
