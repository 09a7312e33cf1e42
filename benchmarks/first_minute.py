"""Dry-run time of ``full_benchmark`` and the rerun time of a finished tiny sweep (issue #22).

A dry run must stay a few seconds although it now builds every probe at every encoder width and
search corner; a rerun of a finished sweep should only verify. Both are measured as a user meets
them: ``python -m orchestrator.sweep`` in a fresh process, wall time and the process tree's CPU
time (this machine is shared, so wall time alone overstates the cost). Prints one table.
Usage: ``python benchmarks/first_minute.py``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time

TINY = [
    "quickstart", "encoder=[eat]", "dataset=[synth_control]", "probe=[linear]",
    "search.trials=2", "search.startup_trials=2", "search.grace_epochs=1", "final.seeds=[0]",
    "train.epochs=2", "ray.address=local",
]  # fmt: skip


def timed(args: list[str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the child tree, exit code, last output line) of one sweep command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return wall, cpu, done.returncode, lines[-1] if lines else ""


def main() -> int:
    rows = []
    wall, cpu, code, last = timed(["full_benchmark", "--dry-run", "--gpus", "8"])
    rows.append(("full_benchmark --dry-run", wall, cpu, code, last))
    with tempfile.TemporaryDirectory() as tmp:
        out = ["--out", f"{tmp}/out"]
        for label in ("tiny sweep, first run", "tiny sweep, rerun (finished)"):
            wall, cpu, code, last = timed([*TINY, *out])
            rows.append((label, wall, cpu, code, last))
    print(f"{'command':<32} {'wall s':>8} {'CPU s':>8} {'exit':>5}  last line")
    for label, wall, cpu, code, last in rows:
        print(f"{label:<32} {wall:>8.1f} {cpu:>8.1f} {code:>5}  {last[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
