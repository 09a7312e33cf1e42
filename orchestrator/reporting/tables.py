"""Per-cell summaries of the seed runs: mean, sd (ddof=1), n and a bootstrap CI of the mean.

A *cell* is one (backbone, dataset, probe). The summary covers the full grid of backbones x
datasets x probes seen in the table: a cell without runs (a failed or unfinished study) is kept
with ``n = 0`` and empty statistics so that every table and plot shows it as missing.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

CELL: tuple[str, str, str] = ("backbone", "dataset", "probe")
#: The paper's probe order (shared/PAPER.md); unknown probes follow alphabetically.
PAPER_PROBES: tuple[str, ...] = (
    "linear",
    "mlp",
    "linearc",
    "conv",
    "linpre",
    "mhca",
    "ep",
    "simpool",
    "abmilp",
    "proto",
    "protobin",
)
DEFAULT_N_BOOT = 2000
DEFAULT_CI = 0.95


def order_probes(probes: Iterable[str]) -> list[str]:
    """Paper order for known probe names, then the rest alphabetically."""
    unique = set(probes)
    known = [p for p in PAPER_PROBES if p in unique]
    return known + sorted(unique - set(known))


def bootstrap_ci(
    scores: np.ndarray,
    key: str,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    ci: float = DEFAULT_CI,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the mean over seeds; ``(None, None)`` for < 2 seeds or n_boot 0.

    Seeds are resampled with replacement ``n_boot`` times. The generator is seeded from ``seed``
    and a CRC32 of ``key``, and scores arrive sorted by seed, so a cell's interval does not
    depend on the table's row order or on the other cells.
    """
    if scores.size < 2 or n_boot <= 0:
        return None, None
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    means = rng.choice(scores, size=(n_boot, scores.size), replace=True).mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(
    results: pl.DataFrame,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    ci: float = DEFAULT_CI,
    seed: int = 0,
    expected: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Summarise a validated results table per (backbone, dataset, probe).

    Columns: backbone, dataset, probe, mean, sd (ddof=1; empty for n < 2), n, ci_low, ci_high
    (bootstrap, see :func:`bootstrap_ci`), and ``metric``/``dataset_version`` when the input has
    them. Rows cover the full grid of the backbones, datasets and probes seen in ``results``
    and in ``expected`` (cells that should exist, e.g. final runs that never logged a score);
    cells without runs have n = 0 and empty statistics.
    """
    observed = (
        results.sort([*CELL, "seed"])
        .group_by(list(CELL), maintain_order=True)
        .agg(
            pl.col("score").mean().alias("mean"),
            pl.col("score").std(ddof=1).alias("sd"),
            pl.len().cast(pl.Int64).alias("n"),
            pl.col("score").alias("_scores"),
        )
    )
    lows, highs = [], []
    for row in observed.iter_rows(named=True):
        key = "|".join(str(row[c]) for c in CELL)
        low, high = bootstrap_ci(
            np.asarray(row["_scores"], float), key, n_boot=n_boot, ci=ci, seed=seed
        )
        lows.append(low)
        highs.append(high)
    observed = observed.drop("_scores").with_columns(
        pl.Series("ci_low", lows, dtype=pl.Float64), pl.Series("ci_high", highs, dtype=pl.Float64)
    )
    keys = results.select(CELL)
    if expected is not None and expected.height:
        keys = pl.concat([keys, expected.select(pl.col(c).cast(pl.Utf8) for c in CELL)])
    grid = _grid(keys)
    summary = grid.join(observed, on=list(CELL), how="left").with_columns(pl.col("n").fill_null(0))
    for extra in ("metric", "dataset_version"):
        if extra in results.columns:
            per_dataset = results.group_by("dataset").agg(pl.col(extra).cast(pl.Utf8).first())
            summary = summary.join(per_dataset, on="dataset", how="left")
    return sort_cells(summary)


def _grid(results: pl.DataFrame) -> pl.DataFrame:
    frames = [results.select(pl.col(c).unique()) for c in CELL]
    return frames[0].join(frames[1], how="cross").join(frames[2], how="cross")


def sort_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by dataset, backbone, then the paper's probe order."""
    rank = {p: i for i, p in enumerate(order_probes(frame.get_column("probe").unique()))}
    return (
        frame.with_columns(pl.col("probe").replace_strict(rank, return_dtype=pl.Int64).alias("_o"))
        .sort(["dataset", "backbone", "_o"])
        .drop("_o")
    )


def score_scale(summary: pl.DataFrame) -> float:
    """100 when every observed mean lies in [0, 1] (shown as percent), else 1."""
    means = summary.get_column("mean").drop_nulls()
    if means.len() and float(means.min()) >= 0.0 and float(means.max()) <= 1.0:
        return 100.0
    return 1.0


def wide_table(summary: pl.DataFrame, *, scale: float = 1.0, digits: int = 2) -> pl.DataFrame:
    """Rows (dataset, backbone), one ``"mean ± sd"`` text column per probe; missing cells "—"."""
    probes = order_probes(summary.get_column("probe").unique())

    def cell(row: dict) -> str:
        if not row["n"]:
            return "—"
        mean = f"{row['mean'] * scale:.{digits}f}"
        if row["sd"] is None:
            return f"{mean} (n=1)"
        return f"{mean} ± {row['sd'] * scale:.{digits}f}"

    text = summary.with_columns(
        pl.struct(["mean", "sd", "n"]).map_elements(cell, return_dtype=pl.Utf8).alias("cell")
    )
    wide = text.pivot(on="probe", index=["dataset", "backbone"], values="cell")
    return wide.select(["dataset", "backbone", *probes]).sort(["dataset", "backbone"])


def write_table(frame: pl.DataFrame, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write ``stem.csv`` and ``stem.parquet``; return ``{stem: csv, stem_parquet: parquet}``."""
    csv, parquet = out_dir / f"{stem}.csv", out_dir / f"{stem}.parquet"
    frame.write_csv(csv)
    frame.write_parquet(parquet)
    return {stem: csv, f"{stem}_parquet": parquet}
