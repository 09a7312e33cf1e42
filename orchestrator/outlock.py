"""One sweep per output folder: a lock file that names its holder.

Two sweeps writing one ``--out`` would interleave trial ledgers, result tables and MLflow runs.
The sweep holds ``<out>/.sweep.lock`` for its whole run: an exclusive ``flock`` (released by the
kernel when the holder dies, however it dies) on a file that records the holder's pid, host,
start time and command line, so a refused second sweep can say who holds the folder. A lock
file left by a dead sweep is simply taken over: nobody holds its ``flock`` any more.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

LOCK_FILE = ".sweep.lock"


class OutDirBusy(RuntimeError):
    """The output folder is held by another running sweep; ``str()`` names the holder."""


def read_holder(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last holder recorded in the folder's lock file (None if there is none)."""
    try:
        return json.loads((Path(out_dir) / LOCK_FILE).read_text() or "null")
    except (OSError, json.JSONDecodeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutDirLock:
    """``with OutDirLock(out): ...`` holds the output folder for the block (or raises)."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> Self:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutDirBusy(self._busy_message()) from None
        previous = read_holder(self.out_dir)
        if previous and previous.get("pid") and previous.get("pid") != os.getpid():
            here = previous.get("host") == socket.gethostname()
            state = "dead" if here and not _alive(int(previous["pid"])) else "no longer holding it"
            log.warning(
                "taking over the output folder lock of an earlier sweep (pid %s on %s, started %s;"
                " %s)",
                previous.get("pid"),
                previous.get("host"),
                previous.get("started"),
                state,
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def _busy_message(self) -> str:
        h = read_holder(self.out_dir) or {}
        who = (
            f"sweep pid {h.get('pid')} on host {h.get('host')}, started {h.get('started')} "
            f"({h.get('command') or 'command unknown'})"
            if h
            else "another process"
        )
        return (
            f"output folder {str(self.out_dir)!r} is in use by {who}. Two sweeps on one folder "
            "would corrupt it: wait for that sweep to finish (or stop it), or pass another --out."
        )

    def release(self) -> None:
        """Clear the holder record (a clean finish leaves nothing to take over), then unlock."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
