"""The embedding store: token maps cached once per (encoder, weights, front end, dataset, split).

Layout of an entry (local folder or any fsspec URL such as ``s3://bucket/prefix``)::

    <dataset>/<dataset_version>/<split>/<encoder>-<digest>/
        parts/shard-00000/{tokens,cls,padding_mask,labels}.npy + ids.json + done.json
        tokens.npy cls.npy padding_mask.npy labels.npy ids.npy     (merged, fp16 tokens)
        manifest.json                                              (written last)

Extraction writes shards (the unit of resume, each sealed by its ``done.json``); finalizing
streams them into one array per field, hashes every file, and writes ``manifest.json`` last:
an entry without a manifest is never complete. Reads are ``np.load(mmap_mode="r")`` of a
node-local copy: the store itself when it is a local folder (verified once per node; the stamp
lives in ``cache_dir`` so a read-only store works), otherwise one copy per node under
``cache_dir`` (``$UNMUTE_NODE_CACHE``), made once under a file lock and shared read-only by
every trial on the node. The "verified" stamp holds the manifest digest and each file's size,
mtime, inode and ctime, so bytes rewritten in place (even with the mtime restored) are hashed
again. A file whose checksum fails is never used: the entry is invalidated (its manifest renamed
aside) so the next extraction recomputes it (a trial that finds it raises
``orchestrator.trial.StoreEntryLost``, and the driver recomputes it within the same sweep).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from orchestrator.datasets.lock import file_lock
from orchestrator.store.io import ChecksumError, dumps, sha256_stream
from orchestrator.store.writer import EntryWriter

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
ARRAYS = ("tokens", "cls", "padding_mask", "labels", "ids")


@dataclass(frozen=True)
class StoreKey:
    """Content key of one store entry; any field change is a different entry."""

    encoder: str
    weights_id: str
    frontend_id: str
    dataset: str
    dataset_version: str
    split: str
    layer: int = -1  # the encoder layer the tokens come from (-1: the last)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def relpath(self) -> str:
        def safe(s: str) -> str:
            return re.sub(r"[^A-Za-z0-9._+=-]", "_", s)

        return "/".join(
            (
                safe(self.dataset),
                safe(self.dataset_version),
                safe(self.split),
                f"{safe(self.encoder)}-{self.digest}",
            )
        )


@dataclass(frozen=True)
class StoredSplit:
    """One split read back from the store; arrays are read-only memory maps."""

    key: StoreKey
    tokens: np.ndarray
    cls: np.ndarray | None
    padding_mask: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    grid: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the node-local files the arrays map

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def identity(self) -> tuple[tuple[int, int, int], ...] | None:
        """Inode, ctime and size of every mapped file; None when one is gone.

        A cached split whose identity changed was rewritten (or damaged in place) since it
        was verified: load it again, which hashes it again."""
        try:
            return tuple((st.st_ino, st.st_ctime_ns, st.st_size) for st in map(os.stat, self.files))
        except OSError:
            return None

    @property
    def task(self) -> str:
        return str(self.meta.get("task", "multilabel" if self.labels.ndim == 2 else "multiclass"))

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.meta.get("skipped", []))

    def to_probe_data(self, task: str | None = None) -> Any:
        """The split as ``probes.ProbeData`` (imported lazily; arrays stay memory-mapped)."""
        from probes import ProbeData

        return ProbeData(
            tokens=self.tokens,
            labels=self.labels,
            task=task or self.task,
            cls=self.cls,
            padding_mask=self.padding_mask,
            grid=self.grid,
        )


class EmbeddingStore:
    """Content-keyed store of token maps; ``url`` is a local folder or an fsspec URL."""

    def __init__(self, url: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> None:
        self.url = os.fspath(url)
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.is_local = "file" in _protocols(self.fs)
        if self.is_local:
            self.root = os.path.abspath(self.root)
        default_cache = os.environ.get("UNMUTE_NODE_CACHE") or os.path.expanduser(
            "~/.cache/unmute-bench/store"
        )
        self.cache_dir = Path(cache_dir or default_cache)

    def __repr__(self) -> str:
        return f"EmbeddingStore({self.url!r})"

    def entry(self, key: StoreKey) -> str:
        return f"{self.root.rstrip('/')}/{key.relpath}"

    def manifest(self, key: StoreKey) -> dict[str, Any] | None:
        """The entry's manifest, or None while it is missing or unreadable (incomplete)."""
        path = f"{self.entry(key)}/{MANIFEST}"
        try:
            with self.fs.open(path, "rb") as f:
                m = json.loads(f.read())
        except (FileNotFoundError, json.JSONDecodeError, OSError):
            return None
        return m if m.get("format") == FORMAT and m.get("key") == asdict(key) else None

    def complete(self, key: StoreKey) -> bool:
        return self.manifest(key) is not None

    def writer(self, key: StoreKey) -> EntryWriter:
        return EntryWriter(self.fs, self.entry(key), key=asdict(key), format_version=FORMAT)

    def keys(self) -> list[dict[str, Any]]:
        """Keys of all complete entries (walks the store; for listings and benchmarks)."""
        out = []
        for path in self.fs.glob(f"{self.root.rstrip('/')}/*/*/*/*/{MANIFEST}"):
            with self.fs.open(path, "rb") as f:
                out.append(json.loads(f.read())["key"])
        return out

    def invalidate(self, key: StoreKey, reason: str) -> None:
        """Mark an entry incomplete (manifest renamed aside) so it is recomputed, not used."""
        src = f"{self.entry(key)}/{MANIFEST}"
        dst = f"{self.entry(key)}/manifest.invalid-{int(time.time())}.json"
        if self.fs.exists(src):
            self.fs.mv(src, dst)
            log.warning(
                "store entry %s set aside (%s): its manifest moved to %s; the entry is recomputed "
                "by the next extraction",
                self.entry(key),
                reason,
                dst,
            )
        else:
            log.warning("store entry %s invalidated (%s); it is recomputed", self.entry(key), reason)

    def delete(self, key: StoreKey) -> None:
        if self.fs.exists(self.entry(key)):
            self.fs.rm(self.entry(key), recursive=True)

    # -- reading -------------------------------------------------------------------------
    def verify(self, key: StoreKey) -> bool:
        """Check the node-local copy against the manifest; invalidate the entry if it fails."""
        try:
            self._local_copy(key)
        except ChecksumError as err:
            self.invalidate(key, str(err))
            return False
        return True

    def load(self, key: StoreKey) -> StoredSplit:
        """Memory-map the entry (node-local copy, verified once). Raises if incomplete."""
        manifest = self.manifest(key)
        if manifest is None:
            raise FileNotFoundError(
                f"store entry {key.relpath} is not complete in {self.url}; run extraction "
                "(orchestrator.extract.extract_split) for it first."
            )
        try:
            local = self._local_copy(key)
        except ChecksumError as err:
            self.invalidate(key, str(err))
            raise
        arrays, files = {}, []
        for name in ARRAYS:
            info = manifest["arrays"].get(name)
            arrays[name] = None if info is None else np.load(local / info["file"], mmap_mode="r")
            if info is not None:
                files.append(str(local / info["file"]))
        return StoredSplit(
            key=key,
            tokens=arrays["tokens"],
            cls=arrays["cls"],
            padding_mask=arrays["padding_mask"],
            labels=arrays["labels"],
            ids=arrays["ids"],
            grid=tuple(manifest["grid"]),  # type: ignore[arg-type]
            meta=manifest,
            files=tuple(files),
        )

    def load_many(self, keys: Sequence[StoreKey]) -> StoredSplit:
        """Several entries as one split (e.g. BirdSet ``train`` + ``train_mix0..4``).

        Token maps stay memory-mapped behind :class:`~orchestrator.store.concat.ConcatRows`;
        labels and ids (small) are concatenated. The grid and task must agree.
        """
        from orchestrator.store.concat import concat

        parts = [self.load(k) for k in keys]
        if len({p.grid for p in parts}) != 1 or len({p.task for p in parts}) != 1:
            raise ValueError(
                f"cannot combine splits with grids {[p.grid for p in parts]} and "
                f"tasks {[p.task for p in parts]}."
            )
        meta = {
            **parts[0].meta,
            "combined": [asdict(k) for k in keys],
            "n": sum(len(p) for p in parts),
            "skipped": [s for p in parts for s in p.skipped],
        }
        return StoredSplit(
            key=parts[0].key,
            tokens=concat([p.tokens for p in parts]),  # type: ignore[arg-type]
            cls=concat([p.cls for p in parts]),  # type: ignore[arg-type]
            padding_mask=concat([p.padding_mask for p in parts]),  # type: ignore[arg-type]
            labels=np.concatenate([np.asarray(p.labels) for p in parts]),
            ids=np.concatenate([np.asarray(p.ids) for p in parts]),
            grid=parts[0].grid,
            meta=meta,
            files=tuple(f for p in parts for f in p.files),
        )

    def _local_copy(self, key: StoreKey) -> Path:
        """A verified node-local folder of the entry (the entry itself for a local store)."""
        manifest = self.manifest(key)
        if manifest is None:
            raise FileNotFoundError(f"store entry {key.relpath} is not complete")
        stamp_body = dumps({"manifest": _digest(manifest)})
        if self.is_local:
            local = Path(self.entry(key))
            stamp = self.cache_dir / "verified" / f"{key.digest}-{_digest(manifest)[:16]}"
            with file_lock(self.cache_dir / "locks" / f"{key.digest}.lock"):
                if _stamp_ok(stamp, stamp_body, local, manifest):
                    return local
                for info in manifest["arrays"].values():
                    with open(local / info["file"], "rb") as f:
                        digest, size = sha256_stream(f)
                    _check(key, info, digest, size)
                stamp.parent.mkdir(parents=True, exist_ok=True)
                stamp.write_bytes(_stamp(stamp_body, local, manifest))
            return local
        local = self.cache_dir / "entries" / key.relpath
        stamp = local / ".verified"
        with file_lock(self.cache_dir / "locks" / f"{key.digest}.lock"):
            if _stamp_ok(stamp, stamp_body, local, manifest):
                return local
            tmp = local.with_name(f".{local.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            t0, total = time.perf_counter(), 0
            for info in manifest["arrays"].values():
                with (
                    self.fs.open(f"{self.entry(key)}/{info['file']}", "rb") as src,
                    open(tmp / info["file"], "wb") as dst,
                ):
                    digest, size = sha256_stream(src, into=dst)
                total += size
                try:
                    _check(key, info, digest, size)
                except ChecksumError:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                os.chmod(tmp / info["file"], 0o444)
            shutil.rmtree(local, ignore_errors=True)
            os.replace(tmp, local)
            stamp.write_bytes(_stamp(stamp_body, local, manifest))
            log.info(
                "copied %s to node cache (%.1f MB in %.1f s)",
                key.relpath,
                total / 1e6,
                time.perf_counter() - t0,
            )
        return local


def _protocols(fs: Any) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(dumps(manifest)).hexdigest()


def _check(key: StoreKey, info: dict[str, Any], digest: str, size: int) -> None:
    if digest != info["sha256"] or size != info["bytes"]:
        raise ChecksumError(
            f"store entry {key.relpath}: {info['file']} has sha256 {digest[:12]}... and {size} "
            f"bytes, the manifest says {info['sha256'][:12]}... and {info['bytes']}; the entry "
            "is invalidated and will be recomputed by the next extraction."
        )


def _stamp(body: bytes, local: Path, manifest: dict[str, Any]) -> bytes:
    """What a verification vouches for: the manifest digest and each file's identity.

    Size and mtime alone miss bytes rewritten in place with the mtime put back; the inode
    and the ctime (which no user call can set back) change with any write, rename or copy.
    """
    stats = {}
    for info in manifest["arrays"].values():
        st = os.stat(local / info["file"])
        stats[info["file"]] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
    return body + dumps(stats)


def _stamp_ok(stamp: Path, body: bytes, local: Path, manifest: dict[str, Any]) -> bool:
    """The copy was hashed against this manifest and no file was touched since."""
    try:
        return stamp.read_bytes() == _stamp(body, local, manifest)
    except OSError:
        return False
