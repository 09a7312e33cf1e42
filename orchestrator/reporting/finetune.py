"""Gap to fine-tuning: how much of the baseline-to-fine-tuning gap each probe closes.

Reference numbers come from the CLI or config, as ``DATASET=BACKBONE:SCORE`` (e.g.
``as20k=eat:40.2%``) or a ``.csv`` (columns dataset, backbone, score) / ``.yaml`` file
(``{as20k: {eat: 40.2%}}`` or a list of such rows). A trailing ``%`` marks percent points and is
converted to the table's unit; without it the number must already be in the table's unit (a
reference above 1 against scores in [0, 1] is refused). A reference for ``eat`` applies to the
backbone labelled ``eat`` and to ``eat@<anything>``.

For each (dataset, backbone, probe) with a reference F, baseline mean L (``linear`` by default)
and probe mean P: ``gap = F - P`` and ``gap_closed = (P - L) / (F - L)`` (empty when L is missing
or F == L). The paper's example: on as20k, EAT protobin 31.67 vs linear 17.29 and fine-tuning
40.2 closes (31.67 - 17.29) / (40.2 - 17.29) = 63% of the gap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from orchestrator.reporting.sources import ReportError, read_table

log = logging.getLogger(__name__)

_SPEC = re.compile(r"^\s*([^=\s]+)\s*=\s*([^:\s]+)\s*:\s*([-+0-9.eE]+)\s*(%?)\s*$")


@dataclass(frozen=True)
class FinetuneRef:
    dataset: str
    backbone: str
    score: float
    percent: bool


def _value(raw: object, where: str) -> tuple[float, bool]:
    text = str(raw).strip()
    percent = text.endswith("%")
    try:
        return float(text.rstrip("%")), percent
    except ValueError as exc:
        raise ReportError(
            f"fine-tuning reference {where}: score {raw!r} is not a number; write e.g. 40.2% "
            "(percent points) or 0.402 (the results table's unit)."
        ) from exc


def parse_refs(items: Iterable[str | Path]) -> list[FinetuneRef]:
    """Parse ``DATASET=BACKBONE:SCORE[%]`` strings and/or CSV/YAML reference files."""
    refs: list[FinetuneRef] = []
    for item in items:
        text = str(item)
        match = _SPEC.match(text)
        if match:
            score, percent = _value(match.group(3) + match.group(4), text)
            refs.append(FinetuneRef(match.group(1), match.group(2), score, percent))
        elif Path(text).suffix.lower() in (".yaml", ".yml", ".csv", ".parquet"):
            refs.extend(_read_file(Path(text)))
        else:
            raise ReportError(
                f"cannot read fine-tuning reference {text!r}; use DATASET=BACKBONE:SCORE (e.g. "
                "as20k=eat:40.2%) or a .csv/.yaml file with dataset, backbone, score."
            )
    return refs


def _read_file(path: Path) -> list[FinetuneRef]:
    if not path.is_file():
        raise ReportError(f"fine-tuning reference file {str(path)!r} does not exist.")
    if path.suffix.lower() in (".csv", ".parquet"):
        frame = read_table(path)
        missing = {"dataset", "backbone", "score"} - set(frame.columns)
        if missing:
            raise ReportError(
                f"fine-tuning reference file {str(path)!r} lacks column(s) {sorted(missing)}; "
                "required: dataset, backbone, score."
            )
        rows = frame.cast({"score": pl.Utf8}).iter_rows(named=True)
        return [
            FinetuneRef(r["dataset"], r["backbone"], *_value(r["score"], str(path))) for r in rows
        ]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return [
            FinetuneRef(str(d), str(b), *_value(v, str(path)))
            for d, per in data.items()
            for b, v in (per or {}).items()
        ]
    if isinstance(data, list):
        return [
            FinetuneRef(str(r["dataset"]), str(r["backbone"]), *_value(r["score"], str(path)))
            for r in data
        ]
    raise ReportError(
        f"fine-tuning reference file {str(path)!r} must hold a mapping "
        "{dataset: {backbone: score}} or a list of {dataset, backbone, score}."
    )


def finetune_gap(
    summary: pl.DataFrame, refs: list[FinetuneRef], scale: float, baseline: str = "linear"
) -> pl.DataFrame:
    """Gap table for every summary cell that has a reference; ``scale`` = 100 for [0, 1] scores."""
    columns = {
        "dataset": pl.Utf8,
        "backbone": pl.Utf8,
        "probe": pl.Utf8,
        "mean": pl.Float64,
        "finetune": pl.Float64,
        "baseline_mean": pl.Float64,
        "gap": pl.Float64,
        "gap_closed": pl.Float64,
    }
    rows = []
    observed = summary.filter(pl.col("n") > 0)
    for ref in refs:
        value = ref.score / scale if ref.percent else ref.score
        if scale == 100.0 and not ref.percent and value > 1.0:
            raise ReportError(
                f"fine-tuning reference {ref.dataset}={ref.backbone}:{ref.score} is above 1 but "
                "the scores are in [0, 1]; write it as a fraction (0.402) or in percent (40.2%)."
            )
        cells = observed.filter(
            (pl.col("dataset") == ref.dataset)
            & (
                (pl.col("backbone") == ref.backbone)
                | pl.col("backbone").str.starts_with(ref.backbone + "@")
            )
        )
        if cells.height == 0:
            log.warning(
                "fine-tuning reference %s=%s matches no result (datasets: %s)",
                ref.dataset,
                ref.backbone,
                ", ".join(sorted(observed.get_column("dataset").unique().to_list())),
            )
        for backbone in sorted(cells.get_column("backbone").unique().to_list()):
            group = cells.filter(pl.col("backbone") == backbone)
            base = group.filter(pl.col("probe") == baseline).get_column("mean")
            base_mean = float(base[0]) if base.len() else None
            for row in group.iter_rows(named=True):
                closed = None
                if base_mean is not None and value != base_mean:
                    closed = (row["mean"] - base_mean) / (value - base_mean)
                rows.append(
                    {
                        "dataset": ref.dataset,
                        "backbone": backbone,
                        "probe": row["probe"],
                        "mean": row["mean"],
                        "finetune": value,
                        "baseline_mean": base_mean,
                        "gap": value - row["mean"],
                        "gap_closed": closed,
                    }
                )
    return pl.DataFrame(rows, schema=columns)
