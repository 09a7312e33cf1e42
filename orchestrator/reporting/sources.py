"""Reading a results table and refusing tables the report cannot honestly aggregate.

Every source (a CSV/parquet file, an in-memory frame, an MLflow experiment) ends in
:func:`validate_results`, so the checks (required columns, no NaN scores, no duplicate seeds,
one dataset version per dataset) are the same whatever the input.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("backbone", "dataset", "probe", "seed", "score")
KEY_COLUMNS: tuple[str, ...] = ("backbone", "dataset", "probe", "seed")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
_SHOW = 5


class ReportError(ValueError):
    """Input the report refuses; the message names the bad value, valid choices and the fix."""


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a results table from a ``.csv`` or ``.parquet`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ReportError(
            f"results file {str(path)!r} has suffix {suffix!r}; valid suffixes: "
            f"{', '.join(TABLE_SUFFIXES)}. Save the table as CSV or parquet."
        )
    if not path.is_file():
        raise ReportError(
            f"results file {str(path)!r} does not exist; pass the results table written by "
            "the sweep (e.g. outputs/<sweep>/results.csv)."
        )
    if suffix == ".csv":
        return pl.read_csv(path, infer_schema_length=None)
    return pl.read_parquet(path)


def load_results(results: pl.DataFrame | str | Path, allow_mixed: bool = False) -> pl.DataFrame:
    """Return a validated results table from a frame or a CSV/parquet path."""
    if isinstance(results, (str, Path)):
        frame = read_table(results)
    elif isinstance(results, pl.DataFrame):
        frame = results
    else:
        raise ReportError(
            f"results must be a polars DataFrame or a path to a CSV/parquet file, got "
            f"{type(results).__name__}."
        )
    return validate_results(frame, allow_mixed)


def _rows(frame: pl.DataFrame, columns: tuple[str, ...] = KEY_COLUMNS) -> str:
    present = [c for c in columns if c in frame.columns]
    shown = [str(row) for row in frame.select(present).head(_SHOW).iter_rows(named=True)]
    more = f" (and {frame.height - _SHOW} more)" if frame.height > _SHOW else ""
    return "; ".join(shown) + more


def validate_results(frame: pl.DataFrame, allow_mixed: bool = False) -> pl.DataFrame:
    """Check and normalise a long results table (one row per final-stage seed run).

    Keys become strings, ``score`` Float64. Rows of other stages (a ``stage`` column other than
    ``final``) are dropped with a warning. Raises :class:`ReportError` on missing columns, an
    empty table, null/NaN/non-numeric scores, null keys, duplicate (backbone, dataset, probe,
    seed) rows, or several ``dataset_version`` values for one dataset (unless ``allow_mixed``).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportError(
            f"results table lacks column(s) {missing}; required columns: "
            f"{', '.join(REQUIRED_COLUMNS)}; present: {', '.join(frame.columns) or '(none)'}. "
            "Rename or add them (one row per final-stage seed run)."
        )
    if "stage" in frame.columns:
        other = frame.filter(pl.col("stage").cast(pl.Utf8) != "final")
        if other.height:
            log.warning("ignoring %d row(s) whose stage is not 'final'", other.height)
            frame = frame.filter(pl.col("stage").cast(pl.Utf8) == "final")
    if frame.height == 0:
        raise ReportError(
            "results table is empty (no final-stage rows); run the sweep's final stage first or "
            "point --results at a table with at least one row."
        )
    try:
        score = frame.get_column("score").cast(pl.Float64, strict=True)
    except pl.exceptions.InvalidOperationError as exc:
        raise ReportError(
            f"column 'score' must be numeric, got dtype {frame.schema['score']}; write scores "
            "as numbers (e.g. 0.3167 or 31.67)."
        ) from exc
    frame = frame.with_columns(
        score.alias("score"), *(pl.col(c).cast(pl.Utf8) for c in ("backbone", "dataset", "probe"))
    )
    try:
        frame = frame.with_columns(pl.col("seed").cast(pl.Int64, strict=True))
    except pl.exceptions.InvalidOperationError:
        frame = frame.with_columns(pl.col("seed").cast(pl.Utf8))
    bad_keys = frame.filter(pl.any_horizontal(pl.col(c).is_null() for c in KEY_COLUMNS))
    if bad_keys.height:
        raise ReportError(
            f"{bad_keys.height} row(s) have an empty backbone, dataset, probe or seed: "
            f"{_rows(bad_keys)}. Fill the key columns or drop those rows."
        )
    bad = frame.filter(pl.col("score").is_null() | pl.col("score").is_nan())
    if bad.height:
        raise ReportError(
            f"{bad.height} row(s) have a NaN/empty score: {_rows(bad)}. A failed run must be "
            "absent from the results (it is then shown as a missing cell), not NaN; remove "
            "those rows or rerun them."
        )
    dup = frame.filter(pl.struct(list(KEY_COLUMNS)).is_duplicated())
    if dup.height:
        raise ReportError(
            f"{dup.height} rows repeat a (backbone, dataset, probe, seed): {_rows(dup)}. Each seed "
            "must appear once; deduplicate the table (keep the run you mean to report)."
        )
    if not allow_mixed:
        _check_versions(frame)
    return frame


def _check_versions(frame: pl.DataFrame) -> None:
    if "dataset_version" not in frame.columns:
        return
    versions = (
        frame.group_by("dataset")
        .agg(pl.col("dataset_version").cast(pl.Utf8).unique().sort(nulls_last=True))
        .filter(pl.col("dataset_version").list.len() > 1)
        .sort("dataset")
    )
    if versions.height:
        detail = "; ".join(
            f"dataset {row['dataset']!r} has versions {row['dataset_version']}"
            for row in versions.iter_rows(named=True)
        )
        raise ReportError(
            f"refusing to mix dataset versions: {detail}. Scores on different versions are not "
            "comparable; filter the table to one dataset_version per dataset (or rerun the "
            "older rows on the current version)."
        )
