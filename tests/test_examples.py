"""The README's examples run as written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.client import Client, TransportError
from conveyor.packs.calibration import CAUSES
from conveyor.packs.calibration import unavailable as calibration_unavailable

EXAMPLES = Path(__file__).parent.parent / "examples"
NEONATE = CAUSES["neonate"]


def test_quickstart_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'quick.db'}"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed {'texts': 2, 'words': 5}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(
    calibration_unavailable() is not None, reason=f"calibration cannot run here: {calibration_unavailable()}"
)
def test_calibration_client_example_against_conveyor_serve(tmp_path: Path) -> None:
    """examples/calibration_client.py, seed 003's client workflow, against a real `conveyor serve`
    (API and worker) on SQLite: it creates the job, reports progress, prints the result."""
    port = _free_port()
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'calib.db'}",
        "API_PORT": str(port),
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
        "CONVEYOR_PACKS": "calibration",
    }
    made = subprocess.run(
        [sys.executable, "-m", "conveyor", "apikey", "create", "--role", "operator"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    env["CONVEYOR_API_KEY"] = made.stdout.strip().splitlines()[-1]
    env["CONVEYOR_URL"] = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "conveyor", "serve"], env=env, stdout=log, stderr=log)
        try:
            with Client(env["CONVEYOR_URL"], retries=0) as client:
                deadline = time.monotonic() + 60
                while True:  # connection refused until the server listens
                    try:
                        client.health()
                        break
                    except TransportError:
                        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                        time.sleep(0.2)
            result = subprocess.run(
                [sys.executable, str(EXAMPLES / "calibration_client.py"), "--n-mcmc", "500", "--n-burn", "200"],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=60)
    assert result.returncode == 0, result.stderr + (tmp_path / "serve.log").read_text()[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("created ") and lines[0].endswith(": pending")
    assert any(line.startswith(("pending:", "running:")) for line in lines[1:]), result.stdout  # progress followed
    table = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in NEONATE}
    assert list(table) == list(NEONATE)
    assert table["other"][1] == table["other"][2] == "0.052"  # left out: its uncalibrated fraction, exactly
    assert float(table["sepsis_meningitis_inf"][2]) > float(table["sepsis_meningitis_inf"][1])  # calibration moved it
    assert "not calibrated: {'insilicova': ['congenital_malformation', 'other']}" in result.stdout
    assert any(line.startswith("log: ") and "calibration done" in line for line in lines)
