"""Bad input never breaks the API.

Malformed or mistyped bodies, unknown fields, out-of-range query parameters, ids that are no
UUIDs, oversized bodies, NUL bytes and odd unicode: every answer is a 4xx (never a 5xx), in
the shape of the family the path belongs to, naming the field at fault where there is one.
Where some input may be accepted as well as refused (a NUL inside a JSON string is valid
JSON), either is fine, but the same request must not break the server on any database.
Every answer carries an X-Request-ID, the caller's own when it sent a sane one.

The client here returns a server error as a response (raise_app_exceptions=False), so that a
500 shows as a failed status assertion with the body the API sent. One app per database
serves the whole module (a database of the module's own); each case acts as the admin of an
organisation of its own, so that what one case stores (even a row the API cannot read back)
is invisible to every other.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import (
    API_MAX_BODY_BYTES,
    ApiHarness,
    api_harness,
    own_database_url,
)

from conveyor.api.app import RouteInfo, route_table

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BODY = API_MAX_BODY_BYTES
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
JSON = {"content-type": "application/json"}
MISSING: Any = object()

# --- families and their error shapes ---------------------------------------------------------

_MONITORING = ("/api/v1/jobs/jobs", "/api/v1/jobs/queues", "/api/v1/jobs/statistics")
_CALIBRATION = ("/api/v1/jobs/health", "/api/v1/jobs/metrics", "/api/v1/calibrate")


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def family(path: str) -> str:
    path = path.split("?")[0]
    if _under(path, _MONITORING):
        return "monitoring"
    if _under(path, _CALIBRATION):
        return "calibration"
    if _under(path, ("/api/v1/predictions",)):
        return "predictions"
    return "canonical"


_MONITORING_CODE = {400: "JOB002", 401: "JOB003", 403: "JOB003", 404: "JOB001", 409: "JOB004", 413: "JOB002"}


def check_error(response: httpx.Response, path: str, *, code: str | None = None) -> set[str]:
    """Asserts a 4xx answer is in its family's shape (and carries `code`, the canonical
    vocabulary, when given); the field names it gives."""
    status = response.status_code
    where = f"{response.request.method} {path} -> {status}: {response.text[:400]}"
    assert 400 <= status < 500, where
    body = response.json()
    kind = family(path)
    if kind == "canonical":
        assert isinstance(body, dict) and set(body) == {"success", "error", "details", "timestamp"}, where
        assert body["success"] is False and isinstance(body["error"], str) and body["error"], where
        assert isinstance(body["timestamp"], str) and body["timestamp"].endswith("Z"), where
        details = body["details"]
        assert isinstance(details, dict) and isinstance(details.get("code"), str) and details["code"], where
        if code is not None:
            assert details["code"] == code, where
        if "field" in details:
            assert isinstance(details["field"], str) and details["field"], f"details.field names nothing: {where}"
        named = {details.get("field")} | {e.get("field") for e in details.get("errors", []) if isinstance(e, dict)}
        return {n for n in named if isinstance(n, str)}
    if kind == "monitoring":
        assert isinstance(body, dict) and set(body) == {"error"}, where
        error = body["error"]
        keys = {"code", "message", "field", "details", "timestamp", "request_id"}
        assert isinstance(error, dict) and set(error) == keys, where
        assert re.fullmatch(r"JOB00[1-5]", error["code"]), where
        assert error["code"] == _MONITORING_CODE.get(status, error["code"]), where
        assert isinstance(error["message"], str) and error["message"], where
        assert error["request_id"] == response.headers.get("x-request-id"), where
        if code is not None:
            assert isinstance(error["details"], dict) and error["details"].get("reason") == code, where
        return {error["field"]} if isinstance(error["field"], str) else set()
    if kind == "predictions":  # seed 004: {"detail"} alone
        assert isinstance(body, dict) and set(body) == {"detail"} and isinstance(body["detail"], str), where
        return set()
    assert isinstance(body, dict) and set(body) == {"detail", "status_code", "timestamp"}, where
    assert body["status_code"] == status and isinstance(body["detail"], str) and body["detail"], where
    return set()


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[str]:
    """A database of this module's own (PostgreSQL: not the per-test one other tests TRUNCATE)."""
    with own_database_url(request.param, "conveyor_input", tmp_path_factory.mktemp("input"), sqlite_template) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def harness(module_database_url: str) -> AsyncIterator[ApiHarness]:
    """The app as conftest's `api` builds it; its client returns a 500 instead of raising it."""
    async with api_harness(module_database_url, raise_app_exceptions=False) as harness:
        yield harness


@pytest.fixture
def client(harness: ApiHarness) -> httpx.AsyncClient:
    return harness.client


@pytest_asyncio.fixture(loop_scope="module")
async def admin(harness: ApiHarness) -> dict[str, str]:
    """An admin of an organisation of this test's own."""
    return await harness.key("admin", org=f"org-{secrets.token_hex(6)}")


async def new_job(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {"type": "t.echo", "data": {"value": 1}, "labels": {"team": "qa", "country": "FR"}}
    response = await client.post("/api/v1/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


# --- the cases -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # "{job}": a real job of the caller's
    json: Any = MISSING
    content: bytes | Callable[[], Any] | None = None  # a callable: made anew for each request
    params: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    status: tuple[int, ...] = (400,)  # the answers that are right; 4xx ones are checked in full
    field: tuple[str, ...] | None = None  # the error must name one of these
    code: str | None = None  # canonical code (monitoring: error.details.reason)

    def param(self) -> Any:
        return pytest.param(self, id=f"{self.method} {self.path} {self.id}")


def jobs(id: str, json: Any = MISSING, **kw: Any) -> Case:
    return Case(id, "POST", "/api/v1/jobs", json=json, **kw)


def job_with(**options: Any) -> dict[str, Any]:
    return {"type": "t.echo", "data": {"value": 1}, **options}


def huge_json() -> bytes:
    return b'{"type": "t.echo", "data": {"value": "' + b"x" * (MAX_BODY + 1024) + b'"}}'


def chunked_huge() -> Any:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "t.echo", "data": {"value": "'
        for _ in range(9):
            yield b"x" * 8192
        yield b'"}}'

    return chunks()


def fields(*names: str) -> tuple[str, ...]:
    return names


CREATE_CASES = [
    # malformed or not an object
    jobs("malformed JSON", content=b'{"type": "t.echo",', headers=JSON, field=fields("body"), code="INVALID_JSON"),
    jobs("trailing garbage", content=b'{"type": "t.echo", "data": {}} x', headers=JSON, code="INVALID_JSON"),
    jobs("body is an array", [{"type": "t.echo", "data": {}}]),
    jobs("body is a string", "t.echo"),
    jobs("body is a number", 42),
    jobs("body is null", content=b"null", headers=JSON),
    jobs("empty body", content=b"", headers=JSON),
    jobs(
        "not a JSON content type",
        content=b'{"type": "t.echo", "data": {}}',
        headers={"content-type": "text/plain"},
        status=(400, 415),
    ),
    # unknown fields
    jobs("unknown top-level field", job_with(bogus=1), field=fields("bogus")),
    jobs("snake_case option name", job_with(max_retries=3), field=fields("max_retries")),
    jobs("unknown field beside a bad one", {"type": "t.echo", "data": [], "colour": "red"}, field=fields("colour")),
    # type
    jobs("no type", {"data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("type is a number", {"type": 5, "data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("type is null", {"type": None, "data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("unknown type", {"type": "no.such.type", "data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("type with accents", {"type": "t.\u00e9cho", "data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("type with a NUL", {"type": "t.echo\x00", "data": {}}, field=fields("type"), code="INVALID_JOB_TYPE"),
    jobs("type too long", {"type": "t" * 201, "data": {}}, field=fields("type")),
    # data
    jobs("no data", {"type": "t.echo"}, field=fields("data"), code="INVALID_JOB_DATA"),
    jobs("data is an array", {"type": "t.echo", "data": [1]}, field=fields("data"), code="INVALID_JOB_DATA"),
    jobs("data is a string", {"type": "t.echo", "data": "x"}, field=fields("data"), code="INVALID_JOB_DATA"),
    jobs("data is null", {"type": "t.echo", "data": None}, field=fields("data"), code="INVALID_JOB_DATA"),
    jobs(
        "data fails the type's model",
        {"type": "t.report", "data": {"name": "", "count": "x"}},
        field=fields("name", "data.name"),
        code="INVALID_JOB_DATA",
    ),
    jobs(
        "data of the wrong type",
        {"type": "sleep", "data": {"seconds": "abc"}},
        field=fields("seconds", "data.seconds"),
        code="INVALID_JOB_DATA",
    ),
    jobs(
        "data out of range",
        {"type": "sleep", "data": {"seconds": 1e308}},
        field=fields("seconds", "data.seconds"),
        code="INVALID_JOB_DATA",
    ),
    # options
    jobs("priority unknown", job_with(priority="urgent"), field=fields("priority")),
    jobs("priority out of range", job_with(priority=11), field=fields("priority")),
    jobs("priority of the wrong type", job_with(priority=[1]), field=fields("priority")),
    jobs("queue with a space", job_with(queue="my queue"), field=fields("queue")),
    jobs("queue with a NUL", job_with(queue="q\x00"), field=fields("queue")),
    jobs("queue too long", job_with(queue="q" * 101), field=fields("queue")),
    jobs("runAt not a date", job_with(runAt="notadate"), field=fields("runAt")),
    jobs("runAt without a time zone", job_with(runAt="2030-01-01T00:00:00"), field=fields("runAt")),
    jobs("runAt past year 9999 in UTC", job_with(runAt="9999-12-31T23:59:59-14:00"), field=fields("runAt")),
    jobs("delaySeconds negative", job_with(delaySeconds=-1), field=fields("delaySeconds")),
    jobs("delaySeconds of the wrong type", job_with(delaySeconds="soon"), field=fields("delaySeconds")),
    jobs("timeoutMinutes zero", job_with(timeoutMinutes=0), field=fields("timeoutMinutes")),
    jobs("timeoutMinutes huge", job_with(timeoutMinutes=1e300), field=fields("timeoutMinutes")),
    jobs("maxRetries fractional", job_with(maxRetries=1.5), field=fields("maxRetries")),
    jobs("maxRetries negative", job_with(maxRetries=-1), field=fields("maxRetries")),
    jobs("idempotencyKey empty", job_with(idempotencyKey=""), field=fields("idempotencyKey")),
    jobs("labels not an object", job_with(labels=["a"]), field=fields("labels")),
    jobs("label value not a string", job_with(labels={"a": 1}), field=fields("labels", "labels.a")),
    jobs("too many labels", job_with(labels={f"k{i}": "v" for i in range(51)}), field=fields("labels")),
    jobs(
        "Idempotency-Key header too long",
        job_with(),
        headers={"Idempotency-Key": "k" * 501},
        field=fields("Idempotency-Key", "idempotency-key", "idempotency_key"),
    ),
    # size
    jobs("body over max_body_bytes", content=huge_json(), headers=JSON, status=(413,), code="PAYLOAD_TOO_LARGE"),
    jobs(
        "chunked body over max_body_bytes", content=chunked_huge, headers=JSON, status=(413,), code="PAYLOAD_TOO_LARGE"
    ),
    # unicode and NUL inside strings: JSON allows them; accepted or refused, never a 5xx
    jobs(
        "data with emoji, RTL and accents",
        {"type": "t.echo", "data": {"value": "\U0001f600 \u202eabc \u00e9\u4e2d"}},
        status=(201,),
    ),
    jobs(
        "data string with a NUL",
        {"type": "t.echo", "data": {"value": "a\x00b"}},
        status=(201, 400),
        field=fields("data", "data.value", "value"),
    ),
    jobs(
        "data key with a NUL",
        {"type": "t.echo", "data": {"value": {"k\x00": 1}}},
        status=(201, 400),
        field=fields("data", "data.value", "value"),
    ),
    jobs(
        "data string with a lone surrogate",
        content=b'{"type": "t.echo", "data": {"value": "\\ud800"}}',
        headers=JSON,
        status=(201, 400),
        field=fields("data", "data.value", "value", "body"),
    ),
    jobs(
        "label value with a NUL",
        job_with(labels={"k": "a\x00b"}),
        status=(201, 400),
        field=fields("labels", "labels.k"),
    ),
    jobs("label key with a NUL", job_with(labels={"k\x00": "v"}), status=(201, 400), field=fields("labels")),
    jobs(
        "idempotencyKey with a NUL",
        job_with(idempotencyKey="key\x00"),
        status=(201, 400),
        field=fields("idempotencyKey"),
    ),
    jobs(
        "Idempotency-Key header not ASCII",
        job_with(),
        headers={"Idempotency-Key": "cl\u00e9".encode()},
        status=(201, 400),
    ),
]


def wait(id: str, json: Any = MISSING, **kw: Any) -> Case:
    return Case(id, "POST", "/api/v1/jobs/{job}/wait", json=json, **kw)


WAIT_CASES = [
    wait("malformed JSON", content=b'{"timeout": ', headers=JSON, field=fields("body"), code="INVALID_JSON"),
    wait("body is an array", [1]),
    wait("body is a string", "soon"),
    wait("timeout of the wrong type", {"timeout": "x"}, field=fields("timeout")),
    wait("timeout fractional", {"timeout": 1.5}, field=fields("timeout")),
    wait("timeout negative", {"timeout": -1}, field=fields("timeout")),
    wait("timeout over the maximum", {"timeout": 300_001}, field=fields("timeout")),
    wait("timeout huge", {"timeout": 10**30}, field=fields("timeout")),
    wait("unknown field", {"timeout": 0, "poll": True}, field=fields("poll")),
    wait("body over max_body_bytes", content=huge_json(), headers=JSON, status=(413,), code="PAYLOAD_TOO_LARGE"),
    Case(
        "id no UUID", "POST", "/api/v1/jobs/not-a-uuid/wait", json={"timeout": 0}, status=(404,), code="JOB_NOT_FOUND"
    ),
]


def keys(id: str, json: Any = MISSING, **kw: Any) -> Case:
    return Case(id, "POST", "/api/v1/api-keys", json=json, **kw)


KEY_CASES = [
    keys("malformed JSON", content=b'{"name": "x", ', headers=JSON, field=fields("body"), code="INVALID_JSON"),
    keys("body is an array", [{"name": "x", "role": "viewer"}]),
    keys("body is a string", "viewer"),
    keys("no name", {"role": "viewer"}, field=fields("name")),
    keys("name empty", {"name": "", "role": "viewer"}, field=fields("name")),
    keys("name a number", {"name": 5, "role": "viewer"}, field=fields("name")),
    keys("name too long", {"name": "n" * 201, "role": "viewer"}, field=fields("name")),
    keys("no role", {"name": "x"}, field=fields("role")),
    keys("role unknown", {"name": "x", "role": "god"}, field=fields("role")),
    keys("role a number", {"name": "x", "role": 3}, field=fields("role")),
    keys("unknown field", {"name": "x", "role": "viewer", "expires": "never"}, field=fields("expires")),
    keys("orgId too long", {"name": "x", "role": "viewer", "orgId": "o" * 201}, field=fields("orgId")),
    keys("body over max_body_bytes", content=huge_json(), headers=JSON, status=(413,), code="PAYLOAD_TOO_LARGE"),
    keys("name with emoji", {"name": "nightly \U0001f319", "role": "viewer"}, status=(201,)),
    keys("name with a NUL", {"name": "x\x00y", "role": "viewer"}, status=(201, 400), field=fields("name")),
    keys(
        "studyId with a NUL",
        {"name": "x", "role": "viewer", "studyId": "s\x00"},
        status=(201, 400),
        field=fields("studyId"),
    ),
    Case("unknown id", "DELETE", "/api/v1/api-keys/0123456789abcdef", status=(404,), code="API_KEY_NOT_FOUND"),
    Case("id with a NUL", "DELETE", "/api/v1/api-keys/ab%00cd", status=(400, 404)),
    Case("id very long", "DELETE", "/api/v1/api-keys/" + "k" * 5000, status=(400, 404)),
]


def listing(path: str, id: str, params: dict[str, Any], **kw: Any) -> Case:
    return Case(id, "GET", path, params=params, **kw)


def query_cases(path: str, size: str) -> list[Case]:
    """Bad query parameters every list takes (`size`: its page-size parameter)."""
    return [
        listing(path, f"{size}=0", {size: 0}, field=fields(size), code="INVALID_QUERY"),
        listing(path, f"{size}=101", {size: 101}, field=fields(size), code="INVALID_QUERY"),
        listing(path, f"{size}=abc", {size: "abc"}, field=fields(size), code="INVALID_QUERY"),
        listing(path, "page=0", {"page": 0}, field=fields("page"), code="INVALID_QUERY"),
        listing(path, "page=-1", {"page": -1}, field=fields("page"), code="INVALID_QUERY"),
        listing(path, "page=abc", {"page": "abc"}, field=fields("page"), code="INVALID_QUERY"),
        listing(path, "page=10**20", {"page": 10**20}, field=fields("page"), code="INVALID_QUERY"),
        listing(path, "status=bogus", {"status": "bogus"}, field=fields("status"), code="INVALID_QUERY"),
        listing(path, "status=,", {"status": ","}, field=fields("status"), code="INVALID_QUERY"),
        listing(path, "priority=bogus", {"priority": "bogus"}, field=fields("priority"), code="INVALID_QUERY"),
        listing(path, "priority=0", {"priority": "0"}, field=fields("priority"), code="INVALID_QUERY"),
        listing(path, "priority=11", {"priority": "11"}, field=fields("priority"), code="INVALID_QUERY"),
        listing(
            path,
            "created_after=notadate",
            {"created_after": "notadate"},
            field=fields("created_after"),
            code="INVALID_QUERY",
        ),
        listing(
            path,
            "created_before=notadate",
            {"created_before": "notadate"},
            field=fields("created_before"),
            code="INVALID_QUERY",
        ),
        # dates that exist, but not once moved to UTC: everything, nothing, or a 400
        listing(
            path,
            "created_after before year 1 in UTC",
            {"created_after": "0001-01-01T00:00:00+14:00"},
            status=(200, 400),
            field=fields("created_after"),
        ),
        listing(
            path,
            "created_before after year 9999 in UTC",
            {"created_before": "9999-12-31T23:59:59-14:00"},
            status=(200, 400),
            field=fields("created_before"),
        ),
        listing(path, "queue with a NUL", {"queue": "q\x00"}, status=(200, 400), field=fields("queue")),
        listing(path, "queue with emoji", {"queue": "\U0001f600"}, status=(200, 400), field=fields("queue")),
    ]


LIST_CASES = [
    *query_cases("/api/v1/jobs", "limit"),
    listing("/api/v1/jobs", "page_size=0", {"page_size": 0}, field=fields("page_size"), code="INVALID_QUERY"),
    listing("/api/v1/jobs", "page_size=101", {"page_size": 101}, field=fields("page_size"), code="INVALID_QUERY"),
    listing("/api/v1/jobs", "label without a colon", {"label": "nocolon"}, field=fields("label"), code="INVALID_QUERY"),
    listing("/api/v1/jobs", "label key with a NUL", {"label": "a\x00:b"}, status=(200, 400), field=fields("label")),
    listing(
        "/api/v1/jobs",
        "label key with JSON path syntax",
        {"label": 'a"].b[0:c'},
        status=(200, 400),
        field=fields("label"),
    ),
    listing("/api/v1/jobs", "label key with a backslash", {"label": "a\\:b"}, status=(200, 400), field=fields("label")),
    listing("/api/v1/jobs", "label key with a quote", {"label": 'te"am:qa'}, status=(200, 400), field=fields("label")),
    listing("/api/v1/jobs", "label with unicode", {"label": "country:C\u00f4te d'Ivoire"}, status=(200,)),
    listing("/api/v1/jobs", "type with a NUL", {"type": "t.echo\x00"}, status=(200, 400), field=fields("type")),
    listing(
        "/api/v1/jobs", "age_group with a NUL", {"age_group": "\x00"}, status=(200, 400), field=fields("age_group")
    ),
    *query_cases("/api/v1/jobs/jobs", "page_size"),
    listing(
        "/api/v1/jobs/jobs", "job_type with a NUL", {"job_type": "\x00"}, status=(200, 400), field=fields("job_type")
    ),
    listing("/api/v1/jobs/{job}/logs", "level=bogus", {"level": "bogus"}, field=fields("level"), code="INVALID_QUERY"),
    listing("/api/v1/jobs/{job}/logs", "level with a NUL", {"level": "\x00"}, field=fields("level")),
    listing("/api/v1/jobs/{job}/logs", "limit=0", {"limit": 0}, field=fields("limit"), code="INVALID_QUERY"),
    listing("/api/v1/jobs/{job}/logs", "limit=1001", {"limit": 1001}, field=fields("limit"), code="INVALID_QUERY"),
    listing("/api/v1/jobs/{job}/logs", "offset=-1", {"offset": -1}, field=fields("offset"), code="INVALID_QUERY"),
    listing(
        "/api/v1/jobs/{job}/logs", "offset past 2**63", {"offset": 10**19}, status=(200, 400), field=fields("offset")
    ),
    listing("/api/v1/jobs/metrics", "time_range=bogus", {"time_range": "bogus"}),
    listing("/api/v1/jobs/metrics", "time_range with a NUL", {"time_range": "1h\x00"}),
]

OTHER_CASES = [
    Case("queue name with a space", "POST", "/api/v1/jobs/queues/my%20queue/pause", field=fields("name")),
    Case("queue name with a NUL", "POST", "/api/v1/jobs/queues/q%00/pause", field=fields("name")),
    Case("queue name not ASCII", "POST", "/api/v1/jobs/queues/%C3%A9/resume", field=fields("name")),
    Case("queue name too long", "POST", "/api/v1/jobs/queues/" + "q" * 101 + "/pause", field=fields("name")),
    Case(
        "body over max_body_bytes",
        "POST",
        "/api/v1/jobs/jobs/{job}/cancel",
        content=huge_json(),
        headers=JSON,
        status=(413,),
        code="PAYLOAD_TOO_LARGE",
    ),
    Case("body over max_body_bytes", "GET", "/api/v1/jobs/health", content=huge_json(), status=(413,)),
    Case("body over max_body_bytes", "GET", "/api/v1/jobs/metrics", content=huge_json(), status=(413,)),
    Case("method not allowed", "PUT", "/api/v1/jobs", json={}, status=(405,)),
    Case("method not allowed", "PATCH", "/api/v1/jobs/jobs/{job}", json={}, status=(405,)),
    Case("no such path", "GET", "/api/v1/jobs/jobs/{job}/nothing", status=(404,)),
]

ALL_CASES = [c.param() for c in [*CREATE_CASES, *WAIT_CASES, *KEY_CASES, *LIST_CASES, *OTHER_CASES]]


@pytest.mark.parametrize("case", ALL_CASES)
async def test_bad_input_is_a_4xx_in_the_familys_shape(
    client: httpx.AsyncClient, admin: dict[str, str], case: Case
) -> None:
    job = await new_job(client, admin)  # filters must run over rows of the caller's, not over none
    path = case.path.replace("{job}", job)
    kwargs: dict[str, Any] = {"headers": {**admin, **(case.headers or {})}}
    if case.json is not MISSING:
        kwargs["json"] = case.json
    if case.content is not None:
        kwargs["content"] = case.content() if callable(case.content) else case.content
    if case.params is not None:
        kwargs["params"] = case.params
    response = await client.request(case.method, path, **kwargs)

    assert response.status_code in case.status, (
        f"{case.method} {path} ({case.id}): expected {case.status}, got {response.status_code}: {response.text[:500]}"
    )
    assert REQUEST_ID.match(response.headers.get("x-request-id", "")), "no X-Request-ID"
    if response.status_code < 400:
        return
    named = check_error(response, path, code=case.code if response.status_code in (400, 404, 413) else None)
    if case.field is not None and family(path) != "calibration":
        assert named & set(case.field), (
            f"{case.method} {path} ({case.id}): the error should name {' or '.join(case.field)}, "
            f"it names {sorted(named) or 'nothing'}: {response.text[:500]}"
        )


async def test_every_unknown_top_level_field_is_named(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    response = await client.post("/api/v1/jobs", json=job_with(colour="red", size=3), headers=admin)
    named = check_error(response, "/api/v1/jobs")
    assert response.status_code == 400 and {"colour", "size"} <= named, response.text


# --- ids that are no UUIDs ------------------------------------------------------------------------

JOB_ROUTES = [r for r in route_table() if "{job_id}" in r.path]
BAD_IDS = ["not-a-uuid", "12345", "00000000-0000-0000-0000-00000000000g", "%00", "%F0%9F%98%80", "x" * 300]


@pytest.mark.parametrize("route", JOB_ROUTES, ids=lambda r: f"{r.method} {r.path}")
async def test_ids_that_are_no_uuids_name_no_job(
    client: httpx.AsyncClient, admin: dict[str, str], route: RouteInfo
) -> None:
    body = {"timeout": 0} if route.path.endswith("/wait") else None
    for bad in BAD_IDS:
        path = route.path.replace("{job_id}", bad)
        response = await client.request(route.method, path, headers=admin, json=body)
        assert response.status_code == 404, f"{route.method} {path}: {response.status_code} {response.text[:300]}"
        check_error(response, path, code="JOB_NOT_FOUND")


# --- X-Request-ID ------------------------------------------------------------------------------------


async def _assorted(client: httpx.AsyncClient, admin: dict[str, str], extra: dict[str, str]) -> list[httpx.Response]:
    """Answers of every kind: 2xx, 400, 401, 403, 404, 405, 413, in each family."""
    h = {**admin, **extra}
    job = await new_job(client, admin)
    return [
        await client.get("/api/v1/jobs", headers=h),
        await client.post("/api/v1/jobs", json={"type": "t.echo", "data": {}}, headers=h),
        await client.get("/api/v1/jobs/jobs", headers=h),
        await client.get("/api/v1/jobs/health", headers=extra),
        await client.get("/metrics", headers=h),
        await client.get("/api/v1/jobs", params={"limit": 0}, headers=h),
        await client.get("/api/v1/jobs/jobs", params={"page": 0}, headers=h),
        await client.get("/api/v1/jobs/metrics", params={"time_range": "x"}, headers=h),
        await client.post("/api/v1/jobs", content=b"{", headers={**h, **JSON}),
        await client.get("/api/v1/jobs", headers=extra),
        await client.get("/api/v1/jobs/queues", headers=extra),
        await client.get(f"/api/v1/jobs/{job}", headers={**extra, **ApiHarness.jwt(roles=("guest",))}),
        await client.get("/api/v1/jobs/not-a-uuid", headers=h),
        await client.get("/api/v1/jobs/jobs/not-a-uuid", headers=h),
        await client.get("/api/v1/nothing-here", headers=h),
        await client.put("/api/v1/jobs", headers=h),
        await client.post("/api/v1/jobs", content=huge_json(), headers={**h, **JSON}),
        await client.post(f"/api/v1/jobs/{job}/wait", json={"timeout": 0}, headers=h),
    ]


async def test_every_response_carries_a_request_id(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    responses = await _assorted(client, admin, {})
    statuses = {r.status_code for r in responses}
    assert {200, 201, 400, 401, 403, 404, 405, 408, 413} <= statuses, statuses
    ids = []
    for r in responses:
        rid = r.headers.get("x-request-id", "")
        assert REQUEST_ID.match(rid), (
            f"{r.request.method} {r.request.url.path} -> {r.status_code}: X-Request-ID {rid!r}"
        )
        ids.append(rid)
    assert len(set(ids)) == len(ids), "request ids repeat"


async def test_a_callers_request_id_is_echoed(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    mine = "client-req.42:abc_DEF"
    for r in await _assorted(client, admin, {"X-Request-ID": mine}):
        where = f"{r.request.method} {r.request.url.path} -> {r.status_code}"
        assert r.headers.get("x-request-id") == mine, where
        if family(r.request.url.path) == "monitoring" and r.status_code >= 400:
            assert r.json()["error"]["request_id"] == mine, where


@pytest.mark.parametrize("unsafe", ["has spaces", "x" * 65, "semi;colon", "<script>", ""], ids=repr)
async def test_an_unsafe_request_id_is_replaced(client: httpx.AsyncClient, admin: dict[str, str], unsafe: str) -> None:
    for path in ("/api/v1/jobs", "/api/v1/jobs/jobs/not-a-uuid"):
        r = await client.get(path, headers={**admin, "X-Request-ID": unsafe})
        rid = r.headers.get("x-request-id", "")
        assert rid != unsafe and REQUEST_ID.match(rid), f"{path}: {rid!r}"
        if r.status_code >= 400:
            assert r.json()["error"]["request_id"] == rid


# --- an unexpected failure ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/jobs/stats/summary", "/api/v1/jobs/statistics"])
async def test_an_unexpected_error_is_a_500_in_the_familys_shape_with_a_request_id(
    harness: ApiHarness, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """What a bug looks like from outside: 500, the family's shape, no internals, the request id."""

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(harness.fastapi.state.services.insights, "summary", boom)
    response = await harness.client.get(path, headers={**admin, "X-Request-ID": "trace-500"})
    assert response.status_code == 500, response.text
    assert "secret internals" not in response.text
    body = response.json()
    if family(path) == "monitoring":
        assert set(body) == {"error"} and body["error"]["code"] == "JOB005", body
        assert body["error"]["request_id"] == "trace-500", body
    else:
        assert set(body) == {"success", "error", "details", "timestamp"} and body["success"] is False, body
        assert body["details"]["code"] == "INTERNAL_ERROR", body
    assert response.headers.get("x-request-id") == "trace-500", f"{path}: a 500 without X-Request-ID"


@pytest.mark.asyncio(loop_scope="function")
async def test_a_refused_create_leaves_nothing_that_breaks_the_lists(api: ApiHarness) -> None:
    """Whatever the answer to a create the API cannot handle, the caller's lists still work."""
    transport = httpx.ASGITransport(app=api.fastapi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://conveyor.test") as client:
        admin = await api.key("admin", org="org-a")
        await new_job(client, admin)
        created = await client.post("/api/v1/jobs", json=job_with(runAt="9999-12-31T23:59:59-14:00"), headers=admin)
        answers = {
            path: await client.get(path, headers=admin)
            for path in ("/api/v1/jobs", "/api/v1/jobs/jobs", "/api/v1/jobs/stats/summary", "/api/v1/jobs/queues")
        }
        broken = {path: r.status_code for path, r in answers.items() if r.status_code != 200}
        assert not broken, f"after POST /api/v1/jobs answered {created.status_code}: {broken}"
