"""Computing every report quantity once, then writing the tables, figures and LaTeX files.

``compute`` turns a validated results table into a :class:`ReportData` bundle; ``write_outputs``
writes it. Keeping the two apart means ``report.md`` (rendered from the same bundle) can never
disagree with the CSV/parquet files.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from orchestrator.reporting import plots
from orchestrator.reporting.encoders import domain_wins
from orchestrator.reporting.families import FamilyComparison, compare_families
from orchestrator.reporting.finetune import finetune_gap, parse_refs
from orchestrator.reporting.latex import latex_table
from orchestrator.reporting.paper import PaperComparison, compare_to_paper
from orchestrator.reporting.ranks import ALL, encoder_ranks, probe_ranks, rank_agreement
from orchestrator.reporting.scopes import Scope, check_datasets, select
from orchestrator.reporting.sources import ReportError
from orchestrator.reporting.stats import Significance, check_posthoc, friedman_posthoc
from orchestrator.reporting.tables import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    order_probes,
    score_scale,
    summarize,
)
from orchestrator.reporting.tables import write_table as _write_table
from orchestrator.reporting.winmatrix import (
    TIE_RULES,
    WinCounts,
    check_tie_rule,
    rule_sensitivity,
    total_wins_by_rule,
    win_counts,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """Everything that changes the report's numbers; validated before any work."""

    tie_rule: str = "opponent"
    posthoc: str = "nemenyi"
    alpha: float = 0.05
    compare_probes: tuple[str, str] = ("linear", "protobin")
    finetune_refs: tuple[str, ...] = ()
    baseline: str = "linear"
    n_boot: int = DEFAULT_N_BOOT
    ci: float = DEFAULT_CI
    seed: int = 0
    source: str = "results table"
    datasets: tuple[str, ...] = ()  # datasets the win matrices count; empty: every dataset
    allow_mixed: bool = False  # rows of several dataset versions / protocols (stated in report)
    notes: tuple[str, ...] = ()  # lines the report states under its source (merged inputs)

    def validate(self) -> ReportOptions:
        check_tie_rule(self.tie_rule)
        check_posthoc(self.posthoc)
        if not 0.0 < self.alpha < 1.0 or not 0.0 < self.ci < 1.0:
            raise ReportError(
                f"alpha={self.alpha} and ci={self.ci} must both lie strictly between 0 and 1."
            )
        if self.n_boot < 0:
            raise ReportError(f"n_boot={self.n_boot} must be >= 0 (0 turns bootstrap CIs off).")
        if len(self.compare_probes) != 2:
            raise ReportError(
                f"compare_probes={self.compare_probes!r} must name exactly two probes, "
                "e.g. linear protobin."
            )
        return self


@dataclass(frozen=True)
class ReportData:
    """All computed report quantities for one results table."""

    options: ReportOptions
    results: pl.DataFrame
    summary: pl.DataFrame
    scale: float
    headline: Scope  # what the win matrix, probe ranks and significance count (Figure 5)
    plus: Scope  # the _plus encoders, compared separately
    counts: WinCounts
    plus_counts: WinCounts | None
    sensitivity: pl.DataFrame
    wins_by_rule: pl.DataFrame
    all_rules: pl.DataFrame
    families: FamilyComparison | None
    ranks: pl.DataFrame
    encoders: pl.DataFrame | None
    encoder_wins: pl.DataFrame | None
    agreement: pl.DataFrame | None
    significance: Significance
    finetune: pl.DataFrame | None
    paper: PaperComparison | None = None


def _long_counts(counts: WinCounts) -> list[dict]:
    return [
        {
            "rule": counts.rule,
            "probe": a,
            "opponent": b,
            "wins": int(counts.wins[i, j]),
            "compared": int(counts.compared[i, j]),
            "undecided": int(counts.undecided[i, j]),
        }
        for i, a in enumerate(counts.probes)
        for j, b in enumerate(counts.probes)
        if i != j
    ]


def compute(
    results: pl.DataFrame, options: ReportOptions, expected: pl.DataFrame | None = None
) -> ReportData:
    """Every table of the report from a validated results table (``expected``: see summarize)."""
    options.validate()
    summary = summarize(
        results, n_boot=options.n_boot, ci=options.ci, seed=options.seed, expected=expected
    )
    scale = score_scale(summary)
    datasets = check_datasets(summary, options.datasets)
    headline, plus = select(summary, "base", datasets), select(summary, "plus", datasets)
    if headline.empty:
        headline = select(summary, "all", datasets)
        log.warning("no base encoder in the results: the headline win matrix counts every encoder")
    head = headline.summary
    probes = order_probes(summary.get_column("probe").unique())
    counts = win_counts(head, options.tie_rule, probes)
    plus_counts = None if plus.empty else win_counts(plus.summary, options.tie_rule, probes)
    all_rules = pl.DataFrame(
        [row for rule in TIE_RULES for row in _long_counts(win_counts(head, rule, probes))]
    )
    scoped = summary.filter(pl.col("dataset").is_in(list(datasets)))
    encoders = encoder_ranks(scoped, *options.compare_probes)
    finetune = None
    if options.finetune_refs and options.baseline not in probes:
        close = difflib.get_close_matches(options.baseline, probes, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ReportError(
            f"baseline probe {options.baseline!r} for the fine-tuning gap is not in the results."
            f"{hint} Probes present: {', '.join(probes)}. Pass --baseline with one of them."
        )
    if options.finetune_refs:
        finetune = finetune_gap(summary, parse_refs(options.finetune_refs), scale, options.baseline)
    return ReportData(
        options=options,
        results=results,
        summary=summary,
        scale=scale,
        headline=headline,
        plus=plus,
        counts=counts,
        plus_counts=plus_counts,
        sensitivity=rule_sensitivity(head),
        wins_by_rule=total_wins_by_rule(head),
        all_rules=all_rules,
        families=compare_families(scoped, options.tie_rule),
        ranks=probe_ranks(head, counts),
        encoders=encoders,
        encoder_wins=domain_wins(scoped, options.tie_rule),
        agreement=None if encoders is None else rank_agreement(encoders, *options.compare_probes),
        significance=friedman_posthoc(head, options.posthoc, options.alpha),
        finetune=finetune,
        paper=compare_to_paper(summary, scale),
    )


def write_outputs(data: ReportData, out: Path) -> dict[str, Path]:
    """Write tables (CSV + parquet), figures (PNG + PDF) and the LaTeX table under ``out``."""
    paths: dict[str, Path] = {}

    def table(frame: pl.DataFrame, stem: str) -> None:
        paths.update(_write_table(frame, out, stem))

    def figure(fig, stem: str) -> None:
        paths.update(plots.save(fig, out, stem))

    rule = data.options.tie_rule
    table(data.summary, "summary")
    table(data.counts.frame(), "win_matrix")
    figure(
        plots.win_matrix_figure(
            data.counts.wins,
            data.counts.probes,
            f"{data.headline.name} encoders, row beats column ({rule} rule): wins / compared",
            data.counts.compared,
        ),
        "win_matrix",
    )
    if data.plus_counts is not None:
        table(data.plus_counts.frame(), "win_matrix_plus")
        figure(
            plots.win_matrix_figure(
                data.plus_counts.wins,
                data.plus_counts.probes,
                f"_plus encoders, row beats column ({rule} rule): wins / compared",
                data.plus_counts.compared,
            ),
            "win_matrix_plus",
        )
    table(data.all_rules, "win_matrix_all_rules")
    table(data.sensitivity, "tie_rule_sensitivity")
    table(data.wins_by_rule, "total_wins_by_rule")
    table(data.ranks, "probe_ranks")
    fam = data.families
    if fam is not None:
        table(fam.base.frame(), "family_win_matrix_base")
        table(fam.plus.frame(), "family_win_matrix_plus")
        table(fam.ranks, "family_rank_change")
        change = {
            r["probe"]: (r["rank_base"], r["rank_plus"]) for r in fam.ranks.iter_rows(named=True)
        }
        panels = [
            ("base", fam.base.wins, fam.base.compared),
            ("_plus", fam.plus.wins, fam.plus.compared),
        ]
        figure(plots.family_figure(panels, fam.base.probes, change), "family_win_matrices")
    if data.encoders is not None:
        a, b = data.options.compare_probes
        table(data.encoders, "encoder_ranks")
        figure(plots.encoder_rank_figure(data.encoders, a, b, ALL), "encoder_ranks")
    if data.encoder_wins is not None:
        table(data.encoder_wins, "encoder_wins_by_domain")
    sig = data.significance
    table(sig.summary_frame(), "friedman")
    pvalues = sig.pvalue_frame()
    if pvalues is not None:
        table(pvalues, "posthoc_pvalues")
        title = f"{sig.posthoc} post-hoc, alpha = {sig.alpha}, {sig.n_blocks} configurations" + (
            f", CD = {sig.critical_difference:.2f}" if sig.critical_difference else ""
        )
        figure(plots.cd_figure(sig.mean_ranks, sig.pvalues, sig.alpha, title), "cd_diagram")
    if data.finetune is not None:
        table(data.finetune, "finetune_gap")
    if data.paper is not None and data.paper.cells.height:
        table(data.paper.cells, "paper_comparison")
    tex = out / "results_table.tex"
    tex.write_text(latex_table(data.summary, scale=data.scale), encoding="utf-8")
    paths["latex"] = tex
    return paths
