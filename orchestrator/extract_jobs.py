"""Extraction on Ray: one task per (encoder, dataset), with progress in the driver's log.

Worker output is not forwarded to the driver (``log_to_driver=False``: a sweep's thousands of
trials would flood a job log), so each extraction task reports its clips to a small actor and
the driver logs, every ``UNMUTE_PROGRESS_S`` seconds (default 30), clips done, clips/s and the
ETA per (encoder, dataset) pair.
"""

from __future__ import annotations

import logging
import os
import time

import ray

from orchestrator.config import SweepConfig
from orchestrator.plan import encoder_label
from orchestrator.study import Extracted

log = logging.getLogger(__name__)


class ProgressBoard:
    """Ray actor: the latest ``(split, done, total, split index, splits)`` per pair."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[str, int, int, int, int]] = {}

    def report(self, pair: str, split: str, done: int, total: int, index: int, splits: int):
        self.state[pair] = (split, done, total, index, splits)

    def snapshot(self) -> dict[str, tuple[str, int, int, int, int]]:
        return dict(self.state)


def _extract_pair(encoder, dataset, cfg: SweepConfig, board=None) -> Extracted:
    """Ray task body: build the frozen encoder once, extract the splits into the store."""
    import torch

    from backbones import create_backbone
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split_report
    from orchestrator.store import EmbeddingStore

    device = cfg.extract_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = get_dataset(dataset.name, source=dataset.source, **dataset.options)
    backbone = create_backbone(encoder.source, checkpoint=encoder.checkpoint, **encoder.overrides)
    backbone = backbone.to(device)
    store = EmbeddingStore(cfg.store_url)
    pair = f"{encoder_label(encoder)} / {dataset.name}"
    splits = ("train", "valid", "test", *spec.extra_splits)
    keys, skipped = {}, 0
    for index, split in enumerate(splits):
        last = [0.0]

        def progress(done: int, total: int, split=split, index=index, last=last) -> None:
            now = time.monotonic()
            if board is not None and (done in (0, total) or now - last[0] >= 1.0):
                last[0] = now
                board.report.remote(pair, split, done, total, index, len(splits))

        report = extract_split_report(
            backbone,
            spec,
            split,
            store,
            cfg.data_root,
            cfg.extract_batch_size,
            progress=False,
            on_progress=progress,
        )
        keys[split] = report.key
        skipped += len(report.skipped)
    return Extracted(
        keys=keys,
        weights_id=backbone.weights_id,
        dataset_version=spec.version,
        task=spec.task,
        metric=spec.metric,
        num_classes=spec.num_classes,
        skipped=skipped,
    )


class _Rates:
    """Clips/s and ETA per (pair, split) from successive snapshots."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], tuple[float, int]] = {}
        self.last: dict[str, tuple] = {}

    def lines(self, snapshot: dict, now: float) -> list[str]:
        out = []
        for pair, state in sorted(snapshot.items()):
            split, done, total, index, splits = state
            start = self.first.setdefault((pair, split), (now, done))
            if self.last.get(pair) == state:
                continue
            self.last[pair] = state
            rate = (done - start[1]) / (now - start[0]) if now > start[0] else 0.0
            eta = f"ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else "ETA ?"
            if done >= total:
                eta = "done"
            out.append(
                f"extract {pair}: split {split} ({index + 1}/{splits}) {done}/{total} clips, "
                f"{rate:.1f} clips/s, {eta}"
            )
        return out


def run_extractions(
    cfg: SweepConfig, pairs: set[tuple[str, str]] | None = None
) -> dict[tuple[str, str], Extracted | str]:
    """One Ray task per (encoder, dataset) (only ``pairs`` when given: ``(encoder label,
    dataset)``); finished store entries are not recomputed.

    A pair whose extraction fails maps to its error message: its studies are reported as
    failed, every other pair goes on.
    """
    interval = float(os.environ.get("UNMUTE_PROGRESS_S", "30"))
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(_extract_pair).options(
        num_cpus=cfg.ray.cpus_per_extraction, num_gpus=cfg.ray.gpus_per_extraction, max_retries=1
    )
    refs = {
        task.remote(enc, ds, cfg, board): (encoder_label(enc), ds.name)
        for enc in cfg.encoders
        for ds in cfg.datasets
        if pairs is None or (encoder_label(enc), ds.name) in pairs
    }
    done: dict[tuple[str, str], Extracted | str] = {}
    rates = _Rates()
    started = time.monotonic()
    pending = list(refs)
    next_log = started + interval
    while pending:
        wait = max(0.0, next_log - time.monotonic())
        ready, pending = ray.wait(pending, num_returns=1, timeout=wait)
        for ref in ready:
            pair = refs[ref]
            try:
                done[pair] = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if getattr(err, "cause", None) is not None else err
                done[pair] = f"extraction of {pair[0]} / {pair[1]} failed: {cause}"
                log.error("%s", done[pair])
                continue
            log.info(
                "extracted %s / %s (%d of %d pairs; %d unreadable clips skipped)",
                *pair,
                len(done),
                len(refs),
                done[pair].skipped,
            )
        if pending and time.monotonic() >= next_log:
            next_log = time.monotonic() + interval
            for line in rates.lines(ray.get(board.snapshot.remote()), time.monotonic()):
                log.info("%s", line)
    log.info("extraction finished in %.0f s", time.monotonic() - started)
    ray.kill(board)
    return {pair: done[pair] for pair in refs.values()}
