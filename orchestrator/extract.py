"""Extraction: run a frozen encoder over a dataset split once and cache its token maps.

The split is cut into fixed shards of ``shard_size`` clips; each shard is embedded and sealed
in the store on its own, so a killed extraction resumes with the missing shards only. Every
clip is decoded, resampled to the encoder's rate and cropped or zero-padded to the dataset's
clip length (``spec.clip_seconds``; the true length goes to ``embed`` as ``lengths`` so the
padding mask marks the padded tokens). A clip that cannot be decoded is skipped, logged, and
listed with its error in the shard and in the manifest; the run goes on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.datasets import DatasetError, DatasetSpec, Example, open_split
from orchestrator.datasets.audio import AudioError, fit_length, resample
from orchestrator.datasets.lock import file_lock
from orchestrator.store import EmbeddingStore, StoreKey
from orchestrator.store.io import ChecksumError
from orchestrator.store.writer import ShardCorrupt

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 256


@dataclass(frozen=True)
class ExtractReport:
    """What one ``extract_split`` call did (for logs and the CLI summary)."""

    key: StoreKey
    n: int
    computed_shards: int
    reused_shards: int
    skipped: tuple[dict[str, str], ...]
    seconds: float


def store_key(backbone: Any, spec: DatasetSpec, split: str, layer: int = -1) -> StoreKey:
    """The content key of ``backbone`` x ``spec``/``split`` (no work done)."""
    return StoreKey(
        encoder=str(backbone.spec.name),
        weights_id=str(backbone.weights_id),
        frontend_id=str(backbone.frontend_id),
        dataset=spec.name,
        dataset_version=spec.version,
        split=split,
        layer=layer,
    )


def extract_split(
    backbone: Any,
    spec: DatasetSpec,
    split: str,
    store: EmbeddingStore,
    data_root: str = "data",
    batch_size: int = 16,
    progress: bool = True,
    shard_size: int = DEFAULT_SHARD_SIZE,
    layer: int = -1,
    workers: int = 0,
) -> StoreKey:
    """Make sure ``store`` holds the token maps of ``backbone`` on ``split``; return the key.

    A complete entry whose files fail their checksums is invalidated and recomputed.
    ``workers`` > 1 decodes audio in that many threads (soundfile releases the GIL).
    """
    return extract_split_report(
        backbone, spec, split, store, data_root, batch_size, progress, shard_size, layer, workers
    ).key


def extract_split_report(
    backbone: Any,
    spec: DatasetSpec,
    split: str,
    store: EmbeddingStore,
    data_root: str = "data",
    batch_size: int = 16,
    progress: bool = True,
    shard_size: int = DEFAULT_SHARD_SIZE,
    layer: int = -1,
    workers: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractReport:
    """:func:`extract_split`, returning what was computed, reused and skipped.

    ``on_progress(done, total)`` is called with the clips of this call done so far (after each
    shard), so a driver can show clips/s and an ETA."""
    t0 = time.perf_counter()
    key = store_key(backbone, spec, split, layer)
    # One extraction per key and node: a second process waits, then finds the entry complete.
    with file_lock(store.cache_dir / "locks" / f"extract-{key.digest}.lock"):
        manifest = store.manifest(key)
        # A local entry is verified here (once per node); a remote one where a trial loads it,
        # so that the extracting node does not download what it does not read.
        if manifest is not None and (not store.is_local or store.verify(key)):
            return ExtractReport(
                key,
                int(manifest["n"]),
                0,
                int(manifest["n_shards"]),
                tuple(manifest["skipped"]),
                time.perf_counter() - t0,
            )
        data = open_split(spec, split, data_root)
        if len(data) == 0:
            raise DatasetError(
                f"{spec.name}/{split}: the split holds no clips (source {spec.source}); check "
                f"`python -m orchestrator.data {spec.name} --check`."
            )
        writer = store.writer(key)
        n_shards = max(1, math.ceil(len(data) / shard_size))
        layout = _layout(data, shard_size)
        for attempt in range(3):
            done = _valid_shards(writer, layout)
            todo = [i for i in range(n_shards) if i not in done]
            _run_shards(
                backbone,
                spec,
                data,
                writer,
                todo,
                shard_size,
                batch_size,
                progress,
                layer,
                key,
                workers,
                layout,
                on_progress,
            )
            try:
                meta = _meta(backbone, spec, split, shard_size, layer)
                manifest = writer.finalize(n_shards, meta)
                break
            except ShardCorrupt as err:  # every bad shard at once: one recompute repairs them
                log.warning(
                    "%s; recomputing %d shard(s) (attempt %d)", err, len(err.shards), attempt + 1
                )
        else:
            raise ChecksumError(
                f"{key.relpath}: shards keep failing their checksums; check the disk."
            )
        if store.is_local:
            store.verify(key)  # hash once now, so that no trial pays for it
    skipped = tuple(manifest["skipped"])
    if skipped:
        log.warning(
            "%s/%s: skipped %d unreadable clip(s): %s",
            spec.name,
            split,
            len(skipped),
            "; ".join(f"{s['id']}: {s['error']}" for s in skipped[:5]),
        )
    return ExtractReport(
        key, int(manifest["n"]), len(todo), n_shards - len(todo), skipped, time.perf_counter() - t0
    )


def _layout(data: Sequence[Example], shard_size: int) -> dict[str, Any]:
    """What a sealed shard must agree with to be reused (same split, same cut)."""
    records = getattr(data, "records", None)
    ids = [r.id for r in records] if records is not None else [str(i) for i in range(len(data))]
    return {"shard_size": shard_size, "n_total": len(data), "ids": ids}


def _valid_shards(writer: Any, layout: dict[str, Any]) -> dict[int, dict]:
    """Sealed shards cut the same way from the same clips; others are dropped."""
    out = {}
    size = layout["shard_size"]
    for i, info in writer.done_shards().items():
        first = layout["ids"][i * size] if i * size < layout["n_total"] else None
        if (info.get("shard_size"), info.get("n_total"), info.get("first_id")) != (
            size,
            layout["n_total"],
            first,
        ):
            log.warning("dropping shard %d of an earlier run cut differently", i)
            writer.drop_shard(i)
            continue
        out[i] = info
    return out


def _meta(backbone: Any, spec: DatasetSpec, split: str, shard_size: int, layer: int) -> dict:
    return {
        "task": spec.task,
        "num_classes": spec.num_classes,
        "dataset_source": spec.source,
        "clip_seconds": spec.clip_seconds,
        "sample_rate": int(backbone.spec.sample_rate),
        "shard_size": shard_size,
        "layer": layer,
    }


def _labels(examples: Sequence[Example], spec: DatasetSpec) -> np.ndarray:
    if spec.task == "multiclass":
        bad = [e.id for e in examples if len(e.labels) != 1]
        if bad:
            raise ValueError(f"{spec.name}: multi-class clips with != 1 label: {bad[:5]}")
        return np.array([e.labels[0] for e in examples], dtype=np.int64)
    out = np.zeros((len(examples), spec.num_classes), dtype=np.uint8)
    for row, e in enumerate(examples):
        out[row, list(e.labels)] = 1
    return out


def _run_shards(
    backbone: Any,
    spec: DatasetSpec,
    data: Sequence[Example],
    writer: Any,
    todo: list[int],
    shard_size: int,
    batch_size: int,
    progress: bool,
    layer: int,
    key: StoreKey,
    workers: int,
    layout: dict[str, Any],
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    from tqdm.auto import tqdm

    total = sum(len(range(i * shard_size, min(len(data), (i + 1) * shard_size))) for i in todo)
    done = 0
    if on_progress is not None:
        on_progress(0, total)
    bar = tqdm(
        total=total,
        desc=f"extract {key.encoder}/{spec.name}/{key.split}",
        unit="clip",
        disable=not progress,
    )
    try:
        for i in todo:
            lo, hi = i * shard_size, min(len(data), (i + 1) * shard_size)
            good: list[Example] = []
            skipped: list[dict[str, str]] = []
            for j, got in _decode(data, range(lo, hi), workers):
                if isinstance(got, Example) and spec.task == "multiclass" and len(got.labels) != 1:
                    got = ValueError(f"multi-class clip with {len(got.labels)} labels")
                if isinstance(got, Example):
                    good.append(got)
                else:
                    records = getattr(data, "records", None)
                    clip_id = records[j].id if records is not None else str(j)
                    log.warning("skipping %s: %s", clip_id, got)
                    skipped.append({"id": clip_id, "error": str(got)})
                bar.update(1)
            arrays = _embed_all(backbone, spec, good, batch_size, layer)
            arrays["labels"] = _labels(good, spec)
            extra = {
                "grid": arrays.pop("_grid"),
                "shard_size": shard_size,
                "n_total": layout["n_total"],
                "first_id": layout["ids"][lo],
            }
            writer.write_shard(i, arrays, [e.id for e in good], skipped, extra=extra)
            done += hi - lo
            if on_progress is not None:
                on_progress(done, total)
    finally:
        bar.close()


def _decode(
    data: Sequence[Example], indices: range, workers: int
) -> Iterator[tuple[int, Example | Exception]]:
    """``(index, example or the error that made it unreadable)``, in order."""

    def one(j: int) -> Example | Exception:
        try:
            return data[j]
        except (AudioError, OSError) as err:
            return err if isinstance(err, AudioError) else AudioError(f"unreadable: {err}")

    if workers <= 1:
        yield from ((j, one(j)) for j in indices)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from zip(indices, pool.map(one, indices), strict=True)


def _embed_all(
    backbone: Any, spec: DatasetSpec, examples: list[Example], batch_size: int, layer: int
) -> dict[str, Any]:
    import torch

    rate = int(backbone.spec.sample_rate)
    samples = round(spec.clip_seconds * rate)
    toks, clss, masks = [], [], []
    grid: list[int] = []
    for b in range(0, len(examples), batch_size):
        batch = examples[b : b + batch_size]
        waves, lengths = [], []
        for e in batch:
            w, n = fit_length(resample(e.waveform, e.sample_rate, rate), samples)
            waves.append(w)
            lengths.append(n)
        with torch.no_grad():
            tm = backbone.embed(
                torch.from_numpy(np.stack(waves)),
                sample_rate=rate,
                lengths=torch.tensor(lengths, dtype=torch.long),
                layer=layer,
            )
        toks.append(tm.tokens.detach().float().cpu().numpy().astype(np.float16))
        masks.append(tm.padding_mask.detach().cpu().numpy().astype(bool))
        if tm.cls is not None:
            clss.append(tm.cls.detach().float().cpu().numpy().astype(np.float16))
        if grid and list(tm.grid) != grid:
            raise ValueError(
                f"{spec.name}: encoder grid changed between batches ({grid} -> "
                f"{list(tm.grid)}); it must be fixed for a fixed clip length."
            )
        grid = list(tm.grid)
    if not examples:
        return {"tokens": None, "cls": None, "padding_mask": None, "_grid": None}
    return {
        "tokens": np.concatenate(toks),
        "cls": np.concatenate(clss) if clss else None,
        "padding_mask": np.concatenate(masks),
        "_grid": grid,
    }
