"""Rankings: probes by total wins, mean rank and Borda count; encoders under two probes (Fig. 6).

Definitions (a *configuration* is one (backbone, dataset); probes are compared on seed means):

- ``total_wins``: row sum of the win matrix under the chosen tie rule.
- ``mean_rank``: per configuration where *every* probe has a result, rank the probes by mean
  score (1 = best, equal means share the average rank), then average over those configurations.
  These are the ranks the Friedman test and the CD diagram use. Incomplete configurations are
  excluded and counted (``complete_configs``), never filled.
- ``borda``: over *all* configurations, a probe earns one point per other present probe with a
  lower mean and half a point per equal mean; ``borda_configs`` says in how many it was present.
- Encoder ranks: per dataset, backbones ranked by mean score under probe P (1 = best; equal means
  share the better rank) among the backbones that have P on that dataset; the ``(all)`` rows
  are the paper's Figure 6: each backbone's mean score over the general-audio datasets (BirdSet
  excluded), ranked (:func:`orchestrator.reporting.encoders.general_scores`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.stats import kendalltau, rankdata

from orchestrator.reporting.tables import order_probes
from orchestrator.reporting.winmatrix import WinCounts

ALL = "(all)"


def score_matrix(summary: pl.DataFrame) -> tuple[list[tuple[str, str]], list[str], np.ndarray]:
    """Configurations (backbone, dataset), probes, and the [configs, probes] mean matrix (NaN = missing)."""
    probes = order_probes(summary.get_column("probe").unique())
    observed = summary.filter(pl.col("n") > 0)
    configs = sorted(set(observed.select("backbone", "dataset").iter_rows()))
    cindex = {c: i for i, c in enumerate(configs)}
    pindex = {p: j for j, p in enumerate(probes)}
    matrix = np.full((len(configs), len(probes)), np.nan)
    for row in observed.iter_rows(named=True):
        matrix[cindex[(row["backbone"], row["dataset"])], pindex[row["probe"]]] = row["mean"]
    return configs, probes, matrix


def complete_rows(matrix: np.ndarray) -> np.ndarray:
    """Boolean mask of configurations where every probe has a result."""
    return ~np.isnan(matrix).any(axis=1)


def mean_ranks(matrix: np.ndarray) -> np.ndarray:
    """Average rank per column over the rows of a complete matrix (1 = highest score)."""
    if matrix.shape[0] == 0:
        return np.full(matrix.shape[1], np.nan)
    return rankdata(-matrix, axis=1, method="average").mean(axis=0)


def probe_ranks(summary: pl.DataFrame, counts: WinCounts) -> pl.DataFrame:
    """probe, total_wins, mean_rank, complete_configs, borda, borda_configs; best first."""
    _, probes, matrix = score_matrix(summary)
    complete = matrix[complete_rows(matrix)]
    ranks = mean_ranks(complete)
    borda = np.zeros(len(probes))
    present = np.zeros(len(probes), dtype=np.int64)
    for row in matrix:
        ok = ~np.isnan(row)
        present += ok
        for j in np.flatnonzero(ok):
            others = row[ok]
            borda[j] += (others < row[j]).sum() + 0.5 * ((others == row[j]).sum() - 1)
    totals = counts.total_wins()
    return pl.DataFrame(
        {
            "probe": probes,
            "total_wins": [totals.get(p, 0) for p in probes],
            "mean_rank": [None if np.isnan(r) else float(r) for r in ranks],
            "complete_configs": [int(complete.shape[0])] * len(probes),
            "borda": borda.tolist(),
            "borda_configs": present.tolist(),
        },
        schema_overrides={"mean_rank": pl.Float64},
    ).sort(["total_wins", "borda"], descending=True, maintain_order=True)


def encoder_ranks(summary: pl.DataFrame, probe_a: str, probe_b: str) -> pl.DataFrame | None:
    """Backbones ranked per dataset under ``probe_a`` and ``probe_b``; None if either is absent.

    Columns: dataset, backbone, mean_<a>, rank_<a>, mean_<b>, rank_<b>, rank_shift (rank_a -
    rank_b; positive: the backbone climbs under probe_b). ``(all)`` rows (Figure 6): the mean score
    over the general-audio datasets and the rank by it (only backbones that have the probe on
    every general dataset are ranked).
    """
    present = set(summary.filter(pl.col("n") > 0).get_column("probe").unique().to_list())
    if probe_a not in present or probe_b not in present:
        return None
    parts = []
    for probe in (probe_a, probe_b):
        part = summary.filter((pl.col("probe") == probe) & (pl.col("n") > 0)).select(
            "dataset",
            "backbone",
            pl.col("mean").alias(f"mean_{probe}"),
            pl.col("mean")
            .rank("min", descending=True)
            .over("dataset")
            .cast(pl.Float64)
            .alias(f"rank_{probe}"),
        )
        parts.append(part)
    table = parts[0].join(parts[1], on=["dataset", "backbone"], how="full", coalesce=True)
    table = table.with_columns(
        (pl.col(f"rank_{probe_a}") - pl.col(f"rank_{probe_b}")).alias("rank_shift")
    ).sort(["dataset", f"rank_{probe_a}"], nulls_last=True)
    from orchestrator.reporting.encoders import general_scores

    scores = general_scores(summary, (probe_a, probe_b))
    overall = pl.DataFrame(schema=table.schema)
    if scores is not None and {f"rank_{probe_a}", f"rank_{probe_b}"} <= set(scores.columns):
        overall = (
            scores.with_columns(
                pl.lit(ALL).alias("dataset"),
                pl.col(f"rank_{probe_a}").cast(pl.Float64),
                pl.col(f"rank_{probe_b}").cast(pl.Float64),
            )
            .with_columns(
                (pl.col(f"rank_{probe_a}") - pl.col(f"rank_{probe_b}")).alias("rank_shift")
            )
            .select(table.columns)
            .sort(f"rank_{probe_a}", nulls_last=True)
        )
    return pl.concat([table, overall])


def rank_agreement(table: pl.DataFrame, probe_a: str, probe_b: str) -> pl.DataFrame:
    """Kendall's tau between the two encoder rankings per dataset (scipy.stats.kendalltau)."""
    rows = []
    for dataset, group in table.filter(pl.col("dataset") != ALL).group_by("dataset"):
        both = group.drop_nulls([f"rank_{probe_a}", f"rank_{probe_b}"])
        tau = np.nan
        if both.height >= 2:
            tau = kendalltau(
                both.get_column(f"rank_{probe_a}"), both.get_column(f"rank_{probe_b}")
            )[0]
        rows.append(
            {
                "dataset": dataset[0],
                "backbones": both.height,
                "kendall_tau": None if np.isnan(tau) else float(tau),
            }
        )
    return pl.DataFrame(
        rows, schema={"dataset": pl.Utf8, "backbones": pl.Int64, "kendall_tau": pl.Float64}
    ).sort("dataset")
