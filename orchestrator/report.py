"""Entry point of the report: ``write_report`` (called by the sweep) and the CLI.

``python -m orchestrator.report --results FILE --out DIR [--tie-rule RULE]`` turns a long table
of final-stage seed runs (columns backbone, dataset, probe, seed, score) into summary tables,
win matrices, ranks, significance tests, plots, ``report.md`` and a LaTeX table. The numbers are
computed in ``orchestrator.reporting``; this module wires them together and owns the CLI.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from orchestrator.reporting import markdown as md
from orchestrator.reporting.plots import save, win_matrix_figure
from orchestrator.reporting.sources import ReportError, load_results
from orchestrator.reporting.tables import score_scale, wide_table, write_table
from orchestrator.reporting.tables import summarize as _summarize
from orchestrator.reporting.winmatrix import (
    TIE_RULE_HELP,
    TIE_RULES,
    check_tie_rule,
    win_counts,
)

__all__ = ["TIE_RULES", "ReportError", "main", "summarize", "win_matrix", "write_report"]

log = logging.getLogger(__name__)


def summarize(results: pl.DataFrame | str | Path) -> pl.DataFrame:
    """Validated results -> mean, sd (ddof=1), n and bootstrap CI per (backbone, dataset, probe)."""
    return _summarize(load_results(results))


def win_matrix(results: pl.DataFrame | str | Path, tie_rule: str = "opponent") -> pl.DataFrame:
    """Win matrix (``probe`` column + one integer column per opponent) from a results table."""
    check_tie_rule(tie_rule)
    return win_counts(_summarize(load_results(results), n_boot=0), tie_rule).frame()


def write_report(
    results: pl.DataFrame | str | Path, out_dir: str | Path, tie_rule: str = "opponent"
) -> dict[str, Path]:
    """Write every report file under ``out_dir``; return ``{name: path}``.

    Keys include ``summary``, ``win_matrix`` (CSV), ``win_matrix_png`` and ``report``; the
    ``*_parquet``/``*_pdf`` keys name the same content in the other formats.
    """
    check_tie_rule(tie_rule)
    frame = load_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = _summarize(frame)
    scale = score_scale(summary)
    paths: dict[str, Path] = {}
    paths.update(write_table(summary, out, "summary"))
    counts = win_counts(summary, tie_rule)
    paths.update(write_table(counts.frame(), out, "win_matrix"))
    figure = win_matrix_figure(
        counts.wins, counts.probes, f"wins ({tie_rule} rule)", counts.compared
    )
    figs = save(figure, out, "win_matrix")
    paths["win_matrix_png"] = figs.pop("win_matrix")
    paths.update(figs)
    unit = "score × 100" if scale == 100.0 else "score"
    sections = [
        md.section("Summary (mean ± sd over seeds)",
                   f"{unit}; sd has ddof = 1; — marks a missing cell (no finished run).",
                   md.md_table(wide_table(summary, scale=scale))),
        md.section(f"Win matrix ({tie_rule} rule)",
                   f"Cell (A, B) = configurations (backbone, dataset) where A beats B: "
                   f"{TIE_RULE_HELP[tie_rule]}. Ties and undecided comparisons count for neither.",
                   md.md_table(counts.frame()),
                   "![win matrix](win_matrix.png)"),
    ]  # fmt: skip
    intro = [_provenance(frame, summary)]
    report = out / "report.md"
    report.write_text(md.render("Probing results", intro, sections), encoding="utf-8")
    paths["report"] = report
    log.info("wrote %d report files to %s", len(paths), out)
    return paths


def _provenance(frame: pl.DataFrame, summary: pl.DataFrame) -> str:
    missing = summary.filter(pl.col("n") == 0).height
    return (
        f"{frame.height} final runs; {summary.get_column('backbone').n_unique()} backbones, "
        f"{summary.get_column('dataset').n_unique()} datasets, "
        f"{summary.get_column('probe').n_unique()} probes; {missing} missing cell(s)."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.report",
        description="Aggregate final-stage probing results into tables, win matrices and plots.",
    )
    parser.add_argument("--results", type=Path, required=True,
                        help="long results table (.csv or .parquet): backbone, dataset, probe, "
                             "seed, score")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--tie-rule", default="opponent",
                        help="win rule: " + "; ".join(f"{k}: {v}" for k, v in TIE_RULE_HELP.items()))  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; returns 0 on success, 2 on bad input (message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        paths = write_report(args.results, args.out, tie_rule=args.tie_rule)
    except ReportError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write("\n".join(f"{name}: {path}" for name, path in paths.items()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
