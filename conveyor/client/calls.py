"""Every endpoint the clients call, as data: the request to send and how to read its answer.

`Client` and `AsyncClient` only send these `Call`s (and wait between retries), so the two
share one description of the API: paths, query and body shapes, which calls may be retried,
and how each answer becomes a model or an error. Nothing here does I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote
from uuid import UUID

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from conveyor.client.errors import Conflict, ConveyorError, TransportError, WaitTimeout, error_from_response
from conveyor.client.models import (
    ApiKey,
    AuditRecord,
    AuditVerdict,
    Batch,
    CacheStats,
    Caller,
    Health,
    Job,
    LogPage,
    NewApiKey,
    Page,
    Queue,
    QueueState,
    Schedule,
    SignaturePolicy,
    SignatureRecord,
    SignIn,
    Stats,
    User,
    Worker,
)
from conveyor.client.signing import Signature, signature_headers

T = TypeVar("T")
JobId = UUID | str
Seconds = float | timedelta

JOBS = "/api/v1/jobs"
SCHEDULES = "/api/v1/jobs/schedules"
BATCHES = "/api/v1/batches"
CACHE = "/api/v1/cache"
AUDIT = "/api/v1/audit"
API_KEYS = "/api/v1/api-keys"
USERS = "/api/v1/users"
AUTH = "/api/v1/auth"
WAIT_MAX_SECONDS = 300.0  # the server's longest single wait
DEFAULT_TIMEOUT = 10.0
RETRY_BACKOFF = 0.1  # seconds before the first retry, doubled for each one after
RETRY_BACKOFF_MAX = 2.0
# Failures after which the same request may be sent again; others (a bad URL, a protocol
# the client speaks wrongly) would fail the same way.
RETRYABLE = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# The longest a server's Retry-After is honoured for, when it said its database was unavailable.
RETRY_AFTER_MAX = 10.0


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its answer.

    `idempotent` calls are sent again after a connection failure. `headers` are this request's
    own (an e-signature's). `recover` may answer an
    error with the call to make next (given the error, and whether it answered a request
    sent again); None lets the error be raised. `accept` lists error statuses whose body is
    still the answer (health's 503). `text` hands `parse` the body as text, not JSON (exports).
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: tuple[tuple[str, str | int], ...] = ()
    json: Any = None
    idempotent: bool = False
    extra_read_seconds: float = 0.0
    recover: Callable[[ConveyorError, bool], Call[T] | None] | None = None
    accept: frozenset[int] = frozenset()
    text: bool = False
    # An e-signature's headers (its password among them): kept out of the repr.
    headers: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def outcome(self, response: httpx.Response, *, retried: bool) -> T | Call[T]:
        """The result of this call, or the call to make next; raises the answer's error."""
        if not (response.is_success or response.status_code in self.accept):
            error = error_from_response(response)
            follow_up = self.recover(error, retried) if self.recover is not None else None
            if follow_up is None:
                raise error
            return follow_up
        try:
            return self.parse(response.text if self.text else response.json())
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            raise ConveyorError(
                f"unexpected answer to {self.method} {self.path}: {exc}",
                status_code=response.status_code,
                code="UNEXPECTED_RESPONSE",
                request_id=response.headers.get("x-request-id"),
            ) from exc

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """The client's timeout, with the read allowed to last as long as the server may wait."""
        if not self.extra_read_seconds or base.read is None:
            return base
        return httpx.Timeout(
            connect=base.connect, read=base.read + self.extra_read_seconds, write=base.write, pool=base.pool
        )

    def resend_after(self, response: httpx.Response, failures: int, retries: int) -> float | None:
        """Seconds to wait before sending this call again, after its `failures`th answer said
        the server's database was unavailable for now (503 with Retry-After); None when
        `response` is the answer (any other, or this call may not be sent again)."""
        if not (
            response.status_code == 503
            and self.idempotent
            and failures <= retries
            and response.headers.get("x-error-code") == "DATABASE_UNAVAILABLE"
        ):
            return None
        try:
            return min(max(float(response.headers.get("retry-after", "1")), 0.0), RETRY_AFTER_MAX)
        except ValueError:
            return 1.0

    def retry_delay(self, failures: int, retries: int, exc: httpx.TransportError) -> float:
        """Seconds to wait before sending again after `failures` failed attempts; raises
        TransportError when this call may not be (or no longer be) sent again."""
        if not self.idempotent or failures > retries or not isinstance(exc, RETRYABLE):
            tries = f" after {failures} attempts" if failures > 1 else ""
            raise TransportError(f"{self.method} {self.path}{tries}: {type(exc).__name__}: {exc}") from exc
        return float(min(RETRY_BACKOFF * 2 ** (failures - 1), RETRY_BACKOFF_MAX))


def signed(call: Call[T], signature: Signature | None) -> Call[T]:
    """`call` carrying `signature` (a critical operation's e-signature), if one is given."""
    return call if signature is None else replace(call, headers=signature_headers(signature))


# --- the client itself ------------------------------------------------------------------------------


def client_options(
    base_url: str,
    *,
    api_key: str | None,
    token: str | None,
    timeout: float | httpx.Timeout | None,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    """Keyword arguments for the httpx client under a conveyor client."""
    if api_key and token:
        raise ValueError("give api_key or token, not both")
    credential = api_key or token
    sent = {"Accept": "application/json", "User-Agent": f"conveyor-client/{_version()}"}
    if credential:
        sent["Authorization"] = f"Bearer {credential}"
    return {"base_url": base_url, "timeout": httpx.Timeout(timeout), "headers": {**sent, **(headers or {})}}


def _version() -> str:
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- jobs ------------------------------------------------------------------------------------------------


def _data(body: Any) -> Any:
    return body["data"]


def _job(body: Any) -> Job:
    return Job.model_validate(_data(body))


def _path_part(value: Any) -> str:
    return quote(str(value), safe="")


def _job_path(job_id: JobId, suffix: str = "") -> str:
    return f"{JOBS}/{_path_part(job_id)}{suffix}"


def _seconds(value: Seconds | None, name: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0 or math.isnan(seconds):
        raise ValueError(f"{name} must be zero or more seconds")
    return seconds


def _aware(value: datetime | None, name: str) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (datetime.now(UTC), not datetime.now())")
    return value.isoformat()


def _jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    return to_jsonable_python(data)


class SubmitOptions(TypedDict, total=False):
    """How a job is to run, beside its type and data (all optional; None is the default)."""

    priority: str | int | None
    queue: str | None
    labels: Mapping[str, str] | None
    idempotency_key: str | None
    run_at: datetime | None
    delay: Seconds | None
    job_timeout: Seconds | None
    max_retries: int | None
    use_cache: bool | None


def submit(job_type: str, data: Mapping[str, Any] | BaseModel | None, options: SubmitOptions) -> Call[Job]:
    timeout = _seconds(options.get("job_timeout"), "job_timeout")
    labels = options.get("labels")
    idempotency_key = options.get("idempotency_key")
    body = {
        "type": job_type,
        "data": _jsonable(data if data is not None else {}),
        "priority": options.get("priority"),
        "queue": options.get("queue"),
        "labels": dict(labels) if labels is not None else None,
        "idempotencyKey": idempotency_key,
        "runAt": _aware(options.get("run_at"), "run_at"),
        "delaySeconds": _seconds(options.get("delay"), "delay"),
        "timeoutMinutes": timeout / 60 if timeout is not None else None,
        "maxRetries": options.get("max_retries"),
        "useCache": options.get("use_cache") or None,
    }
    # A create is sent again only under an idempotency key: the server then answers a repeat
    # with the job the first request made, never with a second job.
    return Call(
        "POST",
        JOBS,
        _job,
        json={k: v for k, v in body.items() if v is not None},
        idempotent=idempotency_key is not None,
    )


def get_job(job_id: JobId, *, include_data: bool = False) -> Call[Job]:
    params: tuple[tuple[str, str], ...] = (("include", "data"),) if include_data else ()
    return Call("GET", _job_path(job_id), _job, params=params, idempotent=True)


def _csv(value: str | int | UUID | Sequence[str | int] | None) -> str | None:
    """A filter's values as the server reads them: comma-separated."""
    if value is None:
        return None
    if isinstance(value, str | int | UUID):
        return str(value)
    return ",".join(str(v) for v in value)


class JobFilters(TypedDict, total=False):
    """What `list` and `iter_jobs` filter on (all optional, combined with AND)."""

    status: str | Sequence[str]
    type: str | Sequence[str]
    priority: str | int | Sequence[str | int]
    queue: str
    labels: Mapping[str, str]
    created_after: datetime
    created_before: datetime
    batch_id: JobId
    org_id: str
    sort: str  # newest (default), oldest, or a sort key, `-` first for descending: "-priority"


def list_jobs(filters: JobFilters, *, page: int, page_size: int, cursor: str | None = None) -> Call[Page[Job]]:
    """A page by number, or (`cursor`: the previous page's `next_cursor`) the page after it."""
    params: list[tuple[str, str | int]] = [("cursor", cursor) if cursor else ("page", page), ("page_size", page_size)]
    for name in ("status", "type", "priority", "queue", "batch_id", "org_id", "sort"):
        text = _csv(filters.get(name))  # type: ignore[arg-type]
        if text is not None:
            params.append((name, text))
    for name in ("created_after", "created_before"):
        when: datetime | None = filters.get(name)  # type: ignore[assignment]
        if when is not None:
            params.append((name, when.isoformat()))
    params.extend(("label", f"{key}:{value}") for key, value in (filters.get("labels") or {}).items())

    def parse(body: Any) -> Page[Job]:
        data = _data(body)
        return Page[Job](
            items=[Job.model_validate(item) for item in data["jobs"]],
            total=data["total"],
            page=data.get("page", page),
            page_size=data.get("limit", page_size),
            next_cursor=data.get("nextCursor"),
        )

    return Call("GET", JOBS, parse, params=tuple(params), idempotent=True)


class JobPager:
    """Walks a job list for `iter_jobs` by key: each page starts past the last job of the one
    before (`next_cursor`), so a job is yielded once, none is skipped when jobs come or go
    meanwhile, and a page deep in a million jobs costs what the first does."""

    def __init__(self, filters: JobFilters, page_size: int) -> None:
        self._filters = filters
        self._page_size = page_size
        self._cursor: str | None = None
        self._page = 1  # a server that sends no cursor (older than cursors) is paged by number
        self._seen: set[UUID] = set()
        self._done = False

    def next_call(self) -> Call[Page[Job]] | None:
        if self._done:
            return None
        return list_jobs(self._filters, page=self._page, page_size=self._page_size, cursor=self._cursor)

    def take(self, page: Page[Job]) -> list[Job]:
        by_number = self._page > 1 or (self._cursor is None and page.next_cursor is None)
        self._cursor = page.next_cursor
        if by_number and page.items and page.has_next:
            self._page += 1
        else:
            self._done = not page.items or page.next_cursor is None
        fresh = [job for job in page.items if job.id not in self._seen]  # by number, jobs may shift
        self._seen.update(job.id for job in fresh)
        return fresh


def _cancelled_anyway(job_id: JobId) -> Callable[[ConveyorError, bool], Call[Job] | None]:
    def recover(error: ConveyorError, retried: bool) -> Call[Job] | None:
        # The first attempt reached the server but its answer was lost: the job is
        # cancelled, which is what was asked.
        if retried and isinstance(error, Conflict) and error.current_status == "cancelled":
            return get_job(job_id)
        return None

    return recover


def cancel(job_id: JobId, signature: Signature | None = None) -> Call[Job]:
    call = Call("POST", _job_path(job_id, "/cancel"), _job, idempotent=True, recover=_cancelled_anyway(job_id))
    return signed(call, signature)


def delete(job_id: JobId, signature: Signature | None = None) -> Call[Job]:
    # Seed 002's DELETE: cancels as `cancel` does, recorded in the audit trail as job.deleted.
    call = Call("DELETE", _job_path(job_id), _job, idempotent=True, recover=_cancelled_anyway(job_id))
    return signed(call, signature)


def purge(job_id: JobId, signature: Signature | None = None) -> Call[Job]:
    # Removes the job for good: not sent again (a repeat whose first went through answers 404).
    return signed(Call("DELETE", _job_path(job_id), _job, params=(("purge", "true"),)), signature)


def retry(job_id: JobId, signature: Signature | None = None) -> Call[Job]:
    # Makes a new job: never sent twice.
    return signed(Call("POST", _job_path(job_id, "/retry"), _job), signature)


def wait(job_id: JobId, timeout: Seconds | None, *, clock: Callable[[], float] = time.monotonic) -> Call[Job]:
    seconds = _seconds(timeout, "timeout")
    return _wait_until(job_id, None if seconds is None else clock() + seconds, clock)


def _wait_until(job_id: JobId, deadline: float | None, clock: Callable[[], float]) -> Call[Job]:
    """One server-side wait of at most five minutes; a longer wait chains them."""
    remaining = math.inf if deadline is None else max(0.0, deadline - clock())
    chunk = min(remaining, WAIT_MAX_SECONDS)

    def recover(error: ConveyorError, retried: bool) -> Call[Job] | None:
        if isinstance(error, WaitTimeout) and remaining > WAIT_MAX_SECONDS:
            return _wait_until(job_id, deadline, clock)
        return None

    return Call(
        "POST",
        _job_path(job_id, "/wait"),
        _job,
        json={"timeout": math.ceil(chunk * 1000)},
        idempotent=True,
        extra_read_seconds=chunk,
        recover=recover,
    )


def logs(job_id: JobId, *, level: str | None, limit: int, offset: int) -> Call[LogPage]:
    params: list[tuple[str, str | int]] = [("limit", limit), ("offset", offset)]
    if level is not None:
        params.append(("level", level))

    def parse(body: Any) -> LogPage:
        data = _data(body)
        return LogPage(entries=data["logs"], total=data["total"], limit=data["limit"], offset=data["offset"])

    return Call("GET", _job_path(job_id, "/logs"), parse, params=tuple(params), idempotent=True)


def stats() -> Call[Stats]:
    return Call("GET", f"{JOBS}/stats/summary", lambda body: Stats.model_validate(_data(body)), idempotent=True)


# --- queues and health --------------------------------------------------------------------------------


def queues() -> Call[list[Queue]]:
    def parse(body: Any) -> list[Queue]:
        return [Queue.model_validate(q) for q in body["queues"]]

    return Call("GET", f"{JOBS}/queues", parse, idempotent=True)


def set_queue_paused(name: str, paused: bool) -> Call[QueueState]:
    # Setting the flag twice leaves it as once: safe to send again.
    action = "pause" if paused else "resume"
    path = f"{JOBS}/queues/{_path_part(name)}/{action}"
    return Call("POST", path, lambda body: QueueState.model_validate(body["queue"]), idempotent=True)


def workers() -> Call[list[Worker]]:
    def parse(body: Any) -> list[Worker]:
        return [Worker.model_validate(w) for w in _data(body)["workers"]]

    return Call("GET", "/api/v1/workers", parse, idempotent=True)


def health() -> Call[Health]:
    # 503 is how the server says "unhealthy"; its body is still the health report.
    return Call(
        "GET",
        f"{JOBS}/health",
        lambda body: Health.model_validate(body),
        idempotent=True,
        accept=frozenset({503}),
    )


# --- schedules ----------------------------------------------------------------------------------------------


class ScheduleChanges(TypedDict, total=False):
    """The settings of a schedule `update` changes (only those given)."""

    name: str
    job_type: str
    data: Mapping[str, Any]
    cron: str
    interval_seconds: float
    timezone: str
    priority: str | int | None
    queue: str | None
    enabled: bool
    missed_policy: str


def _schedule(body: Any) -> Schedule:
    return Schedule.model_validate(body["schedule"])


def _schedule_path(schedule_id: JobId, suffix: str = "") -> str:
    return f"{SCHEDULES}/{_path_part(schedule_id)}{suffix}"


def list_schedules(*, page: int, page_size: int) -> Call[Page[Schedule]]:
    def parse(body: Any) -> Page[Schedule]:
        pagination = body["pagination"]
        return Page[Schedule](
            items=[Schedule.model_validate(s) for s in body["schedules"]],
            total=pagination["total"],
            page=pagination["page"],
            page_size=pagination["page_size"],
        )

    return Call("GET", SCHEDULES, parse, params=(("page", page), ("page_size", page_size)), idempotent=True)


class ScheduleSettings(TypedDict, total=False):
    """A new schedule's timing (`cron` or `interval`) and options; None takes the server's
    default."""

    cron: str | None
    interval: Seconds | None
    timezone: str | None
    priority: str | int | None
    queue: str | None
    enabled: bool | None
    missed_policy: str | None


def create_schedule(
    name: str, job_type: str, data: Mapping[str, Any] | BaseModel | None, settings: ScheduleSettings
) -> Call[Schedule]:
    given: dict[str, Any] = dict(settings)
    interval = _seconds(given.pop("interval", None), "interval")
    body = {"name": name, "job_type": job_type, "data": _jsonable(data if data is not None else {}), **given}
    body["interval_seconds"] = interval
    return Call("POST", SCHEDULES, _schedule, json={k: v for k, v in body.items() if v is not None})


def get_schedule(schedule_id: JobId) -> Call[Schedule]:
    return Call("GET", _schedule_path(schedule_id), _schedule, idempotent=True)


def update_schedule(schedule_id: JobId, changes: ScheduleChanges, signature: Signature | None = None) -> Call[Schedule]:
    body = {k: _jsonable(v) if k == "data" else v for k, v in changes.items()}
    return signed(Call("PATCH", _schedule_path(schedule_id), _schedule, json=body), signature)


def delete_schedule(schedule_id: JobId, signature: Signature | None = None) -> Call[Schedule]:
    # Not sent again: a repeat whose first attempt went through would answer 404.
    return signed(Call("DELETE", _schedule_path(schedule_id), _schedule), signature)


def run_schedule(schedule_id: JobId) -> Call[str]:
    # Makes a job: never sent twice. The answer names the job (in seed 000's shape): its id.
    return Call("POST", _schedule_path(schedule_id, "/run"), lambda body: str(body["job"]["job_id"]))


def set_schedule_enabled(schedule_id: JobId, enabled: bool, signature: Signature | None = None) -> Call[Schedule]:
    path = _schedule_path(schedule_id, "/resume" if enabled else "/pause")
    return signed(Call("POST", path, _schedule, idempotent=True), signature)


# --- batches ---------------------------------------------------------------------------------------------


class BatchItem(TypedDict, total=False):
    """One job of a batch: `type` (required) and `data`, and optionally `priority`, `queue`,
    `labels`, `job_timeout` and `max_retries` (as `submit` takes them)."""

    type: str
    data: Mapping[str, Any] | BaseModel | None
    priority: str | int | None
    queue: str | None
    labels: Mapping[str, str] | None
    job_timeout: Seconds | None
    max_retries: int | None


def _batch(body: Any) -> Batch:
    return Batch.model_validate(_data(body))


def _batch_path(batch_id: JobId, suffix: str = "") -> str:
    return f"{BATCHES}/{_path_part(batch_id)}{suffix}"


def _batch_job(item: BatchItem) -> dict[str, Any]:
    timeout = _seconds(item.get("job_timeout"), "job_timeout")
    labels = item.get("labels")
    body = {
        "type": item["type"],
        "data": _jsonable(item.get("data") or {}),
        "priority": item.get("priority"),
        "queue": item.get("queue"),
        "labels": dict(labels) if labels is not None else None,
        "timeoutMinutes": timeout / 60 if timeout is not None else None,
        "maxRetries": item.get("max_retries"),
    }
    return {k: v for k, v in body.items() if v is not None}


def create_batch(name: str, jobs: Sequence[BatchItem], *, parallel_limit: int | None, fail_fast: bool) -> Call[Batch]:
    body: dict[str, Any] = {"name": name, "jobs": [_batch_job(j) for j in jobs], "failFast": fail_fast}
    if parallel_limit is not None:
        body["parallelLimit"] = parallel_limit
    return Call("POST", BATCHES, _batch, json=body)  # makes jobs: never sent twice


def list_batches(*, page: int, page_size: int) -> Call[Page[Batch]]:
    def parse(body: Any) -> Page[Batch]:
        data = _data(body)
        return Page[Batch](
            items=[Batch.model_validate(b) for b in data["batches"]],
            total=data["total"],
            page=data["page"],
            page_size=data["limit"],
        )

    return Call("GET", BATCHES, parse, params=(("page", page), ("limit", page_size)), idempotent=True)


def get_batch(batch_id: JobId) -> Call[Batch]:
    return Call("GET", _batch_path(batch_id), _batch, idempotent=True)


def cancel_batch(batch_id: JobId) -> Call[Batch]:
    def recover(error: ConveyorError, retried: bool) -> Call[Batch] | None:
        # The first attempt went through but its answer was lost: the batch is cancelled.
        if retried and isinstance(error, Conflict) and error.current_status == "cancelled":
            return get_batch(batch_id)
        return None

    return Call("POST", _batch_path(batch_id, "/cancel"), _batch, idempotent=True, recover=recover)


# --- the result cache --------------------------------------------------------------------------------------


def cache_stats() -> Call[CacheStats]:
    return Call("GET", f"{CACHE}/stats", CacheStats.model_validate, idempotent=True)


def clear_cache(labels: Mapping[str, str] | None, signature: Signature | None = None) -> Call[int]:
    params: list[tuple[str, str | int]] = [("confirm", "true")]
    params.extend(("label", f"{key}:{value}") for key, value in (labels or {}).items())
    # Clearing twice clears what the first left: nothing. Safe to send again.
    call = Call(
        "DELETE", f"{CACHE}/clear", lambda body: int(body["cleared_results"]), params=tuple(params), idempotent=True
    )
    return signed(call, signature)


# --- the audit trail -------------------------------------------------------------------------------------


class AuditFilters(TypedDict, total=False):
    """What the audit trail's list and export filter on (all optional, combined with AND)."""

    actor: str
    action: str
    object_type: str
    object_id: str
    job_id: str  # a job's own records and those naming it in a list (a bulk enqueue's, say)
    since: datetime
    until: datetime


def _audit_params(filters: AuditFilters) -> list[tuple[str, str | int]]:
    params: list[tuple[str, str | int]] = []
    for name, value in filters.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            params.append((name, _aware(value, name) or ""))
        else:
            params.append((name, str(value)))
    return params


def list_audit(filters: AuditFilters, *, page: int, page_size: int) -> Call[Page[AuditRecord]]:
    def parse(body: Any) -> Page[AuditRecord]:
        data = _data(body)
        return Page[AuditRecord](
            items=[AuditRecord.model_validate(r) for r in data["records"]],
            total=data["total"],
            page=data["page"],
            page_size=data["pageSize"],
        )

    params = [("page", page), ("page_size", page_size), *_audit_params(filters)]
    return Call("GET", AUDIT, parse, params=tuple(params), idempotent=True)


def export_audit(filters: AuditFilters, *, format: str) -> Call[str]:
    if format not in ("csv", "json"):
        raise ValueError("format must be csv or json")
    params = [("format", format), *_audit_params(filters)]
    # Each export is itself recorded (audit.exported): sending it twice records it twice, which
    # is what happened. Safe to send again.
    return Call("GET", f"{AUDIT}/export", str, params=tuple(params), idempotent=True, text=True)


def verify_audit() -> Call[AuditVerdict]:
    return Call("GET", f"{AUDIT}/verify", lambda body: AuditVerdict.model_validate(_data(body)), idempotent=True)


# --- API keys ----------------------------------------------------------------------------------------------


def create_api_key(name: str, role: str, *, org_id: str | None, study_id: str | None) -> Call[NewApiKey]:
    body = {"name": name, "role": role, "orgId": org_id, "studyId": study_id}
    return Call(
        "POST",
        API_KEYS,
        lambda answer: NewApiKey.model_validate(_data(answer)),
        json={k: v for k, v in body.items() if v is not None},
    )  # makes a key: never sent twice


def list_api_keys() -> Call[list[ApiKey]]:
    def parse(body: Any) -> list[ApiKey]:
        return [ApiKey.model_validate(k) for k in _data(body)["keys"]]

    return Call("GET", API_KEYS, parse, idempotent=True)


def revoke_api_key(key_id: str, signature: Signature | None = None) -> Call[ApiKey]:
    # Revoking twice leaves the key revoked (the second answer shows it so): safe to send again.
    path = f"{API_KEYS}/{_path_part(key_id)}"
    return signed(Call("DELETE", path, lambda body: ApiKey.model_validate(_data(body)), idempotent=True), signature)


# --- local users, sign-in, the caller, e-signatures --------------------------------------------------


def _user(body: Any) -> User:
    return User.model_validate(_data(body))


def _user_path(user_id: str, suffix: str = "") -> str:
    return f"{USERS}/{_path_part(user_id)}{suffix}"


def sign_in(user_id: str, password: str) -> Call[SignIn]:
    # Each failed attempt counts toward the user's lock-out: never sent twice.
    body = {"userId": user_id, "password": password}
    return Call("POST", f"{AUTH}/token", lambda answer: SignIn.model_validate(_data(answer)), json=body)


def change_own_password(current: str, new: str) -> Call[User]:
    body = {"currentPassword": current, "newPassword": new}
    return Call("POST", f"{AUTH}/password", _user, json=body)


def me() -> Call[Caller]:
    return Call("GET", "/api/v1/me", lambda body: Caller.model_validate(_data(body)), idempotent=True)


def signature_policy() -> Call[SignaturePolicy]:
    path = f"{AUTH}/signature-policy"
    return Call("GET", path, lambda body: SignaturePolicy.model_validate(_data(body)), idempotent=True)


def job_signatures(job_id: JobId) -> Call[list[SignatureRecord]]:
    def parse(body: Any) -> list[SignatureRecord]:
        return [SignatureRecord.model_validate(s) for s in _data(body)["signatures"]]

    return Call("GET", _job_path(job_id, "/signatures"), parse, idempotent=True)


def list_users() -> Call[list[User]]:
    return Call("GET", USERS, lambda body: [User.model_validate(u) for u in _data(body)["users"]], idempotent=True)


def get_user(user_id: str) -> Call[User]:
    return Call("GET", _user_path(user_id), _user, idempotent=True)


def create_user(user_id: str, *, name: str, role: str, password: str, org_id: str | None) -> Call[User]:
    body = {"userId": user_id, "name": name, "role": role, "password": password, "orgId": org_id}
    # A repeat whose first attempt went through would answer 409 USER_EXISTS: never sent twice.
    return Call("POST", USERS, _user, json={k: v for k, v in body.items() if v is not None})


def update_user(user_id: str, *, name: str | None, role: str | None, disabled: bool | None) -> Call[User]:
    body = {"name": name, "role": role, "disabled": disabled}
    # Setting the same values twice leaves them as once: safe to send again.
    return Call(
        "PATCH", _user_path(user_id), _user, json={k: v for k, v in body.items() if v is not None}, idempotent=True
    )


def reset_password(user_id: str, password: str) -> Call[User]:
    # Not sent again: the password rules refuse a change to the same password.
    return Call("POST", _user_path(user_id, "/password"), _user, json={"password": password})


def unlock_user(user_id: str) -> Call[User]:
    return Call("POST", _user_path(user_id, "/unlock"), _user, idempotent=True)
