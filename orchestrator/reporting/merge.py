"""Several results inputs merged into one report: a new encoder's sweep beside an earlier baseline.

Each ``--results`` input is a results file (CSV/parquet), a sweep's output folder (its
``results.parquet`` or ``results.csv``) or ``mlflow:EXPERIMENT`` / ``mlflow:EXPERIMENT@SWEEP_ID``.
Rows are merged by (backbone, dataset, probe, seed). A row present in two inputs with the same
score is one run read twice and kept once; with different scores it is refused, naming both
sources. Rows from different protocols (the columns of :data:`PROTOCOL_COLUMNS`: epochs, search
budget, seeds, dataset version) are not comparable, so they are refused unless the user passes
``--allow-mixed``, which the report then states. Rows of different code digests (column
``code_digest`` when present) are merged but flagged by a stated line in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from orchestrator.reporting.sources import KEY_COLUMNS, ReportError, read_table, validate_results

log = logging.getLogger(__name__)

MLFLOW_PREFIX = "mlflow:"
SOURCE = "_source"
INPUT = "_input"  # the input's position: the same path given twice is two inputs
#: Columns that describe how a row was produced; rows that differ in one are not comparable.
#: ``dataset_version`` is compared per dataset, the others over every row.
PROTOCOL_COLUMNS: tuple[str, ...] = ("epochs", "search_trials", "seeds", "dataset_version")
DIGEST_COLUMN = "code_digest"
FOLDER_FILES: tuple[str, ...] = ("results.parquet", "results.csv")
_SHOW = 5


@dataclass(frozen=True)
class Merged:
    """The merged rows (without the source column), expected cells and the report's notes."""

    results: pl.DataFrame
    expected: pl.DataFrame | None
    sources: tuple[str, ...]
    notes: tuple[str, ...]


def _read_folder(path: Path) -> pl.DataFrame:
    for name in FOLDER_FILES:
        if (path / name).is_file():
            return read_table(path / name)
    raise ReportError(
        f"results folder {str(path)!r} holds none of {', '.join(FOLDER_FILES)}; pass a sweep's "
        "output folder after its final stage, or the results file itself."
    )


def read_input(
    spec: str | Path, tracking_uri: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Rows (and, for MLflow, the cells of unfinished studies) of one ``--results`` input."""
    text = str(spec)
    if text.startswith(MLFLOW_PREFIX):
        from orchestrator.reporting.mlflow_source import load_mlflow

        experiment, _, sweep_id = text[len(MLFLOW_PREFIX) :].partition("@")
        if not experiment:
            raise ReportError(
                f"--results {text!r} names no experiment; write mlflow:EXPERIMENT or "
                "mlflow:EXPERIMENT@SWEEP_ID."
            )
        return load_mlflow(experiment, tracking_uri, sweep_id or None)
    path = Path(spec)
    if path.is_dir():
        return _read_folder(path), None
    return read_table(path), None


def _protocol_clash(frame: pl.DataFrame, column: str) -> list[str]:
    """``"value (sources)"`` per distinct value of ``column``, per dataset for dataset_version."""
    groups = ["dataset"] if column == "dataset_version" else []
    rows = (
        frame.filter(pl.col(column).is_not_null())
        .group_by([*groups, column])
        .agg(pl.col(SOURCE).unique().sort())
        .sort([*groups, column])
    )
    clashes = []
    keys = rows.select(groups).unique().iter_rows() if groups else [()]
    for key in keys:
        sub = rows
        for g, v in zip(groups, key, strict=True):
            sub = sub.filter(pl.col(g) == v)
        if sub.height > 1:
            where = f"dataset {key[0]!r}: " if groups else ""
            values = "; ".join(
                f"{r[column]!r} in {', '.join(r[SOURCE])}" for r in sub.iter_rows(named=True)
            )
            clashes.append(f"{column} ({where}{values})")
    return clashes


def merge_inputs(
    specs: list[str | Path], tracking_uri: str | None = None, allow_mixed: bool = False
) -> Merged:
    """Read every input, merge by key, refuse conflicting rows and mixed protocols."""
    if not specs:
        raise ReportError("no --results input given; pass a results file, folder or mlflow:EXP.")
    frames, expected = [], []
    for index, spec in enumerate(specs):
        frame, unscored = read_input(spec, tracking_uri)
        try:
            frame = validate_results(frame, allow_mixed)
        except ReportError as exc:
            if len(specs) == 1:
                raise
            raise ReportError(f"results input {str(spec)!r}: {exc}") from exc
        frame = frame.with_columns(
            *(
                pl.col(c).cast(pl.Utf8)
                for c in ("backbone", "dataset", "probe", "seed")
                if c in frame.columns
            ),
            pl.lit(str(spec)).alias(SOURCE),
            pl.lit(index).alias(INPUT),
        )
        frames.append(frame)
        if unscored is not None and unscored.height:
            expected.append(unscored)
    merged = pl.concat(frames, how="diagonal_relaxed")
    if "stage" in merged.columns:
        merged = merged.filter(pl.col("stage").cast(pl.Utf8) == "final")
    merged = _drop_repeats(merged)
    notes = []
    clashes = [
        c for col in PROTOCOL_COLUMNS if col in merged.columns for c in _protocol_clash(merged, col)
    ]
    if clashes and not allow_mixed:
        raise ReportError(
            "refusing to merge rows from different protocols: " + "; ".join(clashes) + ". Their "
            "scores are not comparable; rerun one side with the other's protocol, or pass "
            "--allow-mixed to report them together anyway (the report then says so)."
        )
    if clashes:
        notes.append("**Mixed protocols (--allow-mixed)**: " + "; ".join(clashes) + ".")
    if DIGEST_COLUMN in merged.columns:
        digests = _protocol_clash(merged, DIGEST_COLUMN)
        if digests:
            notes.append(
                "**Rows from different code versions are merged**: " + "; ".join(digests) + "."
            )
    if len(specs) > 1:
        notes.append(
            f"Merged from {len(specs)} inputs: " + ", ".join(f"`{s}`" for s in specs) + "."
        )
    return Merged(
        results=merged.drop(SOURCE, INPUT),
        expected=pl.concat(expected, how="diagonal_relaxed").unique() if expected else None,
        sources=tuple(str(s) for s in specs),
        notes=tuple(notes),
    )


def _drop_repeats(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep a key read twice with the same score once; refuse one with different scores."""
    keys = list(KEY_COLUMNS)
    cross = (
        frame.group_by(keys)
        .agg(
            pl.col(INPUT).n_unique().alias("_n"),
            pl.col("score").cast(pl.Float64).n_unique().alias("_s"),
            pl.col(SOURCE),
            pl.col("score"),
        )
        .filter((pl.col("_n") > 1) & (pl.col("_s") > 1))
        .sort(keys)
    )
    if cross.height:
        shown = "; ".join(
            f"{'/'.join(str(r[k]) for k in keys)}: "
            + ", ".join(f"{s} in {src}" for s, src in zip(r["score"], r[SOURCE], strict=True))
            for r in cross.head(_SHOW).iter_rows(named=True)
        )
        more = f" (and {cross.height - _SHOW} more)" if cross.height > _SHOW else ""
        raise ReportError(
            f"{cross.height} row(s) appear in two inputs with different scores: {shown}{more}. "
            "Each (backbone, dataset, probe, seed) must be one run; drop it from one input."
        )
    # the same run read from two inputs: keep its first occurrence (rows within one input that
    # repeat a key are left for validate_results to refuse)
    first = frame.with_columns(pl.int_range(pl.len()).alias("_row"))
    owner = first.group_by(keys).agg(pl.col(INPUT).min().alias("_owner"))
    kept = first.join(owner, on=keys).filter(pl.col(INPUT) == pl.col("_owner"))
    return kept.sort("_row").drop("_row", "_owner")


def with_protocol(
    results: pl.DataFrame, epochs: int, search_trials: int, seeds: tuple[int, ...]
) -> pl.DataFrame:
    """Stamp the sweep's protocol on its result rows, so a later merge can compare it."""
    return results.with_columns(
        pl.lit(epochs).alias("epochs"),
        pl.lit(search_trials).alias("search_trials"),
        pl.lit(",".join(str(s) for s in seeds)).alias("seeds"),
    )
