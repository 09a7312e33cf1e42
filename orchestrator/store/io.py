"""Byte-level helpers of the embedding store: checksums, atomic writes, streamed ``.npy`` merges.

Kept apart from :mod:`orchestrator.store` so the store reads as policy (keys, completeness,
node-local copies) while this module holds the mechanics that must be exactly right: an
``.npy`` concatenation along axis 0 is the header of the result followed by the raw bytes of
every part, so shards are merged by streaming bytes, never by loading them, and hashed on the
way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

CHUNK = 8 << 20


class ChecksumError(RuntimeError):
    """A store file whose bytes do not match its manifest; it is never used."""


def sha256_stream(f: IO[bytes], into: IO[bytes] | None = None) -> tuple[str, int]:
    """Hash a readable stream (optionally copying it to ``into``); returns (hex, bytes)."""
    h = hashlib.sha256()
    n = 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
        if into is not None:
            into.write(chunk)
    return h.hexdigest(), n


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(s) for s in shape),
    }
    np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


def npy_data_offset(f: IO[bytes]) -> tuple[tuple[int, ...], np.dtype, int]:
    """Read an ``.npy`` header from ``f``; returns (shape, dtype, data offset)."""
    major, _ = np.lib.format.read_magic(f)
    read = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError("fortran-ordered arrays are not stored")
    return shape, dtype, f.tell()


def stream_concat(
    parts: Iterable[IO[bytes]], out: IO[bytes], shape: tuple[int, ...], dtype: np.dtype
) -> tuple[str, int]:
    """Write the ``.npy`` of the axis-0 concatenation of ``parts`` to ``out``; hash it."""
    h = hashlib.sha256()
    header = npy_header(shape, dtype)
    out.write(header)
    h.update(header)
    n = len(header)
    for f in parts:
        npy_data_offset(f)
        while chunk := f.read(CHUNK):
            out.write(chunk)
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def atomic_write_local(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
