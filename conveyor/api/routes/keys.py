"""API keys over HTTP: an admin creates, lists and revokes its organisation's keys.

An admin may hand out any role up to admin, inside its own organisation (and study, if it is
scoped to one); a super admin any role in any organisation. A key is shown once, in the
answer that creates it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.access import Permission, Principal, Role
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.services import Services, services
from conveyor.api.timefmt import iso, iso_now
from conveyor.storable import text_problem
from conveyor.store.control import ApiKeyRecord

router = APIRouter(prefix="/api/v1/api-keys", tags=["API keys"], route_class=LeanRoute)
Admin = Annotated[Principal, Depends(require(Permission.KEYS_MANAGE))]
Svc = Annotated[Services, Depends(services)]


class CreateKeyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "nightly exports", "role": "user"}]}
    )

    name: str = Field(min_length=1, max_length=200)
    role: Role
    orgId: str | None = Field(None, max_length=200, description="super admins only: another organisation")
    studyId: str | None = Field(None, max_length=200)

    @field_validator("name", "orgId", "studyId")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and (problem := text_problem(value)):
            raise ValueError(problem)
        return value


KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _key_json(record: ApiKeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "orgId": record.org_id,
        "studyId": record.study_id,
        "createdAt": iso(record.created_at),
        "createdBy": record.created_by,
        "revokedAt": iso(record.revoked_at),
        "active": record.active,
    }


def _may_manage(principal: Principal, record: ApiKeyRecord) -> bool:
    return principal.is_super_admin or record.org_id == principal.org_id


@router.post(
    "",
    status_code=201,
    summary="Create an API key (shown once)",
    responses=ex.example(201, {**ex.KEYS, "data": {**ex.API_KEY, "key": "cvk_9f2c4a1b7d3e5f60_…"}}),
)
async def create_key(svc: Svc, principal: Admin, body: CreateKeyRequest) -> dict[str, Any]:
    org_id, study_id = body.orgId, body.studyId
    if not principal.is_super_admin:
        if body.role is Role.SUPER_ADMIN:
            raise ApiError(403, "FORBIDDEN", "only a super admin may create super admin keys", field="role")
        if org_id is not None and org_id != principal.org_id:
            raise ApiError(403, "FORBIDDEN", "keys for another organisation need a super admin", field="orgId")
        org_id = principal.org_id
        if principal.study_id is not None:
            if study_id is not None and study_id != principal.study_id:
                raise ApiError(403, "FORBIDDEN", "keys for another study need a wider scope", field="studyId")
            study_id = principal.study_id
    new = await svc.keys.create(
        role=body.role, name=body.name, org_id=org_id, study_id=study_id, created_by=principal.name or principal.user_id
    )
    return {"success": True, "data": {**_key_json(new.record), "key": new.key}, "timestamp": iso_now()}


@router.get("", summary="List API keys", responses=ex.example(200, ex.KEYS))
async def list_keys(svc: Svc, principal: Admin) -> dict[str, Any]:
    records = await svc.keys.list(org_id=principal.org_id, every_org=principal.is_super_admin)
    return {"success": True, "data": {"keys": [_key_json(r) for r in records]}, "timestamp": iso_now()}


@router.delete("/{key_id}", summary="Revoke an API key", responses=ex.example(200, ex.REVOKED))
async def revoke_key(svc: Svc, principal: Admin, key_id: str) -> dict[str, Any]:
    record = await svc.keys.get(key_id) if KEY_ID.match(key_id) else None
    if record is None or not _may_manage(principal, record):
        raise ApiError(404, "API_KEY_NOT_FOUND", "API key not found", keyId=key_id)
    revoked = await svc.keys.revoke(key_id)
    # type narrowing: the key was found just above, under require() (bandit B101)
    assert revoked is not None  # nosec B101
    return {"success": True, "data": _key_json(revoked), "timestamp": iso_now()}
