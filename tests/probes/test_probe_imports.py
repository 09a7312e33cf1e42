"""probes/ is usable from a notebook with torch alone: importing it pulls in no orchestration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("ray", "optuna", "mlflow", "hydra", "polars", "s3fs", "sklearn", "orchestrator")


def test_importing_probes_and_every_head_pulls_in_no_orchestration_library():
    code = (
        "import sys, probes\n"
        "for name in probes.PROBES.names(): probes.PROBES.get(name)\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
