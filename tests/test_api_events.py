"""GET /api/v1/jobs/{id}/events: a job followed as server-sent events from a real `conveyor
serve` (a stream needs a real server: the test transport reads whole answers), on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import own_database_url
from served import Served, conveyor_serve


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Served]:
    with (
        own_database_url(request.param, "conveyor_events", tmp_path, sqlite_template) as url,
        conveyor_serve(url, tmp_path) as server,
    ):
        yield server


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a text/event-stream, comment lines skipped."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


def test_a_job_is_followed_until_it_finishes(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.key('user')}"}
    created = httpx.post(
        f"{served.url}/api/v1/jobs", json={"type": "sleep", "data": {"seconds": 3}}, headers=headers, timeout=30
    )
    job_id = created.json()["data"]["jobId"]
    started = time.monotonic()
    seen: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{served.url}/api/v1/jobs/{job_id}/events", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = list(events(response))
    assert time.monotonic() - started < 20
    names = [name for name, _ in seen]
    assert names[-1] == "end" and set(names[:-1]) == {"job"}
    assert seen[-1][1] == {"id": job_id, "status": "completed"}
    jobs = [data for name, data in seen if name == "job"]
    assert all(j["id"] == job_id and "result" not in j for j in jobs)
    assert jobs[-1]["status"] == "completed"
    progress = [j["progress"] for j in jobs if j["status"] == "running"]
    assert len(progress) >= 2 and progress == sorted(progress), progress  # it moved, live
    # A finished job: its state, then the end, at once.
    with httpx.stream("GET", f"{served.url}/api/v1/jobs/{job_id}/events", headers=headers, timeout=30) as response:
        again = list(events(response))
    assert [name for name, _ in again] == ["job", "end"]


def test_an_unknown_or_invisible_job_is_404_and_no_credential_401(served: Served) -> None:
    mine = {"Authorization": f"Bearer {served.key('user')}"}
    created = httpx.post(f"{served.url}/api/v1/jobs", json={"type": "noop", "data": {}}, headers=mine, timeout=30)
    job_id = created.json()["data"]["jobId"]
    theirs = {"Authorization": f"Bearer {served.key('admin')}"}  # another organisation's admin
    assert httpx.get(f"{served.url}/api/v1/jobs/{job_id}/events", headers=theirs, timeout=30).status_code == 404
    missing = "01900000-0000-7000-8000-000000000000"
    assert httpx.get(f"{served.url}/api/v1/jobs/{missing}/events", headers=mine, timeout=30).status_code == 404
    assert httpx.get(f"{served.url}/api/v1/jobs/{job_id}/events", timeout=30).status_code == 401
