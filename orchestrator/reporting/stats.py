"""Significance of probe differences: Friedman test, post-hoc tests, critical difference.

Uses maintained implementations only: ``scipy.stats.friedmanchisquare`` for the omnibus test and
scikit-posthocs for the post-hoc p-values (``posthoc_nemenyi_friedman``, or
``posthoc_wilcoxon(..., p_adjust="holm")``). Blocks are the (backbone, dataset)
configurations where every probe has a result; the value per block and probe is the seed mean.
Incomplete configurations are excluded and listed, never imputed. The Nemenyi critical
difference is ``q_alpha * sqrt(k (k + 1) / (6 N))`` (Demšar 2006) with ``q_alpha`` from
``scipy.stats.studentized_range`` divided by sqrt(2).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy.stats import friedmanchisquare, studentized_range

from orchestrator.reporting.ranks import complete_rows, mean_ranks, score_matrix
from orchestrator.reporting.sources import ReportError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

POSTHOCS: tuple[str, ...] = ("nemenyi", "wilcoxon-holm")
MIN_BLOCKS = 2
MIN_PROBES = 3


def check_posthoc(name: str) -> str:
    if name not in POSTHOCS:
        raise ReportError(
            f"unknown post-hoc test {name!r}; valid: {', '.join(POSTHOCS)} (default nemenyi)."
        )
    return name


@dataclass(frozen=True)
class Significance:
    """Friedman + post-hoc result, or the reason it could not be computed (``skipped``)."""

    probes: tuple[str, ...]
    n_blocks: int
    excluded: tuple[tuple[str, str], ...]
    posthoc: str
    alpha: float
    statistic: float | None = None
    pvalue: float | None = None
    mean_ranks: dict[str, float] = field(default_factory=dict)
    critical_difference: float | None = None
    pvalues: pd.DataFrame | None = None  # post-hoc p-values, index = columns = probes
    skipped: str | None = None

    def summary_frame(self) -> pl.DataFrame:
        """One row: test, statistic, p-value, blocks, probes, post-hoc, CD, skipped reason."""
        return pl.DataFrame(
            [
                {
                    "test": "friedman",
                    "statistic": self.statistic,
                    "pvalue": self.pvalue,
                    "n_blocks": self.n_blocks,
                    "k_probes": len(self.probes),
                    "posthoc": self.posthoc,
                    "alpha": self.alpha,
                    "critical_difference": self.critical_difference,
                    "skipped": self.skipped,
                }
            ],
            schema_overrides={
                "statistic": pl.Float64,
                "pvalue": pl.Float64,
                "critical_difference": pl.Float64,
                "skipped": pl.Utf8,
            },
        )

    def pvalue_frame(self) -> pl.DataFrame | None:
        """Post-hoc p-values as ``probe`` + one column per probe."""
        if self.pvalues is None:
            return None
        frame = pl.from_pandas(self.pvalues.reset_index(names="probe"))
        return frame.with_columns(pl.col("probe").cast(pl.Utf8))


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of mean ranks for k treatments over n blocks."""
    q = studentized_range.ppf(1.0 - alpha, k, np.inf) / math.sqrt(2.0)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n_blocks)))


def friedman_posthoc(
    summary: pl.DataFrame, posthoc: str = "nemenyi", alpha: float = 0.05
) -> Significance:
    """Friedman test over complete configurations, then the chosen post-hoc test."""
    check_posthoc(posthoc)
    configs, probes, matrix = score_matrix(summary)
    mask = complete_rows(matrix)
    block = matrix[mask]
    excluded = tuple(c for c, ok in zip(configs, mask, strict=True) if not ok)
    base = {
        "probes": tuple(probes),
        "n_blocks": int(block.shape[0]),
        "excluded": excluded,
        "posthoc": posthoc,
        "alpha": alpha,
    }
    if len(probes) < MIN_PROBES:
        return Significance(
            **base, skipped=f"needs at least {MIN_PROBES} probes, got {len(probes)}"
        )
    if block.shape[0] < MIN_BLOCKS:
        return Significance(
            **base,
            skipped=f"needs at least {MIN_BLOCKS} configurations where every probe has a "
            f"result, got {block.shape[0]}",
        )
    ranks = dict(zip(probes, mean_ranks(block).tolist(), strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        stat, p = friedmanchisquare(*block.T)
    if not np.isfinite(stat):
        return Significance(
            **base,
            mean_ranks=ranks,
            skipped="Friedman statistic undefined (all probes tied in every block)",
        )
    import pandas as pd  # scikit-posthocs works on pandas; imported only when a test runs
    import scikit_posthocs as sp

    wide = pd.DataFrame(block, columns=probes)
    try:
        if posthoc == "nemenyi":
            pvalues = sp.posthoc_nemenyi_friedman(wide)
        else:
            long = wide.melt(var_name="probe", value_name="score")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                pvalues = sp.posthoc_wilcoxon(
                    long, val_col="score", group_col="probe", p_adjust="holm"
                )
    except ValueError as exc:
        log.warning("post-hoc %s failed: %s", posthoc, exc)
        return Significance(
            **base,
            statistic=float(stat),
            pvalue=float(p),
            mean_ranks=ranks,
            skipped=f"post-hoc {posthoc} failed: {exc}",
        )
    pvalues = pvalues.loc[probes, probes].fillna(1.0)
    cd = nemenyi_cd(len(probes), block.shape[0], alpha) if posthoc == "nemenyi" else None
    return Significance(
        **base,
        statistic=float(stat),
        pvalue=float(p),
        mean_ranks=ranks,
        critical_difference=cd,
        pvalues=pvalues,
    )
