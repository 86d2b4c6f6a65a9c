"""The sentiment workbench's files (seed 002's job types, conveyor.packs.workbench):
`POST /api/v1/files` stores an upload and answers with the `filePath` that file_processing
and security_scan take; `GET /api/v1/jobs/{id}/download` serves a data_export's file to those
who may read the job. Errors in the canonical shape.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from conveyor.access import Permission, Principal
from conveyor.api import examples as ex
from conveyor.api.auth import require
from conveyor.api.errors import ApiError
from conveyor.api.lean import LeanRoute
from conveyor.api.routes.canonical import ok, parse_job_id
from conveyor.api.services import Services, services
from conveyor.api.uploads import UploadRefused, receive_file
from conveyor.model import Status, utc_now
from conveyor.packs.workbench import MEDIA_TYPES, export_path

router = APIRouter(prefix="/api/v1", tags=["workbench files (seed 002)"], route_class=LeanRoute)

Creator = Annotated[Principal, Depends(require(Permission.JOBS_CREATE))]
Reader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
Svc = Annotated[Services, Depends(services)]

UPLOAD_PATHS = ("/api/v1/files",)
UPLOADS = "uploads"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def safe_name(filename: str | None) -> str:
    """The upload's name in seed 002's path alphabet (a-z, 0-9, '_', '.', '-'), never hidden."""
    name = _UNSAFE.sub("_", filename or "upload").strip("._") or "upload"
    return name[:120]


UPLOADED = {
    "success": True,
    "data": {
        "filePath": "uploads/6f1c2a9e0b7d4c3a8e5f1a2b3c4d5e6f/reviews.csv",
        "fileName": "reviews.csv",
        "size": 2048576,
        "uploadedAt": "2025-06-15T10:30:00.000000+00:00",
    },
    "timestamp": "2025-06-15T10:30:00.000Z",
}


@router.post(
    "/files",
    status_code=201,
    summary="Upload a file for file_processing or security_scan",
    openapi_extra=UPLOAD_BODY,
    responses=ex.example(201, UPLOADED)
    | ex.example(413, ex.CANONICAL_ERROR | {"details": {"code": "INVALID_UPLOAD", "field": "file"}}),
)
async def upload_file(svc: Svc, principal: Creator, request: Request) -> dict[str, Any]:
    """Streams the multipart field `file` to the data directory (CONVEYOR_MAX_UPLOAD_BYTES at
    most) and answers with its `filePath`, to pass in a job's data as is."""
    data_dir = Path(svc.settings.data_dir)
    token = secrets.token_hex(16)
    folder = data_dir / UPLOADS / token
    folder.mkdir(parents=True)
    incoming = folder / ".incoming"
    try:
        received = await receive_file(
            request, file_field="file", target=incoming, max_bytes=svc.settings.max_upload_bytes
        )
        if not received.has_file:
            raise UploadRefused(400, "No file uploaded: send it in the multipart field 'file'")
        name = safe_name(received.filename)
        incoming.rename(folder / name)
    except UploadRefused as exc:
        _remove(folder)
        raise ApiError(exc.status, "INVALID_UPLOAD", exc.message, field="file") from None
    except BaseException:
        _remove(folder)
        raise
    file_path = f"{UPLOADS}/{token}/{name}"
    return ok({"filePath": file_path, "fileName": name, "size": received.size, "uploadedAt": utc_now().isoformat()})


def _remove(folder: Path) -> None:
    for child in folder.iterdir():
        child.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


@router.get(
    "/jobs/{job_id}/download",
    summary="Download a data_export's file",
    response_model=None,
    responses=ex.example(410, ex.CANONICAL_ERROR | {"details": {"code": "EXPORT_EXPIRED"}})
    | {200: {"content": {t: {"example": "(the export file)"} for t in MEDIA_TYPES.values()}}},
)
async def download(svc: Svc, principal: Reader, job_id: str) -> FileResponse:
    """The export a completed data_export job wrote, while it is kept (as long as the job:
    its queue's retention of completed jobs, 24 hours by default)."""
    job = await svc.engine.get(parse_job_id(job_id), visible_to=principal.visibility)
    if job.kind != "data_export":
        raise ApiError(400, "NOT_DOWNLOADABLE", "only a data_export job has a file to download", jobId=str(job.id))
    if job.status is not Status.COMPLETED or not isinstance(job.result, dict):
        raise ApiError(409, "EXPORT_NOT_READY", "the export is not complete", currentStatus=job.status.value)
    file_format = str(job.result.get("format"))
    path = export_path(Path(svc.settings.data_dir), job.id, file_format)
    expires = job.result.get("expiresAt")
    if expires and datetime.fromisoformat(expires) < utc_now():
        path.unlink(missing_ok=True)
        raise ApiError(410, "EXPORT_EXPIRED", "the export has expired; run the export again")
    if file_format not in MEDIA_TYPES or not path.is_file():
        raise ApiError(410, "EXPORT_EXPIRED", "the export's file is no longer kept; run the export again")
    return FileResponse(path, media_type=MEDIA_TYPES[file_format], filename=str(job.result.get("fileName")))
