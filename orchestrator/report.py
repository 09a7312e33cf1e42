"""Entry point of the report: ``write_report`` (called by the sweep) and the CLI.

``python -m orchestrator.report --results INPUT [--results INPUT ...] --out DIR`` (files, sweep
folders or ``mlflow:EXPERIMENT[@SWEEP_ID]``, merged: see ``reporting.merge``) or ``--mlflow
EXPERIMENT [--tracking-uri URI]`` turns final-stage seed runs (columns backbone, dataset, probe, seed,
score) into summary tables, win matrices under a selectable tie rule, ranks, significance tests,
plots, ``report.md`` and a LaTeX table. The numbers are computed in ``orchestrator.reporting``;
this module wires them together and owns the CLI (exit code 2 on bad input).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl

from orchestrator.reporting.build import ReportOptions, compute, write_outputs
from orchestrator.reporting.document import render_report
from orchestrator.reporting.merge import MLFLOW_PREFIX, merge_inputs
from orchestrator.reporting.sources import ReportError, load_results
from orchestrator.reporting.stats import POSTHOCS
from orchestrator.reporting.tables import summarize as _summarize
from orchestrator.reporting.tables import write_table
from orchestrator.reporting.winmatrix import TIE_RULE_HELP, TIE_RULES, check_tie_rule, win_counts

__all__ = [
    "TIE_RULES",
    "ReportError",
    "ReportOptions",
    "main",
    "summarize",
    "win_matrix",
    "write_report",
    "write_report_from_mlflow",
]

log = logging.getLogger(__name__)


def summarize(results: pl.DataFrame | str | Path) -> pl.DataFrame:
    """Validated results -> mean, sd (ddof=1), n and bootstrap CI per (backbone, dataset, probe)."""
    return _summarize(load_results(results))


def win_matrix(results: pl.DataFrame | str | Path, tie_rule: str = "opponent") -> pl.DataFrame:
    """Win matrix (``probe`` column + one integer column per opponent) from a results table."""
    check_tie_rule(tie_rule)
    return win_counts(_summarize(load_results(results), n_boot=0), tie_rule).frame()


def write_report(
    results: pl.DataFrame | str | Path,
    out_dir: str | Path,
    tie_rule: str | None = None,
    *,
    options: ReportOptions | None = None,
    expected: pl.DataFrame | None = None,
) -> dict[str, Path]:
    """Write every report file under ``out_dir``; return ``{name: path}``.

    ``tie_rule`` (default ``opponent``) overrides ``options.tie_rule`` when given. ``expected``
    (columns backbone, dataset, probe) names cells that should exist, e.g. studies that failed
    before any final run scored: they show as missing even when no row mentions them.
    Keys: tables by stem (``summary``, ``win_matrix``, ... -> CSV; ``<stem>_parquet``), figures
    as ``<stem>_png``/``<stem>_pdf`` (``win_matrix_png``, ``cd_diagram_png``, ...), ``latex``
    (results_table.tex) and ``report`` (report.md). Raises :class:`ReportError` on bad input.
    """
    options = options or ReportOptions()
    if tie_rule is not None:
        options = replace(options, tie_rule=tie_rule)
    if isinstance(results, (str, Path)) and options.source == ReportOptions.source:
        options = replace(options, source=f"`{results}`")
    options.validate()
    frame = load_results(results, options.allow_mixed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = compute(frame, options, expected)
    paths = write_outputs(data, out)
    report = out / "report.md"
    report.write_text(render_report(data), encoding="utf-8")
    paths["report"] = report
    log.info("wrote %d report files to %s", len(paths), out)
    return paths


def write_report_from_mlflow(
    experiment: str,
    out_dir: str | Path,
    tie_rule: str | None = None,
    *,
    tracking_uri: str | None = None,
    options: ReportOptions | None = None,
    sweep_id: str | None = None,
) -> dict[str, Path]:
    """The same report from the selected final runs of one sweep logged to an MLflow
    experiment (plus ``mlflow_results``); ``sweep_id`` picks the sweep when there are several."""
    from orchestrator.reporting.mlflow_source import load_mlflow

    options = options or ReportOptions()
    if tie_rule is not None:
        options = replace(options, tie_rule=tie_rule)
    options.validate()
    frame, unscored = load_mlflow(experiment, tracking_uri, sweep_id)
    where = f" at {tracking_uri}" if tracking_uri else ""
    which = f", sweep `{sweep_id}`" if sweep_id else ""
    options = replace(options, source=f"MLflow experiment `{experiment}`{which}{where}")
    paths = write_report(frame, out_dir, tie_rule, options=options, expected=unscored)
    paths.update(write_table(frame, Path(out_dir), "mlflow_results"))
    return paths


def _write_merged(
    inputs: list[str], out: Path, tie_rule: str, options: ReportOptions, tracking_uri: str | None
) -> dict[str, Path]:
    merged = merge_inputs(inputs, tracking_uri, options.allow_mixed)
    source = ", ".join(f"`{s}`" for s in merged.sources)
    options = replace(options, source=source, notes=(*options.notes, *merged.notes))
    return write_report(merged.results, out, tie_rule, options=options, expected=merged.expected)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.report",
        description="Aggregate final-stage probing results into tables, win matrices, "
        "significance tests and plots.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--results",
        action="append",
        metavar="INPUT",
        help="long results table (.csv or .parquet: backbone, dataset, probe, seed, score), a "
        "sweep's output folder, or mlflow:EXPERIMENT[@SWEEP_ID]; repeatable: the inputs are "
        "merged by (backbone, dataset, probe, seed)",
    )
    src.add_argument(
        "--mlflow",
        metavar="EXPERIMENT",
        help="read the selected final runs (metric test_score) of one sweep from this experiment",
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--sweep-id",
        help="with --mlflow: the sweep to report when the experiment holds several "
        "(its id is in the sweep's sweep.json and on every run as tag sweep_id)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="merge rows of different protocols (epochs, search budget, seeds, dataset "
        "version); the report states the mix",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--tie-rule",
        default="opponent",
        metavar="RULE",
        help="; ".join(f"{k}: {v}" for k, v in TIE_RULE_HELP.items()),
    )
    parser.add_argument(
        "--posthoc",
        default="nemenyi",
        metavar="TEST",
        help=f"post-hoc test after Friedman: {', '.join(POSTHOCS)}",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument(
        "--compare-probes",
        nargs=2,
        default=("linear", "protobin"),
        metavar=("A", "B"),
        help="rank encoders under probe A vs probe B",
    )
    parser.add_argument(
        "--finetune-ref",
        action="append",
        default=[],
        metavar="REF",
        help="DATASET=BACKBONE:SCORE[%%] (e.g. as20k=eat:40.2%%) or a .csv/.yaml file; repeatable",
    )
    parser.add_argument("--baseline", default="linear", help="baseline probe for the gap")
    parser.add_argument(
        "--datasets",
        default="",
        metavar="A,B,...",
        help="datasets the win matrices, ranks and tests count (default: every dataset of the "
        "results, i.e. the paper's 14 for full_benchmark/paper)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples per cell (0: no CIs)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; returns 0 on success, 2 on bad input (message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    mlflow_inputs = any(r.startswith(MLFLOW_PREFIX) for r in args.results or ())
    if args.sweep_id and not args.mlflow:
        sys.stderr.write("error: --sweep-id only applies with --mlflow EXPERIMENT.\n")
        return 2
    for flag, value in (("--tracking-uri", args.tracking_uri),):
        if value and not (args.mlflow or mlflow_inputs):
            sys.stderr.write(f"error: {flag} only applies with --mlflow EXPERIMENT.\n")
            return 2
    try:
        options = ReportOptions(
            posthoc=args.posthoc,
            alpha=args.alpha,
            compare_probes=tuple(args.compare_probes),
            finetune_refs=tuple(args.finetune_ref),
            baseline=args.baseline,
            datasets=tuple(d.strip() for d in args.datasets.split(",") if d.strip()),
            n_boot=args.bootstrap,
            seed=args.seed,
            allow_mixed=args.allow_mixed,
        )
        if args.mlflow:
            paths = write_report_from_mlflow(
                args.mlflow,
                args.out,
                args.tie_rule,
                tracking_uri=args.tracking_uri,
                options=options,
                sweep_id=args.sweep_id,
            )
        else:
            paths = _write_merged(args.results, args.out, args.tie_rule, options, args.tracking_uri)
    except ReportError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(f"report: {paths['report']}\n")
    sys.stdout.write("\n".join(f"  {name}: {path}" for name, path in sorted(paths.items())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
