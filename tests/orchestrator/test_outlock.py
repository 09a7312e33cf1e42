"""One sweep per output folder: a second one is refused naming the holder; a dead one's lock is
taken over. Uses real processes (the lock is a kernel ``flock``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from orchestrator.outlock import LOCK_FILE, OutDirBusy, OutDirLock, read_holder

HOLD = """
import sys, time
from orchestrator.outlock import OutDirLock
lock = OutDirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(out, env=None):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_sweep_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.sweep",
                "quickstart",
                "search.trials=1",
                "--out",
                str(out),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert code.returncode == 2, code.stderr[-2000:]
        assert f"sweep pid {proc.pid}" in code.stderr and "another --out" in code.stderr
        assert not (out / "sweep.json").exists()  # the refused sweep wrote nothing
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_dead_sweep_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    proc = _holder(out)
    with pytest.raises(OutDirBusy, match=f"pid {proc.pid}"):
        OutDirLock(out).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(out)["pid"] == proc.pid  # the dead sweep's record is still there
    with caplog.at_level("WARNING"), OutDirLock(out):
        assert read_holder(out)["pid"] == os.getpid()
        assert "dead" in caplog.text
    with OutDirLock(out):  # released on exit: taken again at once
        pass


def test_lock_file_records_pid_host_and_start(tmp_path):
    with OutDirLock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
        assert time.strptime(holder["started"], "%Y-%m-%dT%H:%M:%SZ")
