"""The predictions family (seed 004) over HTTP, on SQLite and PostgreSQL, with a real worker:
upload CSV and XLSX, per-row errors with their line numbers, a missing column, the detailed
view, quick status, list, results (JSON, CSV, XLSX), cancel while processing, delete, and
another organisation's 404 on every route."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter
from conftest import ApiHarness, api_harness, eventually, running_worker
from python_calamine import CalamineWorkbook

HEADER = (
    "Company Symbol,Company Name,Sector,Fiscal Year,Market Cap,Total Assets,Total Liabilities,Current Assets,"
    "Current Liabilities,Retained Earnings,EBIT,Revenue,Net Income,Net Income Prior,Funds From Operations"
)
# Amounts in dollars (the default unit): ACME's worked example (tests/test_predictions_scoring.py)
# in millions, so Z = 3.825 and O = -8.67647809.
ACME = "ACME,Acme Corp,Manufacturing,2023,900e6,1000e6,400e6,500e6,200e6,300e6,150e6,1200e6,100e6,80e6,140e6"
BUST = "BUST,Bust Services,Services,2023,5e6,100e6,120e6,30e6,60e6,-50e6,-10e6,80e6,-15e6,-5e6,-8e6"
# Lines 1 (header) to 9 of an annual upload: two good rows, five errors, one blank line.
MIXED = "\n".join(
    [
        HEADER,
        ACME,  # line 2
        "TEST123,Test,,2023,1,1,1,1,1,1,1,1,1,,",  # line 3: no sector
        "INVALID,Bad Cap,Tech,2023,n/a,1,1,1,1,1,1,1,1,,",  # line 4
        "NEG,Negative,Tech,2023,-10,1,1,1,1,1,1,1,1,,",  # line 5
        '"ZERO","Zero, Inc.",Tech,2023,1,0,1,1,1,1,1,1,1,,',  # line 6
        BUST,  # line 7
        "",  # line 8: blank, skipped
        "LOSS,Minus Assets,Tech,2023,1,-5,1,1,1,1,1,1,1,,",  # line 9
    ]
)


@contextlib.asynccontextmanager
async def harness(database_url: str, **settings: Any) -> AsyncIterator[ApiHarness]:
    async with api_harness(database_url, **settings) as api:
        yield api


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[ApiHarness]:
    async with harness(database_url) as h:
        yield h


async def upload(
    api: ApiHarness,
    headers: dict[str, str],
    content: bytes | str,
    *,
    name: str = "annual.csv",
    period: str = "annual",
    fields: dict[str, str] | None = None,
    expect: int = 202,
) -> dict[str, Any]:
    data = content.encode() if isinstance(content, str) else content
    response = await api.client.post(
        f"/api/v1/predictions/{period}/bulk-upload-async",
        files={"file": (name, data, "application/octet-stream")},
        data=fields or {},
        headers=headers,
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def finished(api: ApiHarness, job_id: str) -> dict[str, Any]:
    await api.conveyor.engine.wait(uuid.UUID(job_id), timeout=60)
    response = await api.client.get(f"/api/v1/predictions/jobs/{job_id}?include_errors=true", headers=api.admin)
    assert response.status_code == 200, response.text
    return dict(response.json()["job"])


@pytest.fixture(autouse=True)
async def admin_key(api: ApiHarness) -> None:
    api.admin = await api.key("admin", org="org-a")  # type: ignore[attr-defined]


# --- upload and score ----------------------------------------------------------------------------


async def test_csv_upload_is_scored_with_row_errors_by_line_number(api: ApiHarness) -> None:
    user = ApiHarness.jwt(sub="alice", org="org-a")
    created = await upload(api, user, MIXED, name="annual_predictions_9_rows.csv")
    assert created["success"] is True and created["status"] == "pending" and created["job_type"] == "annual"
    assert created["file_info"] == {
        "original_filename": "annual_predictions_9_rows.csv",
        "file_size": len(MIXED.encode()),
        "file_size_mb": 0.0,
        "file_format": "csv",
    }
    async with running_worker(api.conveyor):
        job = await finished(api, created["job_id"])

    assert job["status"] == "completed" and job["job_type"] == "annual"
    assert job["file_info"]["original_filename"] == "annual_predictions_9_rows.csv"
    assert job["progress"] == {
        "total_rows": 7,
        "processed_rows": 7,
        "successful_rows": 2,
        "failed_rows": 5,
        "progress_percentage": 100.0,
        "remaining_rows": 0,
    }
    assert job["errors"] == {
        "has_errors": True,
        "error_message": None,
        "error_details": {
            "errors": [
                {"row": 3, "company_symbol": "TEST123", "error": "Missing required field: sector"},
                {"row": 4, "company_symbol": "INVALID", "error": "Invalid market cap value"},
                {"row": 5, "company_symbol": "NEG", "error": "Invalid market cap value"},
                {"row": 6, "company_symbol": "ZERO", "error": "Invalid total assets value"},
                {"row": 9, "company_symbol": "LOSS", "error": "Invalid total assets value"},
            ],
            "truncated": False,
        },
        "error_count": 5,
    }
    assert job["context"] == {"user_id": "alice", "organization_id": "org-a", "created_by": "Test alice"}
    assert job["celery_info"]["task_id"] == job["id"] and job["celery_info"]["celery_status"] == "SUCCESS"
    performance = job["performance"]
    assert performance["processing_time_seconds"] >= 0 and performance["estimated_completion_time"] is None
    assert {"created_at", "started_at", "completed_at", "updated_at"} == set(job["timestamps"])
    assert all(v.endswith("Z") for v in job["timestamps"].values())

    summary = job["summary"]
    assert summary["by_risk_level"] == {"low": 1, "medium": 0, "high": 0, "critical": 1}
    assert summary["by_zone"] == {"safe": 1, "grey": 0, "distress": 1}
    assert [c["company_symbol"] for c in summary["riskiest_companies"]] == ["BUST", "ACME"]

    results = (await api.client.get(f"/api/v1/predictions/jobs/{job['id']}/results", headers=user)).json()
    assert results["total"] == 2 and results["has_more"] is False
    acme, bust = results["results"]
    assert (acme["row"], acme["company_symbol"], acme["company_name"]) == (2, "ACME", "Acme Corp")
    assert acme["altman_z_score"] == pytest.approx(3.825) and acme["zone"] == "safe"
    assert acme["ohlson_o_score"] == pytest.approx(-8.67647809, abs=1e-6) and acme["risk_level"] == "low"
    assert (bust["row"], bust["altman_model"], bust["risk_level"]) == (7, "Z''", "critical")


async def test_errors_are_left_out_unless_asked_for(api: ApiHarness) -> None:
    created = await upload(api, api.admin, MIXED)
    async with running_worker(api.conveyor):
        await api.conveyor.engine.wait(uuid.UUID(created["job_id"]), timeout=60)
    job = (await api.client.get(f"/api/v1/predictions/jobs/{created['job_id']}", headers=api.admin)).json()["job"]
    assert job["errors"]["error_details"] is None and job["errors"]["error_count"] == 5
    errors = await api.client.get(
        f"/api/v1/predictions/jobs/{created['job_id']}/results?rows=errors", headers=api.admin
    )
    assert [e["row"] for e in errors.json()["results"]] == [3, 4, 5, 6, 9]


def xlsx_upload(rows: list[list[Any]]) -> bytes:
    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = workbook.add_worksheet("Q3")
    for i, row in enumerate(rows):
        sheet.write_row(i, 0, row)
    workbook.close()
    return out.getvalue()


async def test_xlsx_quarterly_upload_detected_by_content(api: ApiHarness) -> None:
    header = [
        "company_symbol", "sector", "fiscal_quarter", "market_cap", "total_assets", "total_liabilities",
        "current_assets", "current_liabilities", "retained_earnings", "ebit", "revenue", "net_income",
    ]  # fmt: skip
    content = xlsx_upload(
        [
            header,
            ["ACME", "Manufacturing", "2024-q3", 900e6, 1000e6, 400e6, 500e6, 200e6, 300e6, 150e6, 1200e6, 100e6],
            ["OOPS", "Tech", "2024Q5", 1, 1, 1, 1, 1, 1, 1, 1, 1],
        ]
    )
    created = await upload(api, api.admin, content, name="quarterly_data.csv", period="quarterly")
    assert created["file_info"]["file_format"] == "xlsx" and created["job_type"] == "quarterly"
    async with running_worker(api.conveyor):
        job = await finished(api, created["job_id"])
    assert job["status"] == "completed" and job["job_type"] == "quarterly"
    assert job["errors"]["error_details"]["errors"] == [
        {"row": 3, "company_symbol": "OOPS", "error": "Invalid fiscal quarter value"}
    ]
    results = (await api.client.get(f"/api/v1/predictions/jobs/{job['id']}/results", headers=api.admin)).json()
    (acme,) = results["results"]
    # quarterly flows as reported: the same ratios as the annual worked example
    assert acme["fiscal_quarter"] == "2024Q3" and acme["altman_z_score"] == pytest.approx(3.825)


async def test_a_file_missing_required_columns_fails_at_once_naming_them(api: ApiHarness) -> None:
    content = "company_symbol,sector,market_cap,total_assets\nA,Tech,1,1\n"
    created = await upload(api, api.admin, content)
    async with running_worker(api.conveyor):
        job = await finished(api, created["job_id"])
    assert job["status"] == "failed"
    assert job["errors"]["error_message"] == (
        "Missing required columns: total_liabilities, current_assets, current_liabilities, retained_earnings, "
        "ebit, revenue, net_income"
    )
    assert job["celery_info"]["celery_status"] == "FAILURE"
    assert job["celery_info"]["celery_meta"]["attempt"] == 1  # not retried: it cannot succeed


async def test_uploads_that_are_refused(database_url: str) -> None:
    async with harness(database_url, max_upload_bytes=4096) as api:
        admin = await api.key("admin", org="org-a")
        too_big = await upload(api, admin, "x" * 5000, expect=413)
        assert too_big == {"detail": "File too large: the limit is 0.00390625 MB"}
        assert (await upload(api, admin, b"\x89PNG\r\n\x1a\n\x00\x00", name="x.csv", expect=400)) == {
            "detail": "Unsupported file type: upload a CSV or XLSX file"
        }
        assert (await upload(api, admin, b"", expect=400)) == {"detail": "The uploaded file is empty"}
        not_multipart = await api.client.post(
            "/api/v1/predictions/annual/bulk-upload-async", content=b"a,b", headers=admin
        )
        assert not_multipart.status_code == 400 and "multipart/form-data" in not_multipart.json()["detail"]
        wrong_field = await api.client.post(
            "/api/v1/predictions/annual/bulk-upload-async", files={"upload": ("a.csv", b"a,b\n")}, headers=admin
        )
        assert wrong_field.json() == {"detail": "No file uploaded: send it in the multipart field 'file'"}
        bad_option = await upload(api, admin, MIXED, fields={"amounts_in": "dozens"}, expect=400)
        assert bad_option["detail"].startswith("Invalid amounts_in")
        viewer = await api.key("viewer", org="org-a")
        assert (await upload(api, viewer, MIXED, expect=403))["detail"].startswith("viewer may not")
        # nothing refused was kept
        data_dir = Path(api.conveyor.settings.data_dir) / "predictions"
        assert not data_dir.exists() or not any(data_dir.iterdir())
        assert (await api.client.get("/api/v1/predictions/jobs", headers=admin)).json()["total"] == 0


async def test_amounts_in_millions_change_only_ohlson_size(api: ApiHarness) -> None:
    in_millions = MIXED.replace("e6", "")
    created = await upload(api, api.admin, in_millions, fields={"amounts_in": "millions"})
    async with running_worker(api.conveyor):
        await finished(api, created["job_id"])
    results = (await api.client.get(f"/api/v1/predictions/jobs/{created['job_id']}/results", headers=api.admin)).json()
    assert results["results"][0]["ohlson_o_score"] == pytest.approx(-8.67647809, abs=1e-6)


# --- exports -------------------------------------------------------------------------------------


async def test_results_export_as_csv_and_xlsx(api: ApiHarness) -> None:
    created = await upload(api, api.admin, MIXED)
    async with running_worker(api.conveyor):
        await finished(api, created["job_id"])
    base = f"/api/v1/predictions/jobs/{created['job_id']}/results"
    as_csv = await api.client.get(f"{base}?format=csv", headers=api.admin)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    lines = as_csv.text.splitlines()
    assert lines[0].startswith("row,company_symbol,company_name,sector,fiscal_year,altman_model,altman_z_score")
    assert [line.split(",")[1] for line in lines[1:]] == ["ACME", "BUST"]

    as_xlsx = await api.client.get(f"{base}?format=xlsx", headers=api.admin)
    assert as_xlsx.status_code == 200
    sheet = CalamineWorkbook.from_filelike(io.BytesIO(as_xlsx.content)).get_sheet_by_index(0).to_python()
    assert sheet[0][:2] == ["row", "company_symbol"] and [r[1] for r in sheet[1:]] == ["ACME", "BUST"]
    assert sheet[1][6] == pytest.approx(3.825)
    page = (await api.client.get(f"{base}?limit=1&offset=1", headers=api.admin)).json()
    assert [r["company_symbol"] for r in page["results"]] == ["BUST"] and page["total"] == 2
    assert (await api.client.get(f"{base}?limit=1001", headers=api.admin)).status_code == 400


# --- quick status and list ------------------------------------------------------------------------


async def test_quick_status_and_list_with_filters(api: ApiHarness) -> None:
    first = await upload(api, api.admin, MIXED)
    async with running_worker(api.conveyor):
        await api.conveyor.engine.wait(uuid.UUID(first["job_id"]), timeout=60)
    second = await upload(api, api.admin, MIXED, period="quarterly")  # stays pending: no worker now

    status = (await api.client.get(f"/api/v1/predictions/jobs/{first['job_id']}/status", headers=api.admin)).json()
    assert status == {
        "success": True,
        "job_id": first["job_id"],
        "status": "completed",
        "job_type": "annual",
        "progress_percentage": 100.0,
        "total_rows": 7,
        "processed_rows": 7,
        "successful_rows": 2,
        "failed_rows": 5,
        "estimated_completion_time": None,
        "error_message": None,
        "updated_at": status["updated_at"],
    }

    async def ids(query: str) -> list[str]:
        response = await api.client.get(f"/api/v1/predictions/jobs{query}", headers=api.admin)
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    assert await ids("") == [second["job_id"], first["job_id"]]  # newest first
    assert await ids("?status=completed") == [first["job_id"]]
    assert await ids("?status=pending&job_type=quarterly") == [second["job_id"]]
    assert await ids("?job_type=annual&status=pending") == []
    assert await ids("?limit=1") == [second["job_id"]]
    await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": 1}}, headers=api.admin)
    assert len(await ids("?limit=100")) == 2  # only bulk uploads
    too_many = await api.client.get("/api/v1/predictions/jobs?limit=101", headers=api.admin)
    assert too_many.status_code == 400 and set(too_many.json()) == {"detail"}
    bad_status = await api.client.get("/api/v1/predictions/jobs?status=running", headers=api.admin)
    assert bad_status.status_code == 400


# --- cancel and delete ---------------------------------------------------------------------------


def big_csv(rows: int) -> str:
    body = "".join(
        f"S{i},Company {i},Technology,2023,{900 + i % 500},1000,{400 + i % 300},500,200,300,150,1200,100,80,140\n"
        for i in range(rows)
    )
    return HEADER + "\n" + body


async def test_cancel_while_processing_ends_failed_and_delete_waits_for_it(database_url: str) -> None:
    async with harness(database_url, predictions_chunk_rows=200) as api:
        admin = await api.key("admin", org="org-a")
        created = await upload(api, admin, big_csv(150_000), name="big.csv")
        job_id = created["job_id"]
        base = f"/api/v1/predictions/jobs/{job_id}"
        async with running_worker(api.conveyor):

            async def processing() -> bool:
                status = (await api.client.get(f"{base}/status", headers=admin)).json()
                return status["status"] == "processing" and status["processed_rows"] > 0

            await eventually(processing, timeout=30)
            refused = await api.client.delete(base, headers=admin)
            assert refused.status_code == 400
            assert refused.json() == {
                "detail": "Cannot delete job that is currently processing. "
                "Please cancel the job first or wait for it to complete."
            }
            active = (await api.client.get(base, headers=admin)).json()["job"]
            assert active["status"] == "processing"
            assert active["performance"]["rows_per_second"] > 0
            assert active["performance"]["estimated_completion_seconds"] >= 0
            assert active["celery_info"]["celery_status"] == "STARTED"

            cancelled = await api.client.post(f"{base}/cancel", headers=admin)
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json() == {
                "success": True,
                "message": f"Job {job_id} cancelled successfully",
                "cancelled_job": {
                    "id": job_id,
                    "status": "failed",
                    "job_type": "annual",
                    "original_filename": "big.csv",
                    "celery_cancelled": True,
                },
            }
        job = (await api.client.get(base, headers=admin)).json()["job"]
        assert job["status"] == "failed" and job["errors"]["error_message"] == "Job cancelled by user"
        assert 0 < job["progress"]["processed_rows"] < 150_000
        assert job["celery_info"]["celery_status"] == "REVOKED" and job["timestamps"]["completed_at"]
        again = await api.client.post(f"{base}/cancel", headers=admin)
        assert again.json() == {
            "detail": "Cannot cancel job with status 'failed'. Only pending or processing jobs can be cancelled."
        }

        workspace = Path(api.conveyor.settings.data_dir) / "predictions"
        assert any(workspace.iterdir())
        deleted = await api.client.delete(base, headers=admin)
        assert deleted.json() == {
            "success": True,
            "message": f"Job {job_id} deleted successfully",
            "deleted_job": {"id": job_id, "status": "failed", "job_type": "annual", "original_filename": "big.csv"},
        }
        assert not any(workspace.iterdir()), "the upload and results stay behind"
        assert (await api.client.get(base, headers=admin)).json() == {"detail": "Job not found or access denied"}
        trail = await api.client.get("/api/v1/audit", params={"object_id": job_id}, headers=admin)
        actions = [r["action"] for r in trail.json()["data"]["records"]]
        assert actions == ["job.created", "job.cancelled", "job.deleted"]


async def test_a_pending_job_is_cancelled_at_once_and_deleted_with_its_file(api: ApiHarness) -> None:
    created = await upload(api, api.admin, MIXED, name="annual_data.csv")
    base = f"/api/v1/predictions/jobs/{created['job_id']}"
    cancelled = (await api.client.post(f"{base}/cancel", headers=api.admin)).json()["cancelled_job"]
    assert cancelled["status"] == "failed" and cancelled["celery_cancelled"] is True
    other = await upload(api, api.admin, MIXED)
    deleted = await api.client.delete(f"/api/v1/predictions/jobs/{other['job_id']}", headers=api.admin)
    assert deleted.json()["deleted_job"]["status"] == "pending"
    remaining = list((Path(api.conveyor.settings.data_dir) / "predictions").iterdir())
    assert len(remaining) == 1  # the cancelled job's upload; the deleted one's is gone


async def test_a_completed_job_cannot_be_cancelled(api: ApiHarness) -> None:
    created = await upload(api, api.admin, MIXED)
    async with running_worker(api.conveyor):
        await api.conveyor.engine.wait(uuid.UUID(created["job_id"]), timeout=60)
    response = await api.client.post(f"/api/v1/predictions/jobs/{created['job_id']}/cancel", headers=api.admin)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Cannot cancel job with status 'completed'. Only pending or processing jobs can be cancelled."
    }


# --- access ------------------------------------------------------------------------------------------


async def test_other_organisations_and_other_jobs_are_not_found_on_every_route(api: ApiHarness) -> None:
    alice = ApiHarness.jwt(sub="alice", org="org-a")
    created = await upload(api, alice, MIXED)
    job_id = created["job_id"]
    echo = await api.client.post("/api/v1/jobs", json={"type": "t.echo", "data": {"value": 1}}, headers=alice)
    echo_id = echo.json()["data"]["jobId"]
    routes = [
        ("GET", "/api/v1/predictions/jobs/{}"),
        ("GET", "/api/v1/predictions/jobs/{}?include_errors=true"),
        ("GET", "/api/v1/predictions/jobs/{}/status"),
        ("GET", "/api/v1/predictions/jobs/{}/results"),
        ("GET", "/api/v1/predictions/jobs/{}/results?format=csv"),
        ("DELETE", "/api/v1/predictions/jobs/{}"),
        ("POST", "/api/v1/predictions/jobs/{}/cancel"),
    ]
    outsiders = {
        "org-b admin": await api.key("admin", org="org-b"),
        "org-b user with alice's id": ApiHarness.jwt(sub="alice", org="org-b"),
        "org-a user bob": ApiHarness.jwt(sub="bob", org="org-a"),
    }
    for who, headers in outsiders.items():
        for method, path in routes:
            for target in (job_id, echo_id, str(uuid.uuid4()), "not-a-uuid"):
                response = await api.client.request(method, path.format(target), headers=headers)
                assert (response.status_code, response.json()) == (
                    404,
                    {"detail": "Job not found or access denied"},
                ), f"{who}: {method} {path.format(target)}"
        listed = (await api.client.get("/api/v1/predictions/jobs", headers=headers)).json()
        assert listed["jobs"] == [] and listed["total"] == 0, who
    # the job is untouched, and its owner, an org-a admin and a super admin see it
    for headers in (alice, api.admin, await api.key("super_admin", org="org-z")):
        response = await api.client.get(f"/api/v1/predictions/jobs/{job_id}", headers=headers)
        assert response.json()["job"]["status"] == "pending"
