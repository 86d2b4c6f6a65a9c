"""Local users over HTTP: sign-in (a JWT for a user id and password), the caller's own password,
and user management for admins (21 CFR Part 11 §11.300).

- `POST /api/v1/auth/token` is open (it is how one gets credentials). An unknown user, a wrong
  password, a locked-out or disabled account: one answer, 401 INVALID_CREDENTIALS.
- `POST /api/v1/auth/password`: the signed-in user changes their own password.
- `/api/v1/users…` (users:manage): an admin manages the users of its organisation (a user of
  another organisation does not exist for it: 404) and may hand out roles up to admin; a
  super admin manages every user.
- `GET /api/v1/jobs/{job_id}/signatures`: the e-signatures applied to a job (jobs:read).
- `GET /api/v1/auth/signature-policy`: which operations this server makes critical and the
  meanings a signer may state, so that a client asks for a signature by the server's rules.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from conveyor.access import Permission, Principal, Role
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.routes.canonical import parse_job_id
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.audit import Actor
from conveyor.signatures import OPERATIONS
from conveyor.store.users import UserRecord
from conveyor.users import InvalidCredentials

router = APIRouter(tags=["users and sign-in"], route_class=LeanRoute)
Admin = Annotated[Principal, Depends(require(Permission.USERS_MANAGE))]
Account = Annotated[Principal, Depends(require(Permission.ACCOUNT))]
Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Svc = Annotated[Services, Depends(services)]

# The OpenAPI examples' password: documentation, not a credential of any installation.
EXAMPLE_PASSWORD = "a long pass phrase"  # nosec B105
# The wire's bounds; the core's rules (conveyor.users) decide the rest and name the field.
_TEXT = {"min_length": 1, "max_length": 200}
_PASSWORD = {"min_length": 1, "max_length": 256}


class TokenRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"userId": "ada", "password": EXAMPLE_PASSWORD}]}
    )
    userId: str = Field(**_TEXT)  # type: ignore[arg-type]
    password: str = Field(**_PASSWORD)  # type: ignore[arg-type]


class ChangePasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currentPassword: str = Field(**_PASSWORD)  # type: ignore[arg-type]
    newPassword: str = Field(**_PASSWORD)  # type: ignore[arg-type]


class CreateUserRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"userId": "ada", "name": "Ada Lovelace", "role": "operator", "password": EXAMPLE_PASSWORD}]
        },
    )
    userId: str = Field(**_TEXT)  # type: ignore[arg-type]
    name: str = Field(description="the printed (full) name shown with the user's signatures", **_TEXT)  # type: ignore[arg-type]
    role: Role
    password: str = Field(**_PASSWORD)  # type: ignore[arg-type]
    orgId: str | None = Field(None, max_length=200, description="super admins only: another organisation")


class UpdateUserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "viewer", "disabled": True}]})
    name: str | None = Field(None, **_TEXT)  # type: ignore[arg-type]
    role: Role | None = None
    disabled: bool | None = None


class ResetPasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(**_PASSWORD)  # type: ignore[arg-type]


def user_json(user: UserRecord, now: Any = None) -> dict[str, Any]:
    return {
        "userId": user.id,
        "name": user.name,
        "role": user.role,
        "orgId": user.org_id,
        "disabled": user.disabled,
        "lockedUntil": iso(user.locked_until),
        "failedAttempts": user.failed_attempts,
        "passwordChangedAt": iso(user.password_changed_at),
        "createdAt": iso(user.created_at),
        "createdBy": user.created_by,
        "lastSignInAt": iso(user.last_sign_in_at),
    }


def _ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "timestamp": iso_now()}


def _request_actor(request: Request, user_id: str) -> Actor:
    return Actor(
        user_id=user_id,
        request_id=getattr(request.state, "request_id", None),
        client_address=request.client.host if request.client else None,
    )


TS = "2026-11-23T19:00:00Z"
USER_EXAMPLE = {
    "userId": "ada",
    "name": "Ada Lovelace",
    "role": "operator",
    "orgId": "org-a",
    "disabled": False,
    "lockedUntil": None,
    "failedAttempts": 0,
    "passwordChangedAt": TS,
    "createdAt": TS,
    "createdBy": "admin-1",
    "lastSignInAt": TS,
}
USER_ANSWER = {"success": True, "data": USER_EXAMPLE, "timestamp": TS}
USERS_ANSWER = {"success": True, "data": {"users": [USER_EXAMPLE], "total": 1}, "timestamp": TS}
SIGNATURES_ANSWER = {
    "success": True,
    "data": {
        "jobId": "0193b5e2-7c4a-7d1e-9f00-3c2a1b4d5e6f",
        "signatures": [
            {
                "id": "6f1c2b9e-0d7a-4c1e-8a3b-2f4d5e6a7b8c",
                "signerId": "ada",
                "printedName": "Ada Lovelace",
                "meaning": "approved",
                "signedAt": "2026-11-23T19:00:00.123456Z",
                "action": "job.cancelled",
                "objectType": "job",
                "objectId": "0193b5e2-7c4a-7d1e-9f00-3c2a1b4d5e6f",
                "recordHash": "9b0c" + "0" * 60,
                "requestedBy": "ada",
            }
        ],
    },
    "timestamp": TS,
}
INVALID_CREDENTIALS = {
    "success": False,
    "error": "user id or password is wrong, or the account is locked out or disabled",
    "details": {"code": "INVALID_CREDENTIALS"},
    "timestamp": TS,
}


# --- sign-in and one's own account --------------------------------------------------------------

TOKEN_EXAMPLE = {
    "success": True,
    "data": {
        "accessToken": "eyJhbGciOiJIUzI1NiIs…",
        "tokenType": "Bearer",
        "expiresAt": "2026-11-23T20:00:00Z",
        "user": {"userId": "ada", "name": "Ada Lovelace", "role": "operator", "orgId": "org-a"},
    },
    "timestamp": "2026-11-23T19:00:00Z",
}


@router.post(
    "/api/v1/auth/token",
    summary="Sign in: a JWT for a local user's id and password",
    responses={**ex.example(200, TOKEN_EXAMPLE), **ex.example(401, INVALID_CREDENTIALS, "refused")},
)
async def sign_in(request: Request, svc: Svc, body: TokenRequest) -> dict[str, Any]:
    """An unknown user, a wrong password, a locked-out or disabled account are one answer
    (401 INVALID_CREDENTIALS), and cost the same time. Every attempt is an audit record
    (user.signed_in, user.sign_in_failed, user.locked) with the client address and request id."""
    if not svc.issuer.configured:
        raise ApiError(503, "SIGN_IN_UNAVAILABLE", "sign-in needs CONVEYOR_JWT_SECRET on this server")
    users = svc.conveyor.users
    actor = _request_actor(request, body.userId)
    try:
        user = await users.verify(body.userId, body.password, purpose="sign_in", actor=actor)
    except InvalidCredentials as exc:
        raise ApiError(401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"}) from None
    token, expires = svc.issuer.issue(user, users.clock())
    data = {
        "accessToken": token,
        "tokenType": "Bearer",
        "expiresAt": iso(expires),
        "user": {"userId": user.id, "name": user.name, "role": user.role, "orgId": user.org_id},
    }
    return _ok(data)


@router.post(
    "/api/v1/auth/password",
    summary="Change one's own password",
    responses={**ex.example(200, USER_ANSWER), **ex.example(403, INVALID_CREDENTIALS, "wrong current password")},
)
async def change_own_password(
    request: Request, svc: Svc, principal: Account, body: ChangePasswordRequest
) -> dict[str, Any]:
    """The current password first (a wrong one is 403 INVALID_CREDENTIALS and counts toward
    the lock-out); the new one must follow the password rules. Tokens issued before stop working."""
    if principal.via == "api_key":
        raise ApiError(403, "FORBIDDEN", "an API key has no password: sign in as the user")
    users = svc.conveyor.users
    actor = _request_actor(request, principal.user_id)
    try:
        user = await users.change_password(principal.user_id, body.currentPassword, body.newPassword, actor=actor)
    except InvalidCredentials as exc:
        raise ApiError(403, exc.code, exc.message, field="currentPassword") from None
    return _ok(user_json(user))


# --- user management ------------------------------------------------------------------------------


async def _manageable(svc: Services, principal: Principal, user_id: str) -> UserRecord:
    """The user, if the caller may manage it; else 404 (another organisation's users do not
    exist for an org admin)."""
    user = await svc.conveyor.users.get(user_id) if len(user_id) <= 200 else None
    if user is None or not (principal.is_super_admin or user.org_id == principal.org_id):
        raise ApiError(404, "USER_NOT_FOUND", "User not found", field="userId")
    if user.role == Role.SUPER_ADMIN.value and not principal.is_super_admin:
        raise ApiError(403, "FORBIDDEN", "only a super admin manages super admins", field="userId")
    return user


def _may_grant(principal: Principal, role: Role | None) -> None:
    if role is Role.SUPER_ADMIN and not principal.is_super_admin:
        raise ApiError(403, "FORBIDDEN", "only a super admin may make super admins", field="role")


@router.post("/api/v1/users", status_code=201, summary="Create a local user", responses=ex.example(201, USER_ANSWER))
async def create_user(svc: Svc, principal: Admin, body: CreateUserRequest) -> dict[str, Any]:
    _may_grant(principal, body.role)
    org_id = body.orgId
    if not principal.is_super_admin:
        if org_id is not None and org_id != principal.org_id:
            raise ApiError(403, "FORBIDDEN", "users of another organisation need a super admin", field="orgId")
        org_id = principal.org_id
    user = await svc.conveyor.users.create(
        body.userId,
        name=body.name,
        role=body.role,
        password=body.password,
        org_id=org_id,
        created_by=principal.user_id,
    )
    return _ok(user_json(user))


@router.get(
    "/api/v1/users",
    summary="List local users (the organisation's; super admin: all)",
    responses=ex.example(200, USERS_ANSWER),
)
async def list_users(svc: Svc, principal: Admin) -> dict[str, Any]:
    users = await svc.conveyor.users.list(org_id=principal.org_id, every_org=principal.is_super_admin)
    return _ok({"users": [user_json(u) for u in users], "total": len(users)})


@router.get("/api/v1/users/{user_id}", summary="Get a local user", responses=ex.example(200, USER_ANSWER))
async def get_user(svc: Svc, principal: Admin, user_id: str) -> dict[str, Any]:
    return _ok(user_json(await _manageable(svc, principal, user_id)))


@router.patch(
    "/api/v1/users/{user_id}",
    summary="Change a user's printed name or role, or disable it",
    responses=ex.example(200, USER_ANSWER),
)
async def update_user(svc: Svc, principal: Admin, user_id: str, body: UpdateUserRequest) -> dict[str, Any]:
    await _manageable(svc, principal, user_id)
    _may_grant(principal, body.role)
    if body.disabled and user_id == principal.user_id:
        raise ApiError(400, "INVALID_USER_REQUEST", "you may not disable yourself", field="disabled")
    user = await svc.conveyor.users.update(user_id, name=body.name, role=body.role, disabled=body.disabled)
    return _ok(user_json(user))


@router.post(
    "/api/v1/users/{user_id}/password",
    summary="Reset a user's password (lifts a lock-out)",
    responses=ex.example(200, USER_ANSWER),
)
async def reset_password(svc: Svc, principal: Admin, user_id: str, body: ResetPasswordRequest) -> dict[str, Any]:
    await _manageable(svc, principal, user_id)
    return _ok(user_json(await svc.conveyor.users.set_password(user_id, body.password)))


@router.post("/api/v1/users/{user_id}/unlock", summary="Lift a user's lock-out", responses=ex.example(200, USER_ANSWER))
async def unlock_user(svc: Svc, principal: Admin, user_id: str) -> dict[str, Any]:
    await _manageable(svc, principal, user_id)
    return _ok(user_json(await svc.conveyor.users.unlock(user_id)))


# --- signatures: the server's rules, and those shown with the job ---

POLICY_ANSWER = {
    "success": True,
    "data": {
        "operations": {
            "job.cancel": "critical_jobs",
            "job.retry": "critical_jobs",
            "job.delete": "always",
            "cache.clear": "always",
            "schedule.change": "always",
            "schedule.delete": "always",
            "api_key.revoke": "always",
        },
        "meanings": ["approved", "authored", "responsible", "reviewed"],
    },
    "timestamp": TS,
}


@router.get(
    "/api/v1/auth/signature-policy",
    summary="Which operations need an e-signature here, and the meanings a signer may state",
    responses=ex.example(200, POLICY_ANSWER),
)
async def signature_policy(svc: Svc, _principal: Reader) -> dict[str, Any]:
    """Every operation that can be made critical, with `always`, `critical_jobs` (only on
    critical-priority jobs) or `never` (CONVEYOR_CRITICAL_OPERATIONS), and the meanings of
    CONVEYOR_SIGNATURE_MEANINGS."""
    signatures = svc.conveyor.signatures
    critical = signatures.critical

    def when(operation: str) -> str:
        if operation in critical.always:
            return "always"
        return "critical_jobs" if operation in critical.critical_jobs_only else "never"

    return _ok({"operations": {op: when(op) for op in OPERATIONS}, "meanings": signatures.meaning_list()})


# --- signatures shown with the job -------------------------------------------------------------------


@router.get(
    "/api/v1/jobs/{job_id}/signatures",
    summary="The e-signatures applied to a job",
    responses=ex.example(200, SIGNATURES_ANSWER),
)
async def job_signatures(svc: Svc, principal: Reader, job_id: str) -> dict[str, Any]:
    """Each signature: signer id, printed name, meaning, server UTC time, the action signed and
    the content hash of the audit record it is bound to (GET /api/v1/audit/verify checks it)."""
    job = await svc.engine.get(parse_job_id(job_id), visible_to=principal.visibility)
    rows = await svc.conveyor.audit.signatures_of("job", job.id)
    return _ok({"jobId": str(job.id), "signatures": [r.as_json() for r in rows]})
