"""GET /api/v1/jobs/{id}/events: a job followed as server-sent events from a real `conveyor
serve` (a stream needs a real server: the test transport reads whole answers), on SQLite and
PostgreSQL."""

from __future__ import annotations

import itertools
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


class _Listening:
    """GET /api/v1/events read in a thread: (monotonic time, event, data) as they come."""

    def __init__(self, url: str, key: str) -> None:
        import threading

        self.seen: list[tuple[float, str, dict[str, Any]]] = []
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._url, self._key = url, key
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self._key}"}
        try:
            with self._client.stream("GET", f"{self._url}/api/v1/events", headers=headers) as response:
                assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
                for name, data in events(response):
                    self.seen.append((time.monotonic(), name, data))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by close()

    def changes(self) -> list[tuple[float, list[str]]]:
        return [(at, data["topics"]) for at, name, data in self.seen if name == "change"]

    def wait_for(self, check: Any, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"not seen in {timeout}s: {self.seen}"
            time.sleep(0.05)

    def close(self) -> None:
        self._client.close()
        self._thread.join(timeout=10)


def test_the_change_feed_tells_a_caller_of_its_jobs_at_most_once_a_second(served: Served) -> None:
    """GET /api/v1/events: `ready`, then `change` events naming topics (never a job) when the
    caller's jobs are added or finish, coalesced to one a second; on PostgreSQL another
    organisation's caller hears nothing of them (SQLite announces other connections' commits
    without saying whose, so there every follower is told)."""
    mine_key, theirs_key = served.key("user"), served.key("admin")
    mine, theirs = _Listening(served.url, mine_key), _Listening(served.url, theirs_key)
    try:
        for feed in (mine, theirs):
            feed.wait_for(lambda feed=feed: [name for _, name, _ in feed.seen] == ["ready"])
        time.sleep(1.5)  # whatever the server itself committed while starting has been told
        quiet_since = len(theirs.changes())
        headers = {"Authorization": f"Bearer {mine_key}"}
        created = [
            httpx.post(f"{served.url}/api/v1/jobs", json={"type": "noop", "data": {}}, headers=headers, timeout=30)
            for _ in range(10)
        ]
        assert all(c.status_code == 201 for c in created)
        mine.wait_for(lambda: any("insert" in topics for _, topics in mine.changes()))
        mine.wait_for(lambda: any("finish" in topics for _, topics in mine.changes()))
        time.sleep(2.5)
        times = [at for at, _ in mine.changes()]
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), times  # coalesced
        assert all(set(data) == {"topics"} for _, name, data in mine.seen if name == "change")
        if served.database_url.startswith("postgresql"):
            assert theirs.changes()[quiet_since:] == [], theirs.seen
    finally:
        mine.close()
        theirs.close()
    assert httpx.get(f"{served.url}/api/v1/events", timeout=30).status_code == 401
    # the server ends a stream after close_after seconds (the dashboard reconnects at once)
    headers = {"Authorization": f"Bearer {mine_key}"}
    with httpx.stream("GET", f"{served.url}/api/v1/events?close_after=1", headers=headers, timeout=30) as response:
        assert [name for name, _ in events(response)] in (["ready", "end"], ["ready", "change", "end"])
