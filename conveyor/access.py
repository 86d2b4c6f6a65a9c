"""Who may do what, and see which jobs: roles, permissions, principals.

One table (ROLE_PERMISSIONS) decides every edge's authorisation, so the API, the dashboard
and the CLI cannot drift apart. What a caller sees is decided by `Principal.visibility`:

- super_admin: every job of every organisation;
- admin, operator, viewer: their organisation's jobs (and only their study's, when the
  principal is scoped to one);
- user: the jobs they created themselves.

A job outside that scope does not exist for the caller (the API answers 404, never 403).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from conveyor.model import Owner, Visibility


class Role(enum.StrEnum):
    VIEWER = "viewer"
    USER = "user"
    OPERATOR = "operator"
    ADMIN = "admin"
    SUPER_ADMIN = "super_admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Permission(enum.StrEnum):
    JOBS_READ = "jobs:read"  # get, list, logs, wait, stats over visible jobs
    # open a visible sensitive job's sealed data, result and log lines (each read audited);
    # without it they come masked
    JOBS_READ_SENSITIVE = "jobs:read-sensitive"
    JOBS_CREATE = "jobs:create"
    JOBS_MANAGE = "jobs:manage"  # cancel, delete, retry visible jobs
    QUEUES_READ = "queues:read"
    QUEUES_MANAGE = "queues:manage"  # pause, resume
    SCHEDULES_MANAGE = "schedules:manage"  # create, change, pause, resume, delete schedules
    METRICS_READ = "metrics:read"  # /metrics: counts across the whole installation
    CACHE_CLEAR = "cache:clear"  # forget cached results of the caller's scope
    KEYS_MANAGE = "keys:manage"  # API keys of the caller's organisation
    AUDIT_READ = "audit:read"  # the audit trail of the caller's organisation (super admin: all); verify
    USERS_MANAGE = "users:manage"  # local users of the caller's organisation (super admin: all)
    ACCOUNT = "account:self"  # the caller's own account: change its password
    ALERTS_READ = "alerts:read"  # alerts of the caller's organisation (super admin: all)
    WEBHOOKS_MANAGE = "webhooks:manage"  # webhook subscriptions of the caller's organisation


_VIEWER = {Permission.JOBS_READ, Permission.QUEUES_READ, Permission.ACCOUNT}
_USER = _VIEWER | {Permission.JOBS_CREATE, Permission.JOBS_MANAGE, Permission.JOBS_READ_SENSITIVE}
_OPERATOR = _USER | {
    Permission.QUEUES_MANAGE,
    Permission.SCHEDULES_MANAGE,
    Permission.METRICS_READ,
    Permission.CACHE_CLEAR,
    Permission.ALERTS_READ,
}
_ADMIN = _OPERATOR | {
    Permission.KEYS_MANAGE,
    Permission.AUDIT_READ,
    Permission.USERS_MANAGE,
    Permission.WEBHOOKS_MANAGE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset(_VIEWER),
    Role.USER: frozenset(_USER),
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.ADMIN: frozenset(_ADMIN),
    Role.SUPER_ADMIN: frozenset(Permission),
}


def parse_roles(names: object) -> tuple[Role, ...]:
    """Known role names from a token's `roles` claim; unknown names are ignored."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list | tuple):
        return ()
    known = {r.value: r for r in Role}
    return tuple(known[n] for n in names if isinstance(n, str) and n in known)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user from a JWT, or an API key acting as one."""

    user_id: str
    roles: tuple[Role, ...]
    name: str | None = None
    org_id: str | None = None
    study_id: str | None = None
    via: str = "jwt"  # "jwt" or "api_key"
    permissions: frozenset[Permission] = field(init=False)

    def __post_init__(self) -> None:
        granted: set[Permission] = set()
        for role in self.roles:
            granted |= ROLE_PERMISSIONS[role]
        object.__setattr__(self, "permissions", frozenset(granted))

    @property
    def role(self) -> Role | None:
        """The highest of the principal's roles."""
        return max(self.roles, key=lambda r: r.rank) if self.roles else None

    @property
    def is_super_admin(self) -> bool:
        return Role.SUPER_ADMIN in self.roles

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def visibility(self) -> Visibility | None:
        """The jobs this caller may see (None: all of them)."""
        if self.is_super_admin:
            return None
        if self.role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER):
            return Visibility(org_id=self.org_id, study_id=self.study_id)
        return Visibility(org_id=self.org_id, study_id=self.study_id, user_id=self.user_id)

    def sees(self, owner: Owner) -> bool:
        scope = self.visibility
        return scope is None or scope.allows(owner)

    @property
    def owner(self) -> Owner:
        """The owner recorded on the jobs this caller creates."""
        return Owner(
            user_id=self.user_id, org_id=self.org_id, study_id=self.study_id, created_by=self.name or self.user_id
        )
