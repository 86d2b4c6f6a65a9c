"""Authentication (bearer JWT or API key) and the permission check every route declares.

Credentials: `Authorization: Bearer <JWT>`, `Authorization: Bearer cvk_…` (an API key), or
`X-API-Key: cvk_…`. JWTs are verified with PyJWT: HS256 with CONVEYOR_JWT_SECRET and/or
RS256 with CONVEYOR_JWT_PUBLIC_KEY; `exp` and `sub` are required; `aud` and `iss` are
checked when configured. Claims used: sub (user id), name, org_id, study_id, roles.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from fastapi import Request

from conveyor.access import Permission, Principal, parse_roles
from conveyor.api.errors import ApiError
from conveyor.apikeys import PREFIX, ApiKeys, split_key
from conveyor.audit import Actor, set_actor
from conveyor.model import MAX_NAME_LENGTH
from conveyor.settings import Settings
from conveyor.signatures import Presented, SigningContext, set_signing
from conveyor.storable import text_problem
from conveyor.store.users import UserRecord
from conveyor.users import Users

KNOWN_ALGORITHMS = frozenset({"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "PS256", "EdDSA", "none"})
# What the owner columns (owner_user_id, owner_org_id, owner_study_id, created_by) hold.
MAX_IDENTITY_CHARS = MAX_NAME_LENGTH

_KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


class JwtVerifier:
    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        self._keys: dict[str, Any] = {}
        if secret:
            self._keys["HS256"] = secret
        if public_key:
            pem = Path(public_key).read_text() if not public_key.lstrip().startswith("-----") else public_key
            self._keys["RS256"] = pem
        self._audience = audience
        self._issuer = issuer

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier:
        return cls(
            secret=settings.jwt_secret,
            public_key=settings.jwt_public_key,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, token: str) -> Principal:
        return self.principal_of(self.claims(token))

    def claims(self, token: str) -> dict[str, Any]:
        """The token's claims, its signature, expiry, audience and issuer checked (else 401)."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise _unauthorized("malformed bearer token") from None
        key = self._keys.get(algorithm)
        if key is None:
            # The header's text is the caller's: named only when it is one we know.
            shown = algorithm if algorithm in KNOWN_ALGORITHMS else "this algorithm"
            raise _unauthorized(f"bearer tokens signed with {shown} are not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"invalid token: {exc}") from None
        return claims

    @staticmethod
    def principal_of(claims: dict[str, Any]) -> Principal:
        return Principal(
            user_id=_identity(claims, "sub"),  # type: ignore[arg-type]  # required above
            name=_identity(claims, "name"),
            org_id=_identity(claims, "org_id"),
            study_id=_identity(claims, "study_id"),
            roles=parse_roles(claims.get("roles")),
            via="jwt",
        )


def _identity(claims: dict[str, Any], claim: str) -> str | None:
    """A claim that names who the caller is, as stored with their jobs: text (or a number, for
    `sub`) of at most MAX_IDENTITY_CHARS that the database can hold; else the token is refused."""
    value = claims.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _unauthorized(f"invalid token: claim {claim!r} must be text")
    text = str(value)
    if not 1 <= len(text) <= MAX_IDENTITY_CHARS or text_problem(text):
        raise _unauthorized(f"invalid token: claim {claim!r} must be 1-{MAX_IDENTITY_CHARS} characters of text")
    return text


class JwtIssuer:
    """Signs the tokens of local users' sign-ins (POST /api/v1/auth/token) with the server's
    HS256 key, so that the same JwtVerifier accepts them; with the configured audience and
    issuer. Claim `cvu` marks a local user's token: each use checks that the user still may
    sign in (not disabled, password not changed since the token was issued)."""

    def __init__(self, *, secret: str | None, audience: str | None, issuer: str | None, minutes: float) -> None:
        self._secret = secret
        self._audience = audience
        self._issuer = issuer
        self.lifetime = timedelta(minutes=minutes)

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtIssuer:
        return cls(
            secret=settings.jwt_secret,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            minutes=settings.sign_in_token_minutes,
        )

    @property
    def configured(self) -> bool:
        return bool(self._secret)

    def issue(self, user: UserRecord, now: datetime) -> tuple[str, datetime]:
        expires = now + self.lifetime
        claims: dict[str, Any] = {
            "sub": user.id,
            "name": user.name,
            "org_id": user.org_id,
            "roles": [user.role],
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "cvu": True,
        }
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires  # type: ignore[arg-type]


class Authenticator:
    def __init__(self, keys: ApiKeys, jwts: JwtVerifier, users: Users | None = None) -> None:
        self.keys = keys
        self.jwts = jwts
        self.users = users

    async def principal(self, bearer: str | None, api_key: str | None) -> Principal:
        if api_key:
            return await self._by_key(api_key)
        if not bearer:
            raise _unauthorized("credentials required: Authorization: Bearer <token or API key>, or X-API-Key")
        if bearer.startswith(PREFIX + "_"):
            return await self._by_key(bearer)
        if not self.jwts.configured:
            raise _unauthorized("JWT bearer tokens are not configured on this server; use an API key")
        claims = self.jwts.claims(bearer)
        principal = self.jwts.principal_of(claims)
        if claims.get("cvu") is True and self.users is not None:
            await self._still_valid(principal.user_id, claims)
        return principal

    async def _still_valid(self, user_id: str, claims: dict[str, Any]) -> None:
        """A local user's token: refused once the user is disabled, removed, or has changed
        their password since it was issued (a reset ends every session)."""
        user = await self.users.get(user_id)  # type: ignore[union-attr]  # checked by the caller
        issued = claims.get("iat")
        if user is None or user.disabled:
            raise _unauthorized("the user of this token is disabled or unknown")
        if not isinstance(issued, int | float) or issued < int(user.password_changed_at.timestamp()):
            raise _unauthorized("the password changed since this token was issued: sign in again")

    async def _by_key(self, key: str) -> Principal:
        principal = await self.keys.authenticate(key)
        if principal is None:
            raise _unauthorized("unknown or revoked API key")
        return principal


async def authenticate(request: Request) -> Principal:
    """The caller, from `Authorization: Bearer …` or `X-API-Key` (401 without valid ones).

    Reads the headers itself rather than through FastAPI's security classes: one dependency
    instead of three on every request (the security schemes are added to the OpenAPI
    description by conveyor.api.app)."""
    authenticator: Authenticator = request.app.state.services.auth
    headers = request.headers
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else None
    api_key = headers.get("x-api-key") or None
    try:
        principal = await authenticator.principal(bearer or None, api_key)
    except ApiError as exc:
        if exc.status == 401 and (bearer or api_key):
            await _record_failed_sign_in(request, exc, bearer, api_key)
        raise
    request.state.principal = principal
    # The e-signature this request carries, for the critical operations that demand one.
    set_signing(SigningContext(principal, _presented_signature(headers)))
    # Whatever this request changes is recorded in the audit trail as done by this caller.
    set_actor(
        Actor(
            user_id=principal.user_id,
            name=principal.name,
            org_id=principal.org_id,
            request_id=getattr(request.state, "request_id", None),
            client_address=request.client.host if request.client else None,
        )
    )
    return principal


async def _record_failed_sign_in(request: Request, error: ApiError, bearer: str | None, api_key: str | None) -> None:
    """A credential was presented and refused: recorded with where it came from and which kind
    of credential it was (an API key's id, which is not secret), never the credential itself.
    A request without any credential is not a sign-in attempt, and is not recorded."""
    presented = api_key or bearer or ""
    key_parts = split_key(presented) if presented.startswith(PREFIX + "_") else None
    kind = "api_key" if api_key or key_parts else "jwt"
    key_id = key_parts[0] if key_parts and _KEY_ID.match(key_parts[0]) else None
    actor = Actor(
        user_id="anonymous",
        request_id=getattr(request.state, "request_id", None),
        client_address=request.client.host if request.client else None,
    )
    audit = request.app.state.services.conveyor.audit
    route = getattr(request.scope.get("route"), "path", None)  # the template: no caller's text
    after = {"credential": kind, "keyId": key_id, "reason": error.message, "route": route}
    await audit.record("auth.failed", "credential", kind, after=after, actor=actor)


SIGNATURE_HEADERS = ("x-signature-user", "x-signature-password", "x-signature-meaning")


def _header_text(value: str) -> str:
    """A header as the UTF-8 the client sent (Starlette decodes headers as Latin-1)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _presented_signature(headers: Any) -> Presented | None:
    """The X-Signature-* headers (None when none is given; a part left out is empty)."""
    values = [headers.get(name) for name in SIGNATURE_HEADERS]
    if all(v is None for v in values):
        return None
    user_id, password, meaning = (_header_text(v or "") for v in values)
    return Presented(user_id=user_id.strip(), password=password, meaning=meaning.strip())


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the authenticated caller, who must hold `permission` (else 403)."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not principal.can(permission):
            role = principal.role.value if principal.role else "no role"
            raise ApiError(403, "FORBIDDEN", f"{role} may not do this (needs {permission.value})")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the route table
    return dependency


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "a JWT, or an API key (cvk_…)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "an API key (cvk_…)"},
}
