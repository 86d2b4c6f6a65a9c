"""conveyor: a durable background-job platform for Python.

Define a job type, enqueue jobs, run workers::

    from pydantic import BaseModel
    from conveyor import Context, Registry

    jobs = Registry()

    class Greeting(BaseModel):
        name: str

    @jobs.job_type("greet", queue="default")
    async def greet(ctx: Context, data: Greeting) -> dict:
        ctx.info(f"greeting {data.name}")
        return {"message": f"hello {data.name}"}
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.context import Context
    from conveyor.engine import Engine, JobRequest
    from conveyor.errors import (
        Cancelled,
        ConveyorError,
        InvalidJobData,
        InvalidJobOptions,
        JobError,
        JobNotCancellable,
        JobNotFound,
        JobNotRetryable,
        PermanentError,
        RetryableError,
        TimedOut,
        UnknownJobType,
    )
    from conveyor.jobtypes import JobType, Registry
    from conveyor.model import Job, JobFilter, LogLevel, Owner, Priority, Progress, Status
    from conveyor.retry import RetryPolicy
    from conveyor.runtime import Conveyor
    from conveyor.settings import Settings
    from conveyor.worker import Worker

__all__ = [
    "Cancelled",
    "Context",
    "Conveyor",
    "ConveyorError",
    "Engine",
    "InvalidJobData",
    "InvalidJobOptions",
    "Job",
    "JobError",
    "JobFilter",
    "JobNotCancellable",
    "JobNotFound",
    "JobNotRetryable",
    "JobRequest",
    "JobType",
    "LogLevel",
    "Owner",
    "PermanentError",
    "Priority",
    "Progress",
    "Registry",
    "RetryPolicy",
    "RetryableError",
    "Settings",
    "Status",
    "TimedOut",
    "UnknownJobType",
    "Worker",
]

# Where each public name lives. They are imported on first use (PEP 562), so that importing a
# subpackage that needs none of them (conveyor.client, which talks HTTP only) loads no engine,
# store or worker; `from conveyor import Conveyor` works as before.
_EXPORTS = {
    "conveyor.context": ("Context",),
    "conveyor.engine": ("Engine", "JobRequest"),
    "conveyor.errors": (
        "Cancelled", "ConveyorError", "InvalidJobData", "InvalidJobOptions", "JobError", "JobNotCancellable",
        "JobNotFound", "JobNotRetryable", "PermanentError", "RetryableError", "TimedOut", "UnknownJobType",
    ),
    "conveyor.jobtypes": ("JobType", "Registry"),
    "conveyor.model": ("Job", "JobFilter", "LogLevel", "Owner", "Priority", "Progress", "Status"),
    "conveyor.retry": ("RetryPolicy",),
    "conveyor.runtime": ("Conveyor",),
    "conveyor.settings": ("Settings",),
    "conveyor.worker": ("Worker",),
}  # fmt: skip
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
