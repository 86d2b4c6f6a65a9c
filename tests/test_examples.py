"""The README's examples run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path / 'quick.db'}"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "completed {'texts': 2, 'words': 5}"
