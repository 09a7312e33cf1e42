"""Quickstart wall time and peak memory on this machine (issue #2).

Runs ``python -m orchestrator.sweep quickstart`` (plus any overrides) in a fresh output folder and
samples the resident memory of the whole process tree (driver, Ray's GCS/raylet, workers) every
0.5 s. Prints one table. Usage: ``python benchmarks/quickstart.py [overrides ...]``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time

import psutil


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """(RSS of the process tree, PSS-free approximation: RSS of the driver alone) in bytes."""
    total = 0
    procs = [proc]
    try:
        procs += proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    try:
        driver = proc.memory_info().rss
    except psutil.NoSuchProcess:
        driver = 0
    return total, driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", help="output folder (default: a fresh temporary folder)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="quickstart-bench-")
    cmd = [sys.executable, "-m", "orchestrator.sweep", "quickstart", *args.overrides, "--out", out]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak_tree = peak_driver = 0
    while proc.poll() is None:
        tree, driver = tree_rss(ps)
        peak_tree, peak_driver = max(peak_tree, tree), max(peak_driver, driver)
        time.sleep(0.5)
    wall = time.monotonic() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
    max_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"| {'measure':34s} | {'value':>12s} |")
    print(f"|{'-' * 36}|{'-' * 14}|")
    print(f"| {'exit code':34s} | {proc.returncode:>12d} |")
    print(f"| {'wall time (s)':34s} | {wall:>12.1f} |")
    print(f"| {'peak RSS, whole process tree (MiB)':34s} | {peak_tree / 2**20:>12.0f} |")
    print(f"| {'peak RSS, driver (MiB)':34s} | {peak_driver / 2**20:>12.0f} |")
    print(f"| {'max RSS of one child (MiB)':34s} | {max_child:>12.0f} |")
    print(f"output: {out}")


if __name__ == "__main__":
    main()
