"""An inter-process file lock (POSIX ``flock``), used wherever two processes may build one thing.

Generation of the default datasets, staging, and the node-local copy of a store entry are all
"first one builds, the others wait and then read"; ``flock`` is released by the kernel when a
holder dies, so a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or shared) lock on ``path`` (created if missing) for the block."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def clear_stale_temps(root: str | os.PathLike, folder: str) -> int:
    """Remove ``root/.<folder>.tmp-*`` left by killed builders; call it holding the build lock.

    Whoever holds the folder's lock is the only builder, so every temp folder found is stale.
    """
    removed = 0
    for tmp in Path(root).glob(f".{folder}.tmp-*"):
        log.info("removing %s left by an interrupted build", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        removed += 1
    return removed
