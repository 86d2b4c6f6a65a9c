"""The client's errors: one base class, a subclass per way a caller handles an answer.

Every error the client raises is a `ConveyorError`. The server answers errors in two
envelopes, depending on the endpoint family; both are read into the same attributes:

- the canonical family (`/api/v1/jobs…`):
  `{"success": false, "error": "Invalid job data", "details": {"code": "INVALID_JOB_DATA",
  "errors": [{"field": "texts", "message": "…"}]}, "timestamp": …}`;
- the monitoring family (`/api/v1/jobs/queues`, `/schedules`, …):
  `{"error": {"code": "JOB002", "message": …, "field": …, "details": {"reason":
  "INVALID_SCHEDULE", …}, "request_id": …}}`; `code` is the specific reason, `family_code`
  the JOB00x code.

Anything else (`{"detail": …}`, a proxy's HTML page) keeps its status and text; the code then
comes from the `X-Error-Code` header when the server sent one.
"""

from __future__ import annotations

from typing import Any

import httpx


class ConveyorError(Exception):
    """An error answer from the server, or no answer at all (`TransportError`).

    Attributes:
        status_code: the HTTP status (None when no response came).
        code: the server's stable code (`INVALID_JOB_DATA`, `JOB_NOT_FOUND`, …), or
            `HTTP_<status>` when the answer carried none.
        message: what the server said.
        fields: the fields at fault, as `[{"field": "texts", "message": "…"}]` (empty when
            the error is not about a field).
        details: everything else the server put in the error (`currentStatus`, `allowedTypes`…).
        request_id: the `X-Request-ID` of the request, to quote to whoever runs the server.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        fields: list[dict[str, Any]] | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        family_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code or (f"HTTP_{status_code}" if status_code else "ERROR")
        self.fields = fields or []
        self.details = details or {}
        self.request_id = request_id
        self.family_code = family_code

    def __str__(self) -> str:
        where = ", ".join(f"{f.get('field')}: {f.get('message')}" for f in self.fields)
        status = f"{self.status_code} " if self.status_code else ""
        return f"{status}{self.code}: {self.message}" + (f" ({where})" if where else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code!r}, {self.code!r}, {self.message!r})"


class InvalidRequest(ConveyorError):
    """400 (and 413, 415): the request was refused as it stands; `fields` names what to fix.

    An unknown job type (`code == "INVALID_JOB_TYPE"`) lists the types the server knows in
    `allowed_types`.
    """

    @property
    def allowed_types(self) -> list[str]:
        return list(self.details.get("allowedTypes") or [])


class Unauthorized(ConveyorError):
    """401: no credentials, or ones the server does not accept (unknown, revoked, expired)."""


class Forbidden(ConveyorError):
    """403: the credentials are good, but their role may not do this."""


class SignatureRequired(ConveyorError):
    """428 `SIGNATURE_REQUIRED`: the operation is critical on this server and needs an
    e-signature (`signature=Signature(…)`); nothing was changed. `operation` names it
    (`cache.clear`, `job.cancel`…) where the endpoint's family says so."""

    @property
    def operation(self) -> str | None:
        return self.details.get("operation")


class SignatureInvalid(Forbidden):
    """403 `SIGNATURE_INVALID`: the signature was refused (a wrong password, an unknown
    meaning, a signer who may not sign this); `fields` names the header at fault. Nothing was
    changed; a wrong password counts toward the signer's lock-out."""

    @property
    def operation(self) -> str | None:
        return self.details.get("operation")


class NotFound(ConveyorError):
    """404: no such job or schedule — or one outside the caller's organisation, which the
    server never tells apart."""


class Conflict(ConveyorError):
    """409: the job's state does not allow it (`JOB_NOT_CANCELLABLE`, `JOB_NOT_RETRYABLE`);
    `current_status` says what state it is in."""

    @property
    def current_status(self) -> str | None:
        return self.details.get("currentStatus")


class WaitTimeout(ConveyorError, TimeoutError):
    """`wait()` ran out of time before the job finished (the server's `JOB_TIMEOUT`).

    The job goes on; `current_status` and `current_progress` say where it was. Also a
    `TimeoutError`, so `except TimeoutError` catches it as it would `asyncio.wait_for`'s.
    """

    @property
    def job_id(self) -> str | None:
        return self.details.get("jobId")

    @property
    def current_status(self) -> str | None:
        return self.details.get("currentStatus")

    @property
    def current_progress(self) -> float | None:
        return self.details.get("currentProgress")


class ServerError(ConveyorError):
    """5xx: the server failed (or is unavailable); the request may be tried again later."""


class TransportError(ConveyorError):
    """No answer: the connection failed or timed out (after the retries the call allows).
    The httpx exception is the `__cause__`."""


_BY_STATUS: dict[int, type[ConveyorError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    428: SignatureRequired,
}


def error_from_response(response: httpx.Response) -> ConveyorError:
    """The error an unsuccessful response stands for, read from either envelope."""
    status = response.status_code
    request_id = response.headers.get("x-request-id")
    parsed = _parse_body(response)
    parsed["code"] = parsed["code"] or response.headers.get("x-error-code")
    if parsed["code"] == "JOB_TIMEOUT":
        cls: type[ConveyorError] = WaitTimeout
    elif parsed["code"] == "SIGNATURE_INVALID":
        cls = SignatureInvalid
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, ConveyorError)
    return cls(status_code=status, request_id=request_id, **parsed)


def _parse_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("success") is False:
        return _canonical(body)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _monitoring(body["error"])
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return {"message": detail if isinstance(detail, str) else str(detail), "code": None}
    text = response.text.strip()
    return {"message": text[:500] or response.reason_phrase or "no message", "code": None}


def _canonical(body: dict[str, Any]) -> dict[str, Any]:
    """`{success: false, error, details: {code, field?, errors?, …}}` (seed 002)."""
    details = dict(body.get("details") or {})
    code = details.pop("code", None)
    field = details.pop("field", None)
    errors = details.pop("errors", None)
    message = str(body.get("error") or code or "error")
    return {"message": message, "code": code, "fields": _fields(errors, field, message), "details": details}


def _monitoring(error: dict[str, Any]) -> dict[str, Any]:
    """`{error: {code: JOB00x, message, field, details: {reason, …}}}` (seed 000)."""
    details = dict(error.get("details") or {})
    reason = details.pop("reason", None)
    errors = details.pop("errors", None)
    message = str(error.get("message") or "error")
    return {
        "message": message,
        "code": reason or error.get("code"),
        "family_code": error.get("code"),
        "fields": _fields(errors, error.get("field"), message),
        "details": details,
    }


def _fields(errors: Any, field: Any, message: str) -> list[dict[str, Any]]:
    if isinstance(errors, list) and errors:
        return [e for e in errors if isinstance(e, dict)]
    if field:
        return [{"field": field, "message": message}]
    return []
