"""Writing one store entry: sealed shards (the unit of resume), then a merge and the manifest.

A shard's files are written first and its ``done.json`` (counts, checksums, skipped clips)
last, so a process killed mid-shard leaves a shard that is simply not done. ``finalize``
verifies every shard while streaming it into the merged arrays and writes ``manifest.json``
after everything else; only then is the entry complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from typing import Any

import numpy as np

from orchestrator.store.io import (
    CHUNK,
    ChecksumError,
    dumps,
    npy_bytes,
    npy_data_offset,
    npy_header,
)

log = logging.getLogger(__name__)

PARTS = "parts"
SMALL = ("cls", "padding_mask", "labels")


class ShardCorrupt(ChecksumError):
    """Sealed shards whose bytes changed; all of them were deleted and must be recomputed."""

    def __init__(self, shards: int | list[int], message: str) -> None:
        super().__init__(message)
        self.shards = sorted([shards] if isinstance(shards, int) else shards)
        self.shard = self.shards[0]


class EntryWriter:
    """Writes shards and the final arrays of one entry on an fsspec filesystem."""

    def __init__(self, fs: Any, entry: str, key: dict[str, str], format_version: int) -> None:
        self.fs = fs
        self.entry = entry.rstrip("/")
        self.key = key
        self.format_version = format_version
        self.is_local = "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol)

    def _shard_dir(self, i: int) -> str:
        return f"{self.entry}/{PARTS}/shard-{i:05d}"

    def _put(self, path: str, data: bytes) -> None:
        if self.is_local:
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def done_shards(self) -> dict[int, dict[str, Any]]:
        """Sealed shards by index (their ``done.json``); unsealed ones are ignored."""
        out: dict[int, dict[str, Any]] = {}
        self.fs.invalidate_cache(f"{self.entry}/{PARTS}")
        for path in self.fs.glob(f"{self.entry}/{PARTS}/shard-*/done.json"):
            try:
                with self.fs.open(path, "rb") as f:
                    info = json.loads(f.read())
            except (json.JSONDecodeError, OSError):
                continue
            out[int(info["shard"])] = info
        return out

    def write_shard(
        self,
        i: int,
        arrays: dict[str, np.ndarray | None],
        ids: list[str],
        skipped: list[dict[str, str]],
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write shard ``i`` (files first, ``done.json`` last)."""
        d = self._shard_dir(i)
        self.fs.makedirs(d, exist_ok=True)
        files = {}
        for name, arr in arrays.items():
            if arr is None:
                continue
            data = npy_bytes(arr)
            self._put(f"{d}/{name}.npy", data)
            files[name] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
            }
        done = {
            "shard": i,
            "n": len(ids),
            "ids": ids,
            "skipped": skipped,
            "files": files,
            **(extra or {}),
        }
        self._put(f"{d}/done.json", dumps(done))

    def drop_shard(self, i: int) -> None:
        if self.fs.exists(self._shard_dir(i)):
            self.fs.rm(self._shard_dir(i), recursive=True)

    def _read_part(self, i: int, info: dict[str, Any], name: str, bad: set[int]) -> bytes | None:
        """A shard file's bytes, or None (and ``i`` added to ``bad``) if missing or corrupt."""
        try:
            with self.fs.open(f"{self._shard_dir(i)}/{name}.npy", "rb") as f:
                data = f.read()
        except (FileNotFoundError, OSError):
            bad.add(i)
            return None
        if hashlib.sha256(data).hexdigest() != info["files"][name]["sha256"]:
            bad.add(i)
            return None
        return data

    def _fail(self, bad: set[int]) -> None:
        """Drop every bad shard found in this pass and say which: one recompute fixes all."""
        for i in bad:
            self.drop_shard(i)
        raise ShardCorrupt(
            sorted(bad),
            f"{self.entry}: shard(s) {sorted(bad)} fail their checksums; dropped, to be recomputed",
        )

    def finalize(self, n_shards: int, meta: dict[str, Any]) -> dict[str, Any]:
        """Merge shards ``0..n_shards-1`` into the entry's arrays; write the manifest last.

        Every shard is checked in the one pass; all corrupt ones are dropped together and
        reported in one :class:`ShardCorrupt`, so a single recompute repairs the entry.
        """
        shards = self.done_shards()
        missing = [i for i in range(n_shards) if i not in shards]
        if missing:
            raise RuntimeError(f"{self.entry}: shards {missing} are not done; cannot finalize.")
        order = [shards[i] for i in range(n_shards)]
        written: dict[str, dict[str, Any]] = {}
        filled = [s for s in order if s["n"] > 0]
        if not filled:
            raise RuntimeError(f"{self.entry}: no clip could be read; nothing to store.")
        bad: set[int] = set()
        small: dict[str, list[bytes | None]] = {}
        for name in SMALL:
            if name in filled[0]["files"]:
                small[name] = [self._read_part(s["shard"], s, name, bad) for s in filled]
        written["tokens"] = self._merge_tokens(filled, bad)
        if bad:
            self._fail(bad)
        for name, parts in small.items():
            arrays = [np.load(io.BytesIO(p)) for p in parts if p is not None]
            written[name] = self._write_whole(f"{name}.npy", npy_bytes(np.concatenate(arrays)))
        ids = [i for s in order for i in s["ids"]]
        written["ids"] = self._write_whole("ids.npy", npy_bytes(np.array(ids, dtype=str)))
        skipped = [x for s in order for x in s["skipped"]]
        manifest = {
            "format": self.format_version,
            "key": self.key,
            "n": len(ids),
            "n_shards": n_shards,
            "grid": filled[0].get("grid"),
            "arrays": written,
            "skipped": skipped,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **meta,
        }
        self._put(f"{self.entry}/manifest.json", dumps(manifest))
        self.fs.rm(f"{self.entry}/{PARTS}", recursive=True)
        return manifest

    def _write_whole(self, file: str, data: bytes) -> dict[str, Any]:
        self._put(f"{self.entry}/{file}", data)
        arr_shape, dtype, _ = npy_data_offset(io.BytesIO(data))
        return {
            "file": file,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "shape": list(arr_shape),
            "dtype": str(dtype),
        }

    def _merge_tokens(self, shards: list[dict[str, Any]], bad: set[int]) -> dict[str, Any]:
        """Stream the tokens of every shard into one ``.npy``, verifying each shard.

        A corrupt shard is added to ``bad`` and the merge goes on (to find every bad shard);
        the caller discards the result when ``bad`` is not empty.
        """
        first = shards[0]["files"]["tokens"]
        rest = tuple(first["shape"][1:])
        n = sum(s["files"]["tokens"]["shape"][0] for s in shards)
        shape = (n, *rest)
        dtype = np.dtype(first["dtype"])
        path = f"{self.entry}/tokens.npy"
        tmp = f"{path}.tmp-{os.getpid()}" if self.is_local else path
        out_hash = hashlib.sha256()
        size = 0
        with self.fs.open(tmp, "wb") as out:
            header = npy_header(shape, dtype)
            out.write(header)
            out_hash.update(header)
            size += len(header)
            for s in shards:
                i, meta = s["shard"], s["files"]["tokens"]
                if tuple(meta["shape"][1:]) != rest:
                    raise RuntimeError(
                        f"{self.entry}: shard {i} token shape {meta['shape']} "
                        f"differs from {list(shape)}; delete the entry."
                    )
                part_hash = hashlib.sha256()
                try:
                    f = self.fs.open(f"{self._shard_dir(i)}/tokens.npy", "rb")
                except (FileNotFoundError, OSError):
                    bad.add(i)
                    continue
                try:
                    with f:
                        head = f.read(CHUNK)
                        part_hash.update(head)
                        off = npy_data_offset(io.BytesIO(head))[2]
                        body = [head[off:]]
                        while True:
                            for chunk in body:
                                out.write(chunk)
                                out_hash.update(chunk)
                                size += len(chunk)
                            chunk = f.read(CHUNK)
                            if not chunk:
                                break
                            part_hash.update(chunk)
                            body = [chunk]
                except (ValueError, OSError, EOFError):  # a header that no longer parses
                    bad.add(i)
                    continue
                if part_hash.hexdigest() != meta["sha256"]:
                    bad.add(i)
        if bad:
            self.fs.rm(tmp)
        elif self.is_local:
            os.replace(tmp, path)
        return {
            "file": "tokens.npy",
            "sha256": out_hash.hexdigest(),
            "bytes": size,
            "shape": list(shape),
            "dtype": str(dtype),
        }
