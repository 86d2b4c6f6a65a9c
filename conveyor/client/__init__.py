"""A Python client for conveyor's HTTP API, blocking (`Client`) or asyncio (`AsyncClient`).

It speaks the canonical job API (`/api/v1/jobs…`: submit, get, list, cancel, delete, retry,
wait, logs, stats), the queue, schedule and batch endpoints, the result cache, the audit trail
(`client.audit`), API keys (`client.api_keys`), local users and sign-in (`client.users`),
e-signatures and health, and answers with its own
pydantic models. It imports nothing else from conveyor: a program that only submits and
watches jobs needs httpx and pydantic, not the engine.

Example, seed 003's workflow (create, monitor with progress, fetch the result)::

    from conveyor.client import Client, WaitTimeout

    with Client("http://127.0.0.1:8000", api_key="cvk_…") as client:
        job = client.submit("sleep", {"seconds": 3}, labels={"country": "Kenya"})
        while True:
            try:
                job = client.wait(job.id, timeout=1)
                break
            except WaitTimeout as pending:
                print(f"{pending.current_status}: {pending.current_progress:.0f}%")
        print(job.status, job.result)

Critical operations (by the server's CONVEYOR_CRITICAL_OPERATIONS: cancelling a
critical-priority job, clearing the cache, changing a schedule, revoking a key…) take an
e-signature, `signature=Signature(user_id, password, meaning)`; `client.signature_policy()`
says which the server demands. Local users: `client.users`, `client.sign_in(…)`.

Errors are `ConveyorError`s: `InvalidRequest` (with `fields`), `Unauthorized`,
`Forbidden` (and `SignatureInvalid`), `SignatureRequired`, `NotFound`, `Conflict`,
`WaitTimeout`, `ServerError`, `TransportError`.
"""

from conveyor.client.async_client import (
    AsyncApiKeys,
    AsyncAudit,
    AsyncBatches,
    AsyncClient,
    AsyncSchedules,
    AsyncUsers,
)
from conveyor.client.errors import (
    Conflict,
    ConveyorError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServerError,
    SignatureInvalid,
    SignatureRequired,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from conveyor.client.models import (
    ApiKey,
    AuditRecord,
    AuditVerdict,
    Batch,
    BatchMember,
    CacheInfo,
    CacheStats,
    Caller,
    CurrentStep,
    Health,
    Job,
    JobFailure,
    LogEntry,
    LogPage,
    NewApiKey,
    Owner,
    Page,
    Performance,
    ProcessingStats,
    Queue,
    QueueState,
    Schedule,
    SignaturePolicy,
    SignatureRecord,
    SignedInUser,
    SignIn,
    Stats,
    Status,
    User,
    Worker,
)
from conveyor.client.signing import Signature
from conveyor.client.sync_client import ApiKeys, Audit, Batches, Client, Schedules, Users

__all__ = [
    "ApiKey",
    "ApiKeys",
    "AsyncApiKeys",
    "AsyncAudit",
    "AsyncBatches",
    "AsyncClient",
    "AsyncSchedules",
    "AsyncUsers",
    "Audit",
    "AuditRecord",
    "AuditVerdict",
    "Batch",
    "BatchMember",
    "Batches",
    "CacheInfo",
    "CacheStats",
    "Caller",
    "Client",
    "Conflict",
    "ConveyorError",
    "CurrentStep",
    "Forbidden",
    "Health",
    "InvalidRequest",
    "Job",
    "JobFailure",
    "LogEntry",
    "LogPage",
    "NewApiKey",
    "NotFound",
    "Owner",
    "Page",
    "Performance",
    "ProcessingStats",
    "Queue",
    "QueueState",
    "Schedule",
    "Schedules",
    "ServerError",
    "SignIn",
    "Signature",
    "SignatureInvalid",
    "SignaturePolicy",
    "SignatureRecord",
    "SignatureRequired",
    "SignedInUser",
    "Stats",
    "Status",
    "TransportError",
    "Unauthorized",
    "User",
    "Users",
    "WaitTimeout",
    "Worker",
]
