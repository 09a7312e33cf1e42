"""An output folder on S3: the driver works in a local mirror and syncs it.

The results table, the per-study parquet files, the report and the sqlite MLflow store are
written by the driver with ordinary file APIs (atomic renames, sqlite locks), which object
stores do not offer. So when the output folder is ``s3://...`` the driver pulls it into a local
mirror (:func:`orchestrator.paths.mirror_dir`) on start, which is what makes a re-submitted job
on another machine resume, and pushes every new or changed file back after each study and at
the end. Ray Tune state is not mirrored: it is written to ``<output>/tune`` on S3 by Tune itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SKIP = ("tune", ".locks")


class OutputSync:
    """Pull/push between ``url`` (fsspec URL) and the local folder ``local``."""

    def __init__(self, url: str, local: Path) -> None:
        import fsspec

        self.url = url.rstrip("/")
        self.local = Path(local)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")
        self._pushed: dict[str, tuple[int, int]] = {}

    def pull(self) -> int:
        """Copy every remote file missing or different here; return how many were copied."""
        self.local.mkdir(parents=True, exist_ok=True)
        if not self.fs.exists(self.root):
            return 0
        copied = 0
        for path, info in self.fs.find(self.root, detail=True).items():
            rel = path[len(self.root) :].lstrip("/")
            if not rel or rel.split("/", 1)[0] in SKIP:
                continue
            dest = self.local / rel
            size = int(info.get("size") or 0)
            if dest.exists() and dest.stat().st_size == size:
                self._pushed[rel] = self._stamp(dest)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".pull")
            self.fs.get_file(path, str(tmp))
            os.replace(tmp, dest)
            self._pushed[rel] = self._stamp(dest)
            copied += 1
        if copied:
            log.info("pulled %d files of %s into %s", copied, self.url, self.local)
        return copied

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns

    def push(self) -> int:
        """Upload every local file that is new or changed since the last push or pull."""
        pushed = 0
        for path in sorted(self.local.rglob("*")):
            if not path.is_file() or path.name.endswith(
                (".tmp", ".pull", "-journal", "-wal", "-shm")
            ):
                continue
            rel = path.relative_to(self.local).as_posix()
            if rel.split("/", 1)[0] in SKIP:
                continue
            stamp = self._stamp(path)
            if self._pushed.get(rel) == stamp:
                continue
            self._upload(path, f"{self.root}/{rel}")
            self._pushed[rel] = stamp
            pushed += 1
        if pushed:
            log.info("pushed %d files to %s", pushed, self.url)
        return pushed

    def _upload(self, path: Path, remote: str) -> None:
        if path.suffix != ".db":
            self.fs.put_file(str(path), remote)
            return
        import sqlite3
        import tempfile

        # a consistent copy of a sqlite file that may be written while we read it
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / path.name
            src, dst = sqlite3.connect(path), sqlite3.connect(copy)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            self.fs.put_file(str(copy), remote)


def output_sync(cfg) -> OutputSync | None:
    """The sync of a config whose output folder is on S3, else None."""
    return OutputSync(cfg.out_url, cfg.out_dir) if cfg.out_url else None
