"""The conveyor command against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", url)
    return url


def test_migrate_enqueue_show_cancel_and_stats(db: str) -> None:
    migrated = runner.invoke(app, ["migrate"])
    assert migrated.exit_code == 0 and "revision 0001" in migrated.output
    enqueued = runner.invoke(app, ["enqueue", "sleep", "--data", '{"seconds": 5}', "--priority", "9"])
    assert enqueued.exit_code == 0, enqueued.output
    job = json.loads(enqueued.output)
    assert (job["kind"], job["status"], job["priority_class"]) == ("sleep", "pending", "critical")
    shown = json.loads(runner.invoke(app, ["show", job["id"]]).output)
    assert shown["id"] == job["id"]
    assert json.loads(runner.invoke(app, ["cancel", job["id"]]).output)["status"] == "cancelled"
    assert json.loads(runner.invoke(app, ["stats"]).output) == {"cancelled": 1}


def test_invalid_input_exits_non_zero_naming_the_field(db: str) -> None:
    result = runner.invoke(app, ["enqueue", "sleep", "--data", '{"seconds": -1}'])
    assert result.exit_code == 1
    error = json.loads(result.stderr)
    assert error["error"] == "INVALID_JOB_DATA" and error["errors"][0]["field"] == "seconds"
    assert runner.invoke(app, ["enqueue", "sleep", "--data", "{not json"]).exit_code == 2
    unknown = runner.invoke(app, ["enqueue", "nope"])
    assert unknown.exit_code == 1 and "INVALID_JOB_TYPE" in unknown.stderr


def test_show_unknown_job_is_an_error(db: str) -> None:
    result = runner.invoke(app, ["show", "00000000-0000-0000-0000-000000000000"])
    assert result.exit_code == 1 and "JOB_NOT_FOUND" in result.stderr
