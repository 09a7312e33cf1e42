"""What a study is made of and how its result is chosen (pure functions over trial tables).

A study (encoder x dataset x probe) searches hyperparameters, reruns the top-k configurations
with every seed, and reports the configuration with the best mean validation score. The work
itself is scheduled by ``orchestrator.schedule`` (all studies in one Tune run); this module
holds the per-study facts the driver needs: the extraction summary, MLflow tags and the
final selection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import polars as pl

from orchestrator.plan import Study
from orchestrator.provenance import provenance_tags
from orchestrator.search import METRIC
from orchestrator.trial import split_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extracted:
    """What the driver knows about one (encoder, dataset) after extraction."""

    keys: dict[str, Any]  # split -> StoreKey
    weights_id: str
    dataset_version: str
    task: str
    metric: str
    num_classes: int
    skipped: int


def study_tags(study: Study, extracted: Extracted) -> dict[str, str]:
    """The MLflow tags of a study's run (and, without ``kind``, of its trial runs)."""
    return {
        "kind": "study",
        "study_id": study.study_id,
        "backbone": study.backbone,
        "encoder": study.encoder.name,
        "weights_id": extracted.weights_id,
        "dataset": study.dataset.name,
        "dataset_version": extracted.dataset_version,
        "probe": study.probe.name,
        "metric": extracted.metric,
        **provenance_tags(),
    }


def top_configs(search: pl.DataFrame, k: int, epochs: int) -> list[dict[str, Any]]:
    """The k best finished configurations by last validation score (pruned trials ranked too)."""
    if METRIC not in search.columns:
        return []
    ok = search.filter(pl.col("status").is_in(["ok", "pruned"]) & pl.col(METRIC).is_not_null())
    if ok.is_empty():
        return []
    params = [c for c in ok.columns if c.startswith("param.")]
    ok = ok.filter(pl.col(METRIC).is_not_nan())
    order = "number" if "number" in ok.columns else "trial_id"  # the stable key, not timing
    best = ok.sort(
        [pl.col("epochs") == epochs, METRIC, order],
        descending=[True, True, False],
        maintain_order=True,
    ).head(k)
    return [
        {c.removeprefix("param."): row[c] for c in params if row[c] is not None}
        for row in best.iter_rows(named=True)
    ]


def select_final(
    final: pl.DataFrame,
    configs: list[dict[str, Any]],
    study: Study,
    extracted: Extracted,
    n_seeds: int,
) -> pl.DataFrame:
    """Keep the seeds of the top-k config with the best mean validation score.

    Only configurations with a finite score for every seed compete: a win matrix built on
    fewer seeds would understate the standard deviation.
    """
    if "test_score" not in final.columns:
        return pl.DataFrame()
    ok = final.filter(
        (pl.col("status") == "ok")
        & pl.col("test_score").is_not_null()
        & pl.col("test_score").is_not_nan()
        & pl.col("val_score").is_not_nan()
    )
    means = (
        ok.group_by("config_index")
        .agg(pl.col("val_score").mean().alias("m"), pl.col("seed").n_unique().alias("n"))
        .filter(pl.col("n") == n_seeds)
        .sort(["m", "config_index"], descending=[True, False])
    )
    if means.is_empty():
        return pl.DataFrame()
    chosen = int(means["config_index"][0])
    picked = ok.filter(pl.col("config_index") == chosen).sort("seed")
    train_kw, probe_kw = split_params(configs[chosen])
    return pl.DataFrame(
        [
            {
                "backbone": study.backbone,
                "encoder": study.encoder.name,
                "weights_id": extracted.weights_id,
                "dataset": study.dataset.name,
                "dataset_version": extracted.dataset_version,
                "probe": study.probe.name,
                "seed": int(row["seed"]),
                "score": float(row["test_score"]),
                "metric": extracted.metric,
                "val_score": float(row["val_score"]),
                "config_index": chosen,
                "lr": float(train_kw.get("lr", float("nan"))),
                "weight_decay": float(train_kw.get("weight_decay", float("nan"))),
                "probe_hparams": repr({**study.probe.hparams, **probe_kw}),
                "study_id": study.study_id,
                "device": row.get("device", ""),
                "precision": row.get("precision") or "",
                **provenance_tags(),
            }
            for row in picked.iter_rows(named=True)
        ]
    )
