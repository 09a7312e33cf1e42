"""The driver: extraction jobs and studies as Ray tasks, outputs written in one place.

Extraction runs one task per (encoder, dataset) (``orchestrator.extract_jobs``); each study runs as a task of its own
(``orchestrator.study``), a bounded number at a time, so the cluster's slots are shared by many
studies' trials. Only the driver writes the output folder: ``studies/<id>/trials.parquet`` and,
when a study finished, ``studies/<id>/final.parquet``, which a re-run reads instead of redoing it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from orchestrator.config import SweepConfig
from orchestrator.plan import Study
from orchestrator.study import Extracted, StudyOutcome, run_study

log = logging.getLogger(__name__)


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def run_studies(
    cfg: SweepConfig,
    studies: tuple[Study, ...],
    extracted: dict[tuple[str, str], Extracted | str],
) -> Iterator[tuple[Study, pl.DataFrame, str]]:
    """Yield ``(study, rows, error)`` as studies finish; finished ones are read, not rerun."""
    pending = []
    for study in studies:
        done = cfg.out_dir / "studies" / study.study_id / "final.parquet"
        tokens = extracted[(study.backbone, study.dataset.name)]
        if isinstance(tokens, str):
            yield study, pl.DataFrame(), tokens
        elif done.exists():
            log.info("study %s already finished; skipping", study.study_id)
            yield study, pl.read_parquet(done), ""
        else:
            pending.append(study)
    # Study tasks drive Tune; they stay on the driver's node, where a local Tune storage is.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(_study_task).options(num_cpus=0, max_retries=0, scheduling_strategy=here)
    limit = cfg.ray.max_concurrent_studies or len(pending)
    running: dict[ray.ObjectRef, Study] = {}
    while pending or running:
        while pending and len(running) < limit:
            study = pending.pop(0)
            running[task.remote(cfg, study, extracted[(study.backbone, study.dataset.name)])] = (
                study
            )
        ready, _ = ray.wait(list(running), num_returns=1)
        study = running.pop(ready[0])
        try:
            outcome: StudyOutcome = ray.get(ready[0])
        except ray.exceptions.RayError as err:
            log.error("study %s crashed: %s", study.study_id, err)
            yield study, pl.DataFrame(), f"crashed: {err}"
            continue
        folder = cfg.out_dir / "studies" / study.study_id
        if not outcome.trials.is_empty():
            _atomic_parquet(outcome.trials, folder / "trials.parquet")
            errors = outcome.trials.filter(pl.col("status") == "error")
            if not errors.is_empty():  # worker logs are not forwarded: say it here
                log.warning(
                    "study %s: %d of %d trials failed, e.g. %s (all errors: %s, and MLflow)",
                    study.study_id,
                    errors.height,
                    outcome.trials.height,
                    errors["error"][0].strip().splitlines()[-1][:300]
                    if errors["error"][0]
                    else "?",
                    folder / "trials.parquet",
                )
        if outcome.error:
            log.error("study %s failed: %s", study.study_id, outcome.error)
        else:
            _atomic_parquet(outcome.rows, folder / "final.parquet")
        yield study, outcome.rows, outcome.error


def _study_task(cfg: SweepConfig, study: Study, extracted: Extracted) -> StudyOutcome:
    logging.basicConfig(level=logging.INFO)
    return run_study(cfg, study, extracted)
