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
