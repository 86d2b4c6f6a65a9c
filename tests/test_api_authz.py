"""Authorization over HTTP, generated from the app's own route table.

For every route (`conveyor.api.app.route_table()`) and every role (`conveyor.access.Role`):
no credentials → 401 (health: open); a role without the route's permission
(`ROLE_PERMISSIONS`) → 403; a role holding it → a successful answer. Then the isolation
half: a job outside the caller's scope does not exist for it (404, never 403, never 200),
lists and counts cover only what the caller may see, and credentials (API keys, revoked
keys, JWTs) are checked as the module docstring of conveyor.api.auth says.

The route-by-role matrix shares one app per database (a module-scoped harness over a
database of its own), so that its couple of hundred cases stay fast; every case creates
the objects it acts on.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
import pytest_asyncio
from conftest import (
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_SECRET,
    ApiHarness,
    api_harness,
    own_database_url,
    running_worker,
)
from medication_samples import SAMPLES

from conveyor.access import ROLE_PERMISSIONS, Principal, Role
from conveyor.api.app import RouteInfo, route_table
from conveyor.api.routes.medication import ROLES_BY_ROUTE
from conveyor.engine.schedules import ScheduleSpec
from conveyor.model import Owner
from conveyor.packs.calibration import unavailable

CALIBRATION_READY = unavailable() is None  # the VA data and the calibration extra are here
# Without the data, creating a calibration answers 503 (documented), so the matrix cannot make
# the jobs its calibration routes act on: those routes leave the matrix (and say so below).
ROUTES = [r for r in route_table() if CALIBRATION_READY or not r.path.startswith("/api/v1/calibrate")]
ROLES = tuple(Role)
JOB_ROUTES = [r for r in ROUTES if "{job_id}" in r.path]
SCHEDULE_ROUTES = [r for r in ROUTES if "{schedule_id}" in r.path]
WEBHOOK_ROUTES = [r for r in ROUTES if "{webhook_id}" in r.path]
# A public address (no lookup, nothing listens for the matrix): subscriptions refuse private ones.
WEBHOOK_URL = "http://93.184.216.34/conveyor-matrix"
BATCH_ROUTES = [r for r in ROUTES if "{batch_id}" in r.path]
OPEN = [r for r in ROUTES if r.permission is None]

MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


def route_id(route: RouteInfo) -> str:
    return f"{route.method} {route.path}"


def holds(role: Role, route: RouteInfo) -> bool:
    if route.path in ROLES_BY_ROUTE:  # seed 001's typed jobs: their own table of roles
        return role in ROLES_BY_ROUTE[route.path]
    return route.permission is None or route.permission in ROLE_PERMISSIONS[role]


# --- response shapes, by family (decided by the path, as the API documents) -------------------

_MONITORING = (
    "/api/v1/jobs/jobs",
    "/api/v1/jobs/queues",
    "/api/v1/jobs/schedules",
    "/api/v1/jobs/statistics",
    *ROLES_BY_ROUTE,  # seed 001's typed job endpoints
    "/api/v1/notifications",
)
_CALIBRATION = ("/api/v1/jobs/health", "/api/v1/jobs/metrics", "/api/v1/cache", "/api/v1/calibrate")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def family(path: str) -> str:
    if _under(path, _MONITORING):
        return "monitoring"
    if _under(path, _CALIBRATION):
        return "calibration"
    if _under(path, ("/api/v1/predictions",)):
        return "predictions"
    return "canonical"


_MONITORING_CODE = {400: "JOB002", 401: "JOB003", 403: "JOB003", 404: "JOB001", 409: "JOB004"}


def error_problems(response: httpx.Response, path: str, status: int, code: str | None = None) -> list[str]:
    """What is wrong with an error answer (empty: it is the expected status, in its family's
    shape, with the canonical `code` when one is given)."""
    problems: list[str] = []
    if response.status_code != status:
        return [f"expected {status}, got {response.status_code}: {response.text[:300]}"]
    if not response.headers.get("x-request-id"):
        problems.append("no X-Request-ID header")
    try:
        body = response.json()
    except ValueError:
        return [*problems, f"body is not JSON: {response.text[:200]!r}"]
    kind = family(path)
    if kind == "canonical":
        if not isinstance(body, dict) or set(body) != {"success", "error", "details", "timestamp"}:
            return [*problems, f"not the canonical error shape: {body}"]
        if body["success"] is not False or not isinstance(body["error"], str) or not body["error"]:
            problems.append(f"canonical error without success=false and a message: {body}")
        if not isinstance(body["details"], dict) or not isinstance(body["details"].get("code"), str):
            problems.append(f"canonical error without details.code: {body}")
        elif code is not None and body["details"]["code"] != code:
            problems.append(f"details.code {body['details']['code']!r}, expected {code!r}")
    elif kind == "monitoring":
        error = body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None
        keys = {"code", "message", "field", "details", "timestamp", "request_id"}
        if not isinstance(error, dict) or set(error) != keys:
            return [*problems, f"not the monitoring error shape: {body}"]
        if error["code"] != _MONITORING_CODE.get(status, error["code"]):
            problems.append(f"error.code {error['code']!r} for HTTP {status}")
        if error["request_id"] != response.headers.get("x-request-id"):
            problems.append("error.request_id differs from the X-Request-ID header")
        if code is not None and isinstance(error["details"], dict) and error["details"].get("reason") != code:
            problems.append(f"error.details.reason {error['details'].get('reason')!r}, expected {code!r}")
    elif kind == "predictions":  # seed 004: {"detail"} alone, no code
        if not isinstance(body, dict) or set(body) != {"detail"} or not isinstance(body["detail"], str):
            problems.append(f"not the predictions error shape: {body}")
    elif not isinstance(body, dict) or set(body) != {"detail", "status_code", "timestamp"}:
        problems.append(f"not the calibration error shape: {body}")
    elif body["status_code"] != status:
        problems.append(f"status_code {body['status_code']} in a {status} answer")
    if status == 401 and "bearer" not in response.headers.get("www-authenticate", "").lower():
        problems.append("401 without WWW-Authenticate: Bearer")
    return problems


def assert_error(response: httpx.Response, path: str, status: int, code: str | None = None) -> None:
    problems = error_problems(response, path, status, code)
    assert not problems, f"{response.request.method} {path}: " + "; ".join(problems)


# --- one app per database for the whole module -----------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[str]:
    """A database of this module's own (PostgreSQL: not the per-test one other tests TRUNCATE)."""
    with own_database_url(request.param, "conveyor_authz", tmp_path_factory.mktemp("authz"), sqlite_template) as url:
        yield url


class Shared:
    """The module's app, a client into it that returns 500s instead of raising them, and
    API keys by (role, org), created once."""

    def __init__(self, harness: ApiHarness) -> None:
        self.harness = harness
        self.client: httpx.AsyncClient = harness.client
        self._keys: dict[tuple[str, str | None], dict[str, str]] = {}

    async def key(self, role: Role | str, org: str | None = "org-a") -> dict[str, str]:
        """A key kept for the module: never revoke it."""
        name = Role(role).value
        if (name, org) not in self._keys:
            self._keys[(name, org)] = await self.harness.key(name, org=org)
        return self._keys[(name, org)]

    async def fresh_key(self, role: Role | str, org: str | None = "org-a") -> dict[str, str]:
        return await self.harness.key(Role(role).value, org=org)


# A local user of org-a whose id and password sign in (the open route POST /api/v1/auth/token).
MATRIX_USER, MATRIX_PASSWORD = "matrix-user", "the matrix's long pass phrase"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(module_database_url: str) -> AsyncIterator[Shared]:
    # Pings make delivery jobs; the workers some cases start never claim them (no outbound calls).
    async with api_harness(module_database_url, raise_app_exceptions=False, webhook_queue="unclaimed") as harness:
        await harness.conveyor.users.create(
            MATRIX_USER, name="Matrix User", role="viewer", password=MATRIX_PASSWORD, org_id="org-a"
        )
        yield Shared(harness)


async def local_user_token(shared: Shared, role: Role) -> dict[str, str]:
    """A fresh local user of org-a with `role` and MATRIX_PASSWORD, signed in."""
    user_id = f"matrix-{role.value}-{secrets.token_hex(4)}"
    await shared.harness.conveyor.users.create(
        user_id, name=f"Matrix {role.value}", role=role, password=MATRIX_PASSWORD, org_id="org-a"
    )
    answer = await shared.client.post("/api/v1/auth/token", json={"userId": user_id, "password": MATRIX_PASSWORD})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['data']['accessToken']}"}


# --- helpers -----------------------------------------------------------------------------------


def key_id_of(headers: dict[str, str]) -> str:
    key = headers.get("X-API-Key") or headers["Authorization"].removeprefix("Bearer ")
    return key.split("_", 2)[1]


# A calibration (seed 003) that no worker runs here: only its record matters.
CALIBRATION = {"va_data": {"insilicova": "use_example"}, "age_group": "neonate", "country": "Kenya"}


def body_for(route: RouteInfo, caller_id: str | None = None) -> dict[str, Any] | None:
    if (route.method, route.path) == ("POST", "/api/v1/calibrate/async"):
        return {**CALIBRATION, "use_cache": False}
    if (route.method, route.path) == ("POST", "/api/v1/calibrate/batch"):
        return {"jobs": [CALIBRATION], "parallel_limit": 1}
    if (route.method, route.path) == ("POST", "/api/v1/jobs"):
        return {"type": "t.echo", "data": {"value": 1}}
    if (route.method, route.path) == ("POST", "/api/v1/api-keys"):
        return {"name": "matrix key", "role": "viewer"}
    if (route.method, route.path) == ("POST", "/api/v1/jobs/schedules"):
        return {"name": "matrix", "job_type": "t.echo", "data": {"value": 1}, "cron": "0 0 1 1 *"}
    if (route.method, route.path) == ("POST", "/api/v1/batches"):
        return {"name": "matrix", "jobs": [{"type": "t.echo", "data": {"value": 1}}], "parallelLimit": 1}
    if route.method == "PATCH" and route.path.endswith("{schedule_id}"):
        return {"name": "renamed by the matrix"}
    if (route.method, route.path) == ("POST", "/api/v1/webhooks"):
        return {"url": WEBHOOK_URL, "events": ["job.failed"]}
    if route.method == "PATCH" and route.path.endswith("{webhook_id}"):
        return {"description": "changed by the matrix"}
    if route.path in ROLES_BY_ROUTE:
        sample = SAMPLES[route.path.rsplit("/", 1)[1]]
        # a user may start these jobs for themselves only: the matrix's callers ask for themselves
        return {**sample.body, sample.patient_field: caller_id} if sample.patient_field and caller_id else sample.body
    if route.path.endswith("/wait"):
        return {"timeout": 0}  # never block the matrix
    if (route.method, route.path) == ("POST", "/api/v1/auth/token"):
        return {"userId": MATRIX_USER, "password": MATRIX_PASSWORD}
    if (route.method, route.path) == ("POST", "/api/v1/auth/password"):
        return {"currentPassword": MATRIX_PASSWORD, "newPassword": f"a new pass phrase {secrets.token_hex(4)}"}
    if (route.method, route.path) == ("POST", "/api/v1/users"):
        name = f"made-{secrets.token_hex(4)}"
        return {"userId": name, "name": "Made By The Matrix", "role": "viewer", "password": MATRIX_PASSWORD}
    if (route.method, route.path) == ("PATCH", "/api/v1/users/{user_id}"):
        return {"name": "renamed by the matrix"}
    if (route.method, route.path) == ("POST", "/api/v1/users/{user_id}/password"):
        return {"password": "reset by the matrix, long"}
    return None


# A bulk upload (seed 004) with one good row.
UPLOAD_CSV = (
    b"company_symbol,sector,market_cap,total_assets,total_liabilities,current_assets,current_liabilities,"
    b"retained_earnings,ebit,revenue,net_income\nACME,Manufacturing,900,1000,400,500,200,300,150,1200,100\n"
)


def is_upload(path: str) -> bool:
    return path.endswith("/bulk-upload-async") or path == "/api/v1/files"


async def call(
    client: httpx.AsyncClient,
    route: RouteInfo,
    path: str,
    headers: dict[str, str] | None,
    caller_id: str | None = None,
) -> httpx.Response:
    body = body_for(route, caller_id)
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if body is not None:
        kwargs["json"] = body
    if is_upload(route.path):
        kwargs["files"] = {"file": ("matrix.csv", UPLOAD_CSV, "text/csv")}
    if route.path == "/api/v1/cache/clear":
        kwargs["params"] = {"confirm": "true"}
    if route.path == "/api/v1/events":  # the feed, closed once open: never block the matrix
        kwargs["params"] = {"close_after": "0"}
    return await client.request(route.method, path, **kwargs)


async def create_upload(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """A bulk upload job (the predictions family shows no other kind of job)."""
    response = await client.post(
        "/api/v1/predictions/annual/bulk-upload-async", files={"file": ("a.csv", UPLOAD_CSV)}, headers=headers
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


async def create_job_for(shared: Shared, route: RouteInfo, headers: dict[str, str]) -> str:
    if family(route.path) == "predictions":
        return await create_upload(shared.client, headers)
    if route.path.endswith("/download"):
        return await create_export(shared, headers)
    if route.path.startswith("/api/v1/calibrate"):
        body = {**CALIBRATION, "use_cache": False}
        response = await shared.client.post("/api/v1/calibrate/async", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])
    job_id = await create_job(shared.client, headers)
    if route.path.endswith("/events"):  # a finished job's stream ends at once: never block the matrix
        await shared.harness.conveyor.engine.cancel(uuid.UUID(job_id))
    return job_id


EXPORT_QUEUE = "matrix-exports"


async def create_export(shared: Shared, headers: dict[str, str]) -> str:
    """A completed data_export of `headers`' organisation (its file is what is downloaded)."""
    client = shared.client
    uploaded = await client.post("/api/v1/files", files={"file": ("m.csv", b"a,b\n1,2\n")}, headers=headers)
    assert uploaded.status_code == 201, uploaded.text
    dataset = str(uuid.uuid4())
    jobs = [
        ("file_processing", {"filePath": uploaded.json()["data"]["filePath"], "datasetId": dataset}),
        ("data_export", {"datasetId": dataset, "format": "csv"}),
    ]
    for kind, data in jobs:
        # A queue of their own: the worker runs these two, not what other matrix rows left
        # pending in the shared database (a backup job, say, whose pg_dump outlasts a drain).
        body = {"type": kind, "data": data, "queue": EXPORT_QUEUE}
        created = await client.post("/api/v1/jobs", json=body, headers=headers)
        assert created.status_code == 201, created.text
        job_id = created.json()["data"]["jobId"]
        async with running_worker(shared.harness.conveyor, queues=[EXPORT_QUEUE]):
            job = await shared.harness.conveyor.engine.wait(uuid.UUID(job_id), timeout=30)
        assert job.status.value == "completed", job.error
    return str(job_id)


def plain_id(seed_id: str) -> str:
    """Seed 003's `job_<hex>` / `batch_<hex>` as the canonical family's UUID."""
    return str(uuid.UUID(seed_id.split("_", 1)[1])) if seed_id.startswith(("job_", "batch_")) else seed_id


async def create_job(client: httpx.AsyncClient, headers: dict[str, str], value: Any = 1) -> str:
    response = await client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": value}}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


async def create_batch_for(client: httpx.AsyncClient, route: RouteInfo, headers: dict[str, str]) -> str:
    if route.path.startswith("/api/v1/calibrate"):
        body = {"jobs": [CALIBRATION, CALIBRATION], "parallel_limit": 1}
        response = await client.post("/api/v1/calibrate/batch", json=body, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["batch_id"])
    return await create_batch(client, headers)


async def create_batch(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {"name": "matrix", "jobs": [{"type": "t.echo", "data": {"value": n}} for n in range(2)], "parallelLimit": 1}
    response = await client.post("/api/v1/batches", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def batch_state(client: httpx.AsyncClient, admin: dict[str, str], batch_id: str) -> Any:
    data = (await client.get(f"/api/v1/batches/{plain_id(batch_id)}", headers=admin)).json()["data"]
    return data["status"], data["counts"], data["cancelledAt"]


async def job_status(client: httpx.AsyncClient, admin: dict[str, str], job_id: str) -> tuple[str, bool]:
    response = await client.get(f"/api/v1/jobs/{plain_id(job_id)}", headers=admin)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data["status"], data["cancelRequested"]


async def principal_of(shared: Shared, headers: dict[str, str]) -> Principal:
    auth = shared.harness.fastapi.state.services.auth
    bearer = headers.get("Authorization", "").removeprefix("Bearer ") or None
    return await auth.principal(bearer, headers.get("X-API-Key"))


async def create_schedule(shared: Shared, owner: Owner) -> str:
    """A schedule of `owner`'s (made in the core: users may read schedules but not create them),
    that will not fire while the tests run."""
    spec = ScheduleSpec("matrix", "t.echo", {"value": 1}, cron="0 0 1 1 *")
    return (await shared.harness.conveyor.schedules.create(spec, owner=owner)).id


async def schedule_state(shared: Shared, schedule_id: str) -> Any:
    schedule = await shared.harness.conveyor.store.get_schedule(schedule_id)
    return None if schedule is None else (schedule.name, schedule.enabled, schedule.updated_at)


async def fill(shared: Shared, route: RouteInfo, owner: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The route's path with real objects: a job created by `owner` in org-a (cancelled first
    where the route needs a finished job: retry, wait), a schedule of `owner`'s, the queue
    `default`, a fresh org-a API key. Also what was filled, by parameter name."""
    filled: dict[str, str] = {}
    for name in re.findall(r"{(\w+)}", route.path):
        if name == "job_id":
            job_id = await create_job_for(shared, route, owner)
            if route.path.endswith(("/retry", "/wait")):
                admin = await shared.key(Role.ADMIN)
                cancelled = await shared.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin)
                assert cancelled.status_code == 200, cancelled.text
            filled[name] = job_id
        elif name == "schedule_id":
            filled[name] = await create_schedule(shared, (await principal_of(shared, owner)).owner)
        elif name == "batch_id":
            filled[name] = await create_batch_for(shared.client, route, owner)
        elif name == "name":
            filled[name] = "default"
        elif name == "key_id":
            filled[name] = key_id_of(await shared.fresh_key(Role.VIEWER, "org-a"))
        elif name == "user_id":
            filled[name] = f"victim-{secrets.token_hex(4)}"
            await shared.harness.conveyor.users.create(
                filled[name], name="Matrix Victim", role="viewer", password=MATRIX_PASSWORD, org_id="org-a"
            )
        elif name == "webhook_id":
            filled[name] = await create_webhook(shared, "org-a")
        elif name == "notification_id":
            filled[name] = await create_notification(shared, await principal_of(shared, owner))
        else:
            raise AssertionError(f"{route_id(route)}: the matrix does not know how to fill {{{name}}}")
    return route.path.format(**filled), filled


async def create_webhook(shared: Shared, org: str) -> str:
    """A subscription of `org`'s (made in the core: the matrix's roles may not all create one)."""
    webhook, _secret = await shared.harness.conveyor.webhooks.create(org_id=org, url=WEBHOOK_URL, events=["job.failed"])
    return str(webhook.id)


async def create_notification(shared: Shared, recipient: Principal) -> str:
    """A notification to `recipient` in its organisation (made in the core, as a job would)."""
    note, _ = await shared.harness.conveyor.notifications.notify(
        owner=recipient.owner, user_id=recipient.user_id, kind="matrix", body={"n": 1},
        delivery_key=f"matrix-{secrets.token_hex(6)}",
    )  # fmt: skip
    return str(note.id)


async def webhook_state(shared: Shared, webhook_id: str) -> Any:
    webhook = await shared.harness.conveyor.webhooks.get(uuid.UUID(webhook_id))
    return None if webhook is None else (webhook.description, webhook.updated_at)


async def queue_state(shared: Shared, name: str) -> Any:
    state = (await shared.harness.conveyor.store.queue_states()).get(name)
    return None if state is None else (state.paused, state.changed_at)


def test_calibration_routes_are_in_the_matrix_where_their_data_is() -> None:
    if not CALIBRATION_READY:
        pytest.skip("VA calibration data (CONVEYOR_VACALIBRATION_DATA) or the calibration extra missing")
    assert any(r.path.startswith("/api/v1/calibrate") for r in ROUTES)


def test_route_table_lists_every_route_with_a_permission_but_health() -> None:
    assert {route_id(r) for r in OPEN} == {"GET /api/v1/jobs/health", "POST /api/v1/auth/token"}
    assert len({route_id(r) for r in ROUTES}) == len(ROUTES)
    assert JOB_ROUTES, "no route takes a job id"


# --- the matrix ----------------------------------------------------------------------------------


@MODULE_LOOP
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_without_valid_credentials_is_401(shared: Shared, route: RouteInfo) -> None:
    admin = await shared.key(Role.ADMIN)
    path, _ = await fill(shared, route, admin)
    attempts: dict[str, dict[str, str] | None] = {
        "no credentials": None,
        "bearer garbage": {"Authorization": "Bearer not-a-token"},
        "unknown API key": {"Authorization": f"Bearer cvk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"},
        "malformed API key": {"X-API-Key": "cvk_"},
        "basic auth": {"Authorization": "Basic YWRtaW46YWRtaW4="},
    }
    failures = []
    for label, headers in attempts.items():
        response = await call(shared.client, route, path, headers)
        if route.permission is None:
            if response.status_code != 200:
                failures.append(f"{label}: open route answered {response.status_code}: {response.text[:200]}")
        else:
            failures += [f"{label}: {p}" for p in error_problems(response, path, 401, "UNAUTHORIZED")]
    assert not failures, f"{route_id(route)}\n" + "\n".join(failures)


MATRIX = [pytest.param(route, role, id=f"{route_id(route)} {role.value}") for route in ROUTES for role in ROLES]


@MODULE_LOOP
@pytest.mark.parametrize(("route", "role"), MATRIX)
async def test_role_matrix(shared: Shared, route: RouteInfo, role: Role) -> None:
    """A role holding the route's permission is served (2xx, with real objects in the path);
    one lacking it gets 403 in its family's shape, and nothing changes."""
    caller = await shared.fresh_key(role, "org-a")
    if route.path == "/api/v1/auth/password":  # one's own password: a signed-in user, not a key
        caller = await local_user_token(shared, role)
    admin = await shared.key(Role.ADMIN)
    # a user sees only its own jobs: let it act on one it created
    owner = caller if role is Role.USER else admin
    path, filled = await fill(shared, route, owner)
    before = await job_status(shared.client, admin, filled["job_id"]) if "job_id" in filled else None
    queue_before = await queue_state(shared, filled["name"]) if "name" in filled else None
    schedule_before = await schedule_state(shared, filled["schedule_id"]) if "schedule_id" in filled else None
    batch_before = await batch_state(shared.client, admin, filled["batch_id"]) if "batch_id" in filled else None
    user_before = await shared.harness.conveyor.users.get(filled["user_id"]) if "user_id" in filled else None
    webhook_before = await webhook_state(shared, filled["webhook_id"]) if "webhook_id" in filled else None

    response = await call(shared.client, route, path, caller, (await principal_of(shared, caller)).user_id)

    if holds(role, route):
        assert 200 <= response.status_code < 300, (
            f"{route_id(route)} as {role.value} (holds {route.permission}): "
            f"{response.status_code} {response.text[:300]}"
        )
        return
    assert_error(response, path, 403, "FORBIDDEN")
    if before is not None:
        assert await job_status(shared.client, admin, filled["job_id"]) == before, "a refused call changed the job"
    if "key_id" in filled:
        keys = (await shared.client.get("/api/v1/api-keys", headers=admin)).json()["data"]["keys"]
        assert [k["active"] for k in keys if k["id"] == filled["key_id"]] == [True], "a refused call revoked a key"
    if "name" in filled:
        assert await queue_state(shared, filled["name"]) == queue_before, "a refused call paused or resumed the queue"
    if "schedule_id" in filled:
        assert await schedule_state(shared, filled["schedule_id"]) == schedule_before, "a refused call changed it"
    if "batch_id" in filled:
        assert await batch_state(shared.client, admin, filled["batch_id"]) == batch_before, "a refused call changed it"
    if "user_id" in filled:
        assert await shared.harness.conveyor.users.get(filled["user_id"]) == user_before, "a refused call changed it"
    if "webhook_id" in filled:
        assert await webhook_state(shared, filled["webhook_id"]) == webhook_before, "a refused call changed it"


# --- isolation: a job outside the caller's scope does not exist --------------------------------


def jwt_headers(sub: str, roles: tuple[str, ...], org: str | None) -> dict[str, str]:
    return ApiHarness.jwt(sub=sub, roles=roles, org=org)


Caller = tuple[str, dict[str, str], Role]


def alice() -> dict[str, str]:
    """A user of org-a, whose jobs and schedules the isolation tests hide from others."""
    return jwt_headers("alice", ("user",), "org-a")


async def outsiders(shared: Shared) -> list[Caller]:
    """Callers who must not see what alice (a user of org-a) owns."""
    return [
        *[(f"org-b {role.value} key", await shared.key(role, "org-b"), role) for role in ROLES[:-1]],
        ("org-a user bob (JWT)", jwt_headers("bob", ("user",), "org-a"), Role.USER),
        ("org-a user API key", await shared.key(Role.USER, "org-a"), Role.USER),
        ("org-b user with alice's sub (JWT)", jwt_headers("alice", ("user",), "org-b"), Role.USER),
        ("org-b admin JWT", jwt_headers("carol", ("admin",), "org-b"), Role.ADMIN),
    ]


async def insiders(shared: Shared) -> list[Caller]:
    """Callers who see what alice owns."""
    return [
        ("alice herself", alice(), Role.USER),
        *[
            (f"org-a {role.value} key", await shared.key(role, "org-a"), role)
            for role in ROLES[:-1]
            if role is not Role.USER
        ],
        ("org-a viewer JWT", jwt_headers("dave", ("viewer",), "org-a"), Role.VIEWER),
        ("org-b super_admin key", await shared.key(Role.SUPER_ADMIN, "org-b"), Role.SUPER_ADMIN),
        ("super_admin JWT without org", jwt_headers("root", ("super_admin",), None), Role.SUPER_ADMIN),
    ]


async def outsider_failures(shared: Shared, route: RouteInfo, path: str, unknown_path: str, code: str) -> list[str]:
    """Outsiders holding the route's permission get 404 `code`; the others 403, as for an
    object that does not exist."""
    failures = []
    for label, headers, role in await outsiders(shared):
        response = await call(shared.client, route, path, headers)
        if holds(role, route):
            failures += [f"{label}: {p}" for p in error_problems(response, path, 404, code)]
        else:  # refused for the permission alone: the same answer as for an object that does not exist
            unknown = await call(shared.client, route, unknown_path, headers)
            if (response.status_code, unknown.status_code) != (403, 403):
                failures.append(f"{label}: {response.status_code} for the object, {unknown.status_code} for none")
    return failures


async def insider_failures(shared: Shared, route: RouteInfo, path_for: Callable[[], Awaitable[str]]) -> list[str]:
    """Insiders holding the route's permission are served; the others get 403."""
    failures = []
    for label, headers, role in await insiders(shared):
        path = await path_for()
        response = await call(shared.client, route, path, headers)
        if not holds(role, route):
            failures += [f"{label}: {p}" for p in error_problems(response, path, 403, "FORBIDDEN")]
        elif response.status_code in (401, 403, 404) or response.status_code >= 500:
            failures.append(f"{label} should see it: {response.status_code} {response.text[:200]}")
    return failures


@MODULE_LOOP
@pytest.mark.parametrize("route", JOB_ROUTES, ids=route_id)
async def test_jobs_outside_the_callers_scope_are_not_found(shared: Shared, route: RouteInfo) -> None:
    admin = await shared.key(Role.ADMIN)
    job_id = await create_job_for(shared, route, alice())
    before = await job_status(shared.client, admin, job_id)  # completed for a download, else pending
    path = route.path.format(job_id=job_id)
    failures = await outsider_failures(
        shared, route, path, route.path.format(job_id=str(uuid.uuid4())), "JOB_NOT_FOUND"
    )
    if await job_status(shared.client, admin, job_id) != before:
        failures.append("callers who cannot see the job changed it")

    async def same_job() -> str:
        return path

    async def fresh_job() -> str:  # a deleted job is gone for the next insider
        return route.path.format(job_id=await create_job_for(shared, route, alice()))

    failures += await insider_failures(shared, route, fresh_job if route.method == "DELETE" else same_job)
    assert not failures, f"{route_id(route)}\n" + "\n".join(failures)


@MODULE_LOOP
@pytest.mark.parametrize("route", SCHEDULE_ROUTES, ids=route_id)
async def test_schedules_outside_the_callers_scope_are_not_found(shared: Shared, route: RouteInfo) -> None:
    owner = (await principal_of(shared, alice())).owner

    async def fresh_schedule() -> str:  # one each: an insider's DELETE must not hide it from the next
        return route.path.format(schedule_id=await create_schedule(shared, owner))

    path = await fresh_schedule()
    schedule_id = path.split("/")[5]
    before = await schedule_state(shared, schedule_id)
    unknown_path = route.path.format(schedule_id=str(uuid.uuid4()))
    failures = await outsider_failures(shared, route, path, unknown_path, "SCHEDULE_NOT_FOUND")
    if await schedule_state(shared, schedule_id) != before:
        failures.append("callers who cannot see the schedule changed it")
    failures += await insider_failures(shared, route, fresh_schedule)
    assert not failures, f"{route_id(route)}\n" + "\n".join(failures)


@MODULE_LOOP
@pytest.mark.parametrize("route", BATCH_ROUTES, ids=route_id)
async def test_batches_outside_the_callers_scope_are_not_found(shared: Shared, route: RouteInfo) -> None:
    admin = await shared.key(Role.ADMIN)

    async def fresh_batch() -> str:  # one each: an insider's cancel must not change what the next sees
        return route.path.format(batch_id=await create_batch_for(shared.client, route, alice()))

    path = await fresh_batch()
    batch_id = path.split("/")[route.path.split("/").index("{batch_id}")]
    before = await batch_state(shared.client, admin, batch_id)
    unknown_path = route.path.format(batch_id=str(uuid.uuid4()))
    failures = await outsider_failures(shared, route, path, unknown_path, "BATCH_NOT_FOUND")
    if await batch_state(shared.client, admin, batch_id) != before:
        failures.append("callers who cannot see the batch changed it")
    failures += await insider_failures(shared, route, fresh_batch)
    assert not failures, f"{route_id(route)}\n" + "\n".join(failures)


@MODULE_LOOP
@pytest.mark.parametrize("route", WEBHOOK_ROUTES, ids=route_id)
async def test_webhooks_of_another_organisation_are_not_found(shared: Shared, route: RouteInfo) -> None:
    async def fresh_webhook() -> str:  # one each: an insider's DELETE must not hide it from the next
        return route.path.format(webhook_id=await create_webhook(shared, "org-a"))

    path = await fresh_webhook()
    webhook_id = path.split("/")[4]
    before = await webhook_state(shared, webhook_id)
    unknown_path = route.path.format(webhook_id=str(uuid.uuid4()))
    failures = await outsider_failures(shared, route, path, unknown_path, "WEBHOOK_NOT_FOUND")
    if await webhook_state(shared, webhook_id) != before:
        failures.append("callers who cannot see the subscription changed it")
    failures += await insider_failures(shared, route, fresh_webhook)
    assert not failures, f"{route_id(route)}\n" + "\n".join(failures)


@MODULE_LOOP
async def test_webhook_and_alert_lists_cover_only_the_callers_organisation(shared: Shared) -> None:
    await create_webhook(shared, "org-a")
    store = shared.harness.conveyor.store
    await store.raise_alert(org_id="org-a", kind="t.echo", metric="error_rate", threshold=0.01, value=0.5, samples=40)
    for org, sees in (("org-a", True), ("org-b", False)):
        headers = await shared.key(Role.ADMIN, org)
        hooks = (await shared.client.get("/api/v1/webhooks", headers=headers)).json()["data"]["webhooks"]
        assert {h["orgId"] for h in hooks} <= {org} and bool(hooks) is sees
        alerts = (await shared.client.get("/api/v1/alerts", headers=headers)).json()["data"]["alerts"]
        assert {a["orgId"] for a in alerts} <= {org} and bool(alerts) is sees
    root = await shared.key(Role.SUPER_ADMIN, None)
    everyone = (await shared.client.get("/api/v1/alerts?status=all", headers=root)).json()["data"]["alerts"]
    assert "org-a" in {a["orgId"] for a in everyone}


async def test_lists_and_counts_cover_only_visible_jobs(api: ApiHarness) -> None:
    client = api.client
    alice = jwt_headers("alice", ("user",), "org-a")
    bob = jwt_headers("bob", ("user",), "org-a")
    org_b_admin = await api.key("admin", org="org-b")
    mine = {await create_job(client, alice, i) for i in range(2)}
    bobs = {await create_job(client, bob)}
    org_b = {await create_job(client, org_b_admin, i) for i in range(3)}
    org_a = mine | bobs

    callers: dict[str, tuple[dict[str, str], set[str]]] = {
        "alice (user JWT, org-a)": (alice, mine),
        "bob (user JWT, org-a)": (bob, bobs),
        "org-a user API key (created nothing)": (await api.key("user", org="org-a"), set()),
        "alice's sub in org-b (user JWT)": (jwt_headers("alice", ("user",), "org-b"), set()),
        "org-a viewer key": (await api.key("viewer", org="org-a"), org_a),
        "org-a operator key": (await api.key("operator", org="org-a"), org_a),
        "org-a admin key": (await api.key("admin", org="org-a"), org_a),
        "org-a viewer JWT": (jwt_headers("dave", ("viewer",), "org-a"), org_a),
        "org-b viewer key": (await api.key("viewer", org="org-b"), org_b),
        "org-b admin key": (org_b_admin, org_b),
        "super_admin key (org-c)": (await api.key("super_admin", org="org-c"), org_a | org_b),
    }
    failures: list[str] = []
    for label, (headers, visible) in callers.items():
        n = len(visible)
        seen: dict[str, Any] = {}

        canonical = (await client.get("/api/v1/jobs", params={"limit": 100}, headers=headers)).json()
        seen["GET /api/v1/jobs data.total"] = canonical["data"]["total"]
        seen["GET /api/v1/jobs total_count"] = canonical["total_count"]
        canonical_ids = {j["id"] for j in canonical["data"]["jobs"]}

        monitoring = (await client.get("/api/v1/jobs/jobs", params={"page_size": 100}, headers=headers)).json()
        seen["GET /api/v1/jobs/jobs pagination.total"] = monitoring["pagination"]["total"]
        monitoring_ids = {j["job_id"] for j in monitoring["jobs"]}

        summary = (await client.get("/api/v1/jobs/stats/summary", headers=headers)).json()["data"]
        seen["GET /api/v1/jobs/stats/summary data.total"] = summary["total"]
        seen["GET /api/v1/jobs/stats/summary data.pending"] = summary["pending"]

        statistics = (await client.get("/api/v1/jobs/statistics", headers=headers)).json()
        seen["GET /api/v1/jobs/statistics total"] = statistics["total"]
        seen["GET /api/v1/jobs/statistics by_status.pending"] = statistics["by_status"]["pending"]

        queues = (await client.get("/api/v1/jobs/queues", headers=headers)).json()["queues"]
        seen["GET /api/v1/jobs/queues sum(pending)"] = sum(q["pending"] for q in queues)

        for what, value in seen.items():
            if value != n:
                failures.append(f"{label}: {what} = {value}, expected {n}")
        if canonical_ids != visible:
            failures.append(f"{label}: GET /api/v1/jobs listed {len(canonical_ids)} jobs, not its {n}")
        if monitoring_ids != visible:
            failures.append(f"{label}: GET /api/v1/jobs/jobs listed {len(monitoring_ids)} jobs, not its {n}")
    assert not failures, "\n".join(failures)


# --- credentials -----------------------------------------------------------------------------------


@MODULE_LOOP
async def test_x_api_key_header_authenticates_with_the_keys_role(shared: Shared) -> None:
    viewer = (await shared.key(Role.VIEWER))["Authorization"].removeprefix("Bearer ")
    operator = (await shared.key(Role.OPERATOR))["Authorization"].removeprefix("Bearer ")
    for path in ("/api/v1/jobs", "/api/v1/jobs/jobs", "/api/v1/jobs/statistics"):
        response = await shared.client.get(path, headers={"X-API-Key": viewer})
        assert response.status_code == 200, f"{path}: {response.text}"
    job = {"type": "t.echo", "data": {"value": 1}}
    refused = await shared.client.post("/api/v1/jobs", json=job, headers={"X-API-Key": viewer})
    assert_error(refused, "/api/v1/jobs", 403, "FORBIDDEN")
    allowed = await shared.client.post("/api/v1/jobs/queues/default/resume", headers={"X-API-Key": operator})
    assert allowed.status_code == 200, allowed.text

    unknown = f"cvk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
    assert_error(await shared.client.get("/api/v1/jobs", headers={"X-API-Key": unknown}), "/api/v1/jobs", 401)
    wrong_secret = f"cvk_{viewer.split('_', 2)[1]}_{secrets.token_urlsafe(32)}"  # a real key id, another secret
    response = await shared.client.get("/api/v1/jobs/jobs", headers={"X-API-Key": wrong_secret})
    assert_error(response, "/api/v1/jobs/jobs", 401)
    a_jwt = ApiHarness.jwt(roles=("admin",))["Authorization"].removeprefix("Bearer ")
    assert_error(await shared.client.get("/api/v1/jobs", headers={"X-API-Key": a_jwt}), "/api/v1/jobs", 401)


@MODULE_LOOP
async def test_a_revoked_key_is_refused_at_once(shared: Shared) -> None:
    admin = await shared.key(Role.ADMIN)
    created = await shared.client.post(
        "/api/v1/api-keys", json={"name": "to revoke", "role": "operator"}, headers=admin
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    key, key_id = data["key"], data["id"]
    as_bearer, as_header = {"Authorization": f"Bearer {key}"}, {"X-API-Key": key}
    for headers in (as_bearer, as_header):  # used (and so cached) before the revocation
        assert (await shared.client.get("/api/v1/jobs", headers=headers)).status_code == 200
        assert (await shared.client.get("/api/v1/jobs/queues", headers=headers)).status_code == 200

    revoked = await shared.client.delete(f"/api/v1/api-keys/{key_id}", headers=admin)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["data"]["active"] is False and revoked.json()["data"]["revokedAt"]

    for headers in (as_bearer, as_header):
        for path in ("/api/v1/jobs", "/api/v1/jobs/queues", "/api/v1/jobs/metrics"):
            assert_error(await shared.client.get(path, headers=headers), path, 401, "UNAUTHORIZED")
    listed = (await shared.client.get("/api/v1/api-keys", headers=admin)).json()["data"]["keys"]
    assert [k["active"] for k in listed if k["id"] == key_id] == [False]

    # a key handed out outside the API, used, then revoked through it
    other = await shared.fresh_key(Role.VIEWER)
    assert (await shared.client.get("/api/v1/jobs", headers=other)).status_code == 200
    assert (await shared.client.delete(f"/api/v1/api-keys/{key_id_of(other)}", headers=admin)).status_code == 200
    assert_error(await shared.client.get("/api/v1/jobs", headers=other), "/api/v1/jobs", 401, "UNAUTHORIZED")


@MODULE_LOOP
async def test_keys_of_another_organisation_cannot_be_managed(shared: Shared) -> None:
    admin_a, admin_b = await shared.key(Role.ADMIN, "org-a"), await shared.key(Role.ADMIN, "org-b")
    victim = await shared.fresh_key(Role.VIEWER, "org-a")
    victim_id = key_id_of(victim)

    response = await shared.client.delete(f"/api/v1/api-keys/{victim_id}", headers=admin_b)
    assert_error(response, f"/api/v1/api-keys/{victim_id}", 404, "API_KEY_NOT_FOUND")
    assert (await shared.client.get("/api/v1/jobs", headers=victim)).status_code == 200, "org-b revoked org-a's key"

    listed_b = {k["id"] for k in (await shared.client.get("/api/v1/api-keys", headers=admin_b)).json()["data"]["keys"]}
    listed_a = {k["id"] for k in (await shared.client.get("/api/v1/api-keys", headers=admin_a)).json()["data"]["keys"]}
    assert victim_id in listed_a and victim_id not in listed_b
    assert key_id_of(admin_b) in listed_b and key_id_of(admin_b) not in listed_a

    for body in (
        {"name": "escalate", "role": "super_admin"},
        {"name": "elsewhere", "role": "viewer", "orgId": "org-b"},
    ):
        response = await shared.client.post("/api/v1/api-keys", json=body, headers=admin_a)
        assert_error(response, "/api/v1/api-keys", 403, "FORBIDDEN")

    root = await shared.key(Role.SUPER_ADMIN, None)
    every = {k["id"] for k in (await shared.client.get("/api/v1/api-keys", headers=root)).json()["data"]["keys"]}
    assert {victim_id, key_id_of(admin_b)} <= every


def _token(*, secret: str = JWT_SECRET, algorithm: str = "HS256", drop: tuple[str, ...] = (), **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "jwt-admin",
        "org_id": "org-a",
        "roles": ["admin"],
        "exp": now + 600,
        "aud": JWT_AUDIENCE,
        "iss": JWT_ISSUER,
        **claims,
    }
    for name in drop:
        payload.pop(name)
    return pyjwt.encode(payload, secret, algorithm=algorithm)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _tampered() -> str:
    header, _, signature = _token().split(".")
    payload = {"sub": "jwt-admin", "org_id": "org-a", "roles": ["super_admin"], "exp": int(time.time()) + 600}
    return f"{header}.{_b64({**payload, 'aud': JWT_AUDIENCE, 'iss': JWT_ISSUER})}.{signature}"


def _rs256_header() -> str:
    header = {"alg": "RS256", "typ": "JWT"}
    payload = {"sub": "x", "roles": ["admin"], "exp": int(time.time()) + 600, "aud": JWT_AUDIENCE, "iss": JWT_ISSUER}
    return f"{_b64(header)}.{_b64(payload)}.{_b64({'sig': 1})}"


BAD_TOKENS = {
    "wrong audience": lambda: _token(aud="someone-else"),
    "no audience": lambda: _token(drop=("aud",)),
    "wrong issuer": lambda: _token(iss="https://issuer.evil.example"),
    "no issuer": lambda: _token(drop=("iss",)),
    "expired": lambda: _token(exp=int(time.time()) - 60),
    "no expiry": lambda: _token(drop=("exp",)),
    "no subject": lambda: _token(drop=("sub",)),
    "not yet valid": lambda: _token(nbf=int(time.time()) + 600),
    "bad signature": lambda: _token(secret="another-secret-that-is-also-long-enough-0123456789"),
    "tampered payload": _tampered,
    "alg none": lambda: _token(secret="", algorithm="none"),
    "RS256 without a public key configured": _rs256_header,
    "not a JWT": lambda: "abc.def.ghi",
    # identity claims are stored with the caller's jobs: they must fit and be storable text
    "a name longer than its column": lambda: _token(name="n" * 201),
    "an organisation with a NUL": lambda: _token(org_id="org\x00x"),
    "a subject that is a list": lambda: _token(sub=["a", "b"]),
    "an empty subject": lambda: _token(sub=""),
}


@MODULE_LOOP
@pytest.mark.parametrize("variant", list(BAD_TOKENS))
async def test_a_bad_jwt_is_401(shared: Shared, variant: str) -> None:
    headers = {"Authorization": f"Bearer {BAD_TOKENS[variant]()}"}
    for path in ("/api/v1/jobs", "/api/v1/jobs/jobs", "/api/v1/jobs/metrics", "/api/v1/api-keys"):
        assert_error(await shared.client.get(path, headers=headers), path, 401, "UNAUTHORIZED")
    assert (await shared.client.get("/api/v1/jobs/health", headers=headers)).status_code == 200


NO_KNOWN_ROLE = {
    "empty roles": {"roles": []},
    "unknown role": {"roles": ["guest"]},
    "wrong case": {"roles": ["Admin"]},
    "unknown role as a string": {"roles": "root"},
    "roles of the wrong type": {"roles": [{"name": "admin"}]},
    "no roles claim": {"roles": None},
}


@MODULE_LOOP
@pytest.mark.parametrize("variant", list(NO_KNOWN_ROLE))
async def test_a_jwt_with_no_known_role_is_403(shared: Shared, variant: str) -> None:
    claims = dict(NO_KNOWN_ROLE[variant])
    token = _token(drop=("roles",)) if claims["roles"] is None else _token(**claims)
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/jobs", "/api/v1/jobs/jobs", "/api/v1/jobs/metrics", "/api/v1/api-keys"):
        assert_error(await shared.client.get(path, headers=headers), path, 403, "FORBIDDEN")
    response = await shared.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {}}, headers=headers)
    assert_error(response, "/api/v1/jobs", 403, "FORBIDDEN")
    # the same token with a known role (a single string is accepted) is served
    good = {"Authorization": f"Bearer {_token(roles='viewer')}"}
    assert (await shared.client.get("/api/v1/jobs", headers=good)).status_code == 200
