"""The FastAPI application: routers, error rendering, request ids, body limits, metrics.

`create_app(conveyor)` builds an app over a Conveyor; its lifespan starts it (migrations,
notifications), creates the first admin API key on a fresh database, and, with
`run_worker=True` (what `conveyor serve` does), runs a worker and the maintenance loop
in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.access import Permission, Role
from conveyor.api.auth import SECURITY_SCHEMES, Authenticator, JwtIssuer, JwtVerifier
from conveyor.api.dashboard import mount_dashboard
from conveyor.api.errors import ApiError, api_error_of, family_of, field_errors, unavailable_error
from conveyor.api.metrics import ApiMetrics
from conveyor.api.routes import (
    audit,
    batches,
    cache,
    calibration,
    canonical,
    console,
    keys,
    medication,
    monitoring,
    notifications,
    predictions,
    schedules,
    system,
    users,
    webhooks,
    workbench,
)
from conveyor.api.services import Services
from conveyor.apikeys import ApiKeys
from conveyor.audit import Actor, acting_as
from conveyor.errors import ConveyorError
from conveyor.gcpause import freeze_startup
from conveyor.insights import Insights
from conveyor.limits import JobLimits
from conveyor.runtime import Conveyor
from conveyor.settings import Settings
from conveyor.storable import text_problem
from conveyor.store.outage import database_unavailable, log_failure
from conveyor.worker import HOUSEKEEPING_INTERVAL

log = logging.getLogger("conveyor.api")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# What a multipart body may carry beyond its file: boundaries, part headers, small fields.
UPLOAD_OVERHEAD_BYTES = 64 * 1024

DESCRIPTION = """
conveyor's job API. Several endpoint families share one engine, each answering in the shape its
clients expect: the canonical family (`/api/v1/jobs…`, seed 002), the monitoring family
(`/api/v1/jobs/jobs…`, `/queues`, `/schedules`, `/statistics`, seed 000), the predictions
family (`/api/v1/predictions…`, seed 004: default-risk bulk uploads), health and metrics.

Authenticate with `Authorization: Bearer <JWT or API key>` or `X-API-Key: <API key>`;
only `GET /api/v1/jobs/health` and the sign-in `POST /api/v1/auth/token` are open.

Critical operations (by default: cancelling, retrying or deleting a critical-priority job,
deleting any job, clearing the cache, changing, pausing, resuming or deleting a schedule,
revoking an API key; `CONVEYOR_CRITICAL_OPERATIONS`) need an e-signature in the request:
`X-Signature-User`, `X-Signature-Password` and `X-Signature-Meaning` (approved, responsible,
reviewed, authored). Without one: 428 `SIGNATURE_REQUIRED`; a wrong one: 403
`SIGNATURE_INVALID`; in both cases nothing changes.
"""


class RequestContext:
    """Every response carries X-Request-ID (the caller's, when it sent a sane one); bodies
    larger than the limit are refused with 413, query strings the store cannot hold with 400;
    an unexpected error is a 500 in the family's shape; each request is timed for /metrics.

    Outermost of the app's own layers, so that all of this holds for every answer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: ApiMetrics,
        upload_paths: tuple[str, ...] = (),
        max_upload_bytes: int = 0,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        # File uploads stream to disk under their own limit (the route enforces it as the
        # body arrives): they are neither read ahead here nor held to the JSON body limit.
        self.upload_paths = frozenset(upload_paths)
        self.max_upload_body = max_upload_bytes + UPLOAD_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else f"req_{secrets.token_hex(8)}"
        scope.setdefault("state", {})["request_id"] = request_id
        family = family_of(scope["path"])
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        async def answer(error: ApiError) -> None:
            if error.status < 500:  # seed 001's typed endpoints keep evidence of every refusal
                await medication.record_early_refusal(Request(scope), error)
            await error.render(family, request_id)(scope, receive, send_with_id)

        is_upload = scope["path"] in self.upload_paths
        try:
            limit = self.max_upload_body if is_upload else self.max_body_bytes
            if (refusal := self._refusal(scope, headers, limit)) is not None:
                await answer(refusal)
                return
            if (
                not is_upload
                and b"content-length" not in headers
                and scope["method"] not in ("GET", "HEAD", "DELETE", "OPTIONS")
            ):
                # A streamed body (chunked): read it up to the limit before the app sees it,
                # so that an oversized one is a 413 rather than a failure half-way through parsing.
                body = await self._read_limited(receive)
                if body is None:
                    await answer(ApiError(413, "PAYLOAD_TOO_LARGE", f"request body over {self.max_body_bytes} bytes"))
                    return
                receive = _replay(body)
            # Until the caller authenticates (conveyor.api.auth sets who), what the request
            # changes is the system's, from this address; and nothing outlives the request.
            client = scope.get("client")
            with acting_as(Actor(request_id=request_id, client_address=client[0] if client else None)):
                await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if database_unavailable(exc):
                log_failure(log, exc, "%s %s answered 503", scope["method"], scope["path"])
                error = unavailable_error()
            else:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                error = ApiError(500, "INTERNAL_ERROR", "internal server error")
            if status == 0:
                await answer(error)
                status = error.status
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.observe_request(scope["method"], template, status or 500, time.perf_counter() - started)

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes], limit: int) -> ApiError | None:
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return ApiError(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
            if text_problem(name) or text_problem(value):
                return ApiError(400, "INVALID_QUERY", f"query parameter {name!r} cannot be read", field=name)
        return None

    async def _read_limited(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


# Order: static paths first (/api/v1/jobs/schedules before /api/v1/jobs/{job_id}).
ROUTERS = (
    system.router,
    console.router,
    monitoring.router,
    schedules.router,
    medication.router,
    notifications.router,
    keys.router,
    audit.router,
    batches.router,
    webhooks.router,
    webhooks.alerts_router,
    cache.router,
    workbench.router,
    calibration.router,
    users.router,
    canonical.router,
    predictions.router,
)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    method: str
    path: str
    permission: Permission | None  # None: open (health)


def route_table() -> list[RouteInfo]:
    """Every API endpoint with the permission it requires, read from the routers themselves
    (the authorization tests and the README's table are generated from this)."""
    out = []
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            permission = _permission_of(route.dependant)
            for method in sorted(route.methods):
                out.append(RouteInfo(method, route.path, permission))
    return out


def _permission_of(dependant: Any) -> Permission | None:
    for dep in dependant.dependencies:
        found = getattr(dep.call, "permission", None) or _permission_of(dep)
        if found is not None:
            return found
    return None


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "") or f"req_{secrets.token_hex(8)}"


def _validation_error(request: Request, exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "INVALID_JSON", "request body is not valid JSON", field="body")
    fields = field_errors(errors)
    first = fields[0]["field"] if fields else None
    in_body = bool(errors) and errors[0].get("loc", ("",))[0] == "body"
    if request.url.path == "/api/v1/jobs" and request.method == "POST" and in_body:
        if first == "body":
            return ApiError(400, "INVALID_REQUEST", "the body must be a JSON object", field="body", errors=fields)
        if first == "type":
            services: Services = request.app.state.services
            allowed = services.engine.registry.kinds()
            return ApiError(400, "INVALID_JOB_TYPE", "Invalid job type", field="type", allowedTypes=allowed)
        return ApiError(400, "INVALID_JOB_DATA", "Invalid job data", field=first, errors=fields)
    code = "INVALID_REQUEST" if in_body else "INVALID_QUERY"
    return ApiError(400, code, f"invalid {first or 'request'}: {fields[0]['message']}", field=first, errors=fields)


def _install_error_handlers(app: FastAPI) -> None:
    def render(request: Request, error: ApiError) -> Any:
        return error.render(family_of(request.url.path), _request_id(request))

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Any:
        return render(request, exc)

    @app.exception_handler(ConveyorError)
    async def on_conveyor_error(request: Request, exc: ConveyorError) -> Any:
        return render(request, api_error_of(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Any:
        return render(request, _validation_error(request, exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Any:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        message = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        return render(
            request, ApiError(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), message, headers=headers)
        )


async def bootstrap_admin_key(keys: ApiKeys) -> str | None:
    """On a database with no API keys at all, create an admin key; the key, or None."""
    if await keys.any_exist():
        return None
    new = await keys.create(role=Role.ADMIN, name="bootstrap admin", created_by="conveyor serve")
    return new.key


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description, with validation failures documented as the 400 they are here
    (FastAPI's default says 422)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        # Bodies the handlers validate themselves (see canonical.create_job).
        from conveyor.api.routes.canonical import CreateJobRequest

        spec.setdefault("components", {}).setdefault("schemas", {})["CreateJobRequest"] = (
            CreateJobRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        secured = {(r.method.lower(), r.path): r.permission for r in route_table() if r.permission is not None}
        spec.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if (method, path) in secured:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    operation["description"] = (
                        operation.get("description", "") + f"\n\nNeeds the `{secured[method, path].value}` permission."
                    ).strip()
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": "invalid input; the error names the field"})
        app.openapi_schema = spec
    return app.openapi_schema


async def _fold_rollups(conveyor: Conveyor) -> None:
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL.total_seconds())
        try:
            await conveyor.store.compact_rollups()
        except Exception as exc:  # noqa: BLE001 - logged by log_failure
            log_failure(log, exc, "folding the roll-ups failed")


def _api_only_services(conveyor: Conveyor) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(_fold_rollups(conveyor), name="conveyor-rollups")]
    if conveyor.settings.scheduler_enabled:
        tasks.append(asyncio.create_task(conveyor.scheduler().run(), name="conveyor-scheduler"))
    return tasks


def create_app(
    conveyor: Conveyor,
    *,
    run_worker: bool = False,
    bootstrap_keys: bool = True,
    on_admin_key: Callable[[str], None] | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """The API over `conveyor`. `freeze_gc` is for a process that serves this app alone (see
    lifespan)."""
    settings = conveyor.settings
    api_keys = ApiKeys(
        conveyor.store,
        cache_seconds=settings.api_key_cache_seconds,
        audit=conveyor.audit,
        signatures=conveyor.signatures,
    )
    metrics = ApiMetrics()
    services = Services(
        conveyor=conveyor,
        keys=api_keys,
        auth=Authenticator(api_keys, JwtVerifier.from_settings(settings), conveyor.users),
        issuer=JwtIssuer.from_settings(settings),
        metrics=metrics,
        insights=Insights(conveyor.store),
        limits=JobLimits(conveyor.store, settings),
        worker_enabled=run_worker,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await conveyor.start()
        if bootstrap_keys:
            key = await bootstrap_admin_key(api_keys)
            if key is not None and on_admin_key is not None:
                on_admin_key(key)
        worker_task = None
        worker = None
        # API-only nodes fold the roll-ups and run the scheduler themselves; a worker's
        # maintenance does both otherwise.
        background = [] if run_worker else _api_only_services(conveyor)
        if run_worker:
            worker = conveyor.worker(on_finished=metrics.observe_job)
            worker_task = asyncio.create_task(worker.run(), name="conveyor-worker")
        if freeze_gc:
            # The full collections' walks of start-up objects were the API's latency tail
            # (create p99 86 -> 31 ms, one process): see freeze_startup.
            freeze_startup()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if worker is not None and worker_task is not None:
                worker.stop()
                await worker_task
            await conveyor.close()

    docs = settings.public_docs
    app = FastAPI(
        title="conveyor",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.services = services
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    _install_error_handlers(app)
    # Static paths before /api/v1/jobs/{id}: the families with fixed segments come first.
    for router in ROUTERS:
        # Each route added to the app itself: FastAPI's included-router layer costs about
        # 0.3 ms per request in matching alone (measured), more than some handlers.
        for route in router.routes:
            app.router.routes.append(route)
    mount_dashboard(app)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "X-Error-Code"],
        )
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        upload_paths=predictions.UPLOAD_PATHS + workbench.UPLOAD_PATHS,
        max_upload_bytes=settings.max_upload_bytes,
    )
    return app


def app_from_environment() -> FastAPI:
    """The app `conveyor serve` runs in each of its processes: settings from the environment,
    migrations and the first admin key already seen to by the parent."""
    settings = Settings()
    return create_app(
        Conveyor.from_settings(settings), run_worker=settings.serve_worker, bootstrap_keys=False, freeze_gc=True
    )
