"""``report.md``: every section of the report rendered from one :class:`ReportData` bundle."""

from __future__ import annotations

import polars as pl

from orchestrator.reporting import markdown as md
from orchestrator.reporting.build import ReportData
from orchestrator.reporting.paper import render_paper
from orchestrator.reporting.ranks import ALL
from orchestrator.reporting.tables import wide_table
from orchestrator.reporting.winmatrix import TIE_RULE_HELP

_LIST = 10


def _names(items: list[str]) -> str:
    more = f" and {len(items) - _LIST} more" if len(items) > _LIST else ""
    return ", ".join(items[:_LIST]) + more


def _intro(data: ReportData) -> list[str]:
    s = data.summary
    missing = s.filter(pl.col("n") == 0)
    single = s.filter(pl.col("n") == 1)
    rule = data.options.tie_rule
    lines = [
        (
            f"Source: {data.options.source}. {data.results.height} final runs; "
            f"{s.get_column('backbone').n_unique()} backbones, "
            f"{s.get_column('dataset').n_unique()} datasets, "
            f"{s.get_column('probe').n_unique()} probes. Tie rule: **{rule}** "
            f"({TIE_RULE_HELP[rule]})."
        ),
        _scope_line(data),
        *data.options.notes,
    ]
    if missing.height:
        cells = [
            f"{r['backbone']}/{r['dataset']}/{r['probe']}" for r in missing.iter_rows(named=True)
        ]
        lines.append(
            f"**{missing.height} missing cell(s)** (no finished run; shown as —, never "
            f"filled): {_names(cells)}."
        )
    if single.height:
        lines.append(
            f"{single.height} cell(s) have a single seed: no sd, so their comparisons "
            "are undecided (count for neither) and they have no bootstrap CI."
        )
    return lines


def _scope_line(data: ReportData) -> str:
    head = data.headline
    which = (
        "the base (self-supervised) encoders, as the paper's Figure 5"
        if head.name == "base"
        else "every encoder (the results hold no base encoder)"
    )
    chosen = "the datasets chosen with --datasets" if data.options.datasets else "every dataset"
    return (
        f"The headline win matrix, probe ranks and significance test count {which}: "
        f"{head.describe()} ({chosen}). The `_plus` (AudioSet-fine-tuned) encoders have their own "
        f"matrix: {data.plus.describe()}."
    )


def _summary(data: ReportData) -> str:
    unit = "score × 100" if data.scale == 100.0 else "score"

    def interval(row: dict) -> str:
        if row["ci_low"] is None:
            return "—"
        return f"[{row['ci_low'] * data.scale:.2f}, {row['ci_high'] * data.scale:.2f}]"

    ci = data.summary.with_columns(
        pl.struct(["ci_low", "ci_high"]).map_elements(interval, return_dtype=pl.Utf8).alias("ci")
    ).pivot(on="probe", index=["dataset", "backbone"], values="ci")
    ci = ci.select(wide_table(data.summary).columns).sort(["dataset", "backbone"])
    o = data.options
    return md.section(
        "Summary (mean ± sd over seeds)",
        f"{unit}; sd is the sample sd over seeds (ddof = 1); — marks a missing cell.",
        md.md_table(wide_table(data.summary, scale=data.scale)),
        f"{o.ci:.0%} percentile bootstrap CI of the mean ({o.n_boot} resamples of the seeds; "
        "cells with one seed have none):",
        md.md_table(ci),
    )


def _wins(data: ReportData) -> str:
    c = data.counts
    undecided = int(c.undecided.sum()) // 2
    compared = pl.DataFrame(
        {"probe": list(c.probes), **{p: c.compared[:, j].tolist() for j, p in enumerate(c.probes)}}
    )
    return md.section(
        f"Win matrix ({c.rule} rule)",
        f"Counts {data.headline.name} encoders: {data.headline.describe()}. "
        f"Cell (A, B) = number of (backbone, dataset) configurations where A beats B: "
        f"{TIE_RULE_HELP[c.rule]} (strict). Ties count for neither; the diagonal is 0. "
        f"{undecided} probe pair comparison(s) were undecided (a single seed).",
        md.md_table(c.frame()),
        "Configurations compared per pair (both cells present):",
        md.md_table(compared),
        "![win matrix](win_matrix.png)",
    )


def _plus_wins(data: ReportData) -> str:
    c = data.plus_counts
    if c is None:
        return md.section(
            "Win matrix of the _plus encoders", "Not computed: no `_plus` encoder in the results."
        )
    return md.section(
        "Win matrix of the _plus encoders",
        f"Counts {data.plus.describe()}; same rule as above. The paper shows this matrix "
        "separately from the headline one.",
        md.md_table(c.frame()),
        "![_plus win matrix](win_matrix_plus.png)",
    )


def _encoder_wins(data: ReportData) -> str:
    wins = data.encoder_wins
    if wins is None:
        return ""
    return md.section(
        "Encoder wins by domain",
        "The paper's Figure 8 ranking of encoders: for each probe and dataset, encoder A beats B "
        f"under the {data.options.tie_rule} rule; wins are summed over a domain's datasets and "
        "averaged over the probes (`mean_wins`); `general` (every dataset but BirdSet's) and "
        "`birdset` are ranked apart. Every encoder counts, `_plus` included.",
        md.md_table(wins, digits=2),
    )


def _sensitivity(data: ReportData) -> str:
    rules = "; ".join(f"**{k}**: {v}" for k, v in TIE_RULE_HELP.items())
    return md.section(
        "Tie-rule sensitivity",
        f"Rules: {rules}. `cells_changed` counts off-diagonal win-matrix cells that differ; "
        "`decisions_changed` counts (configuration, probe pair) outcomes that differ.",
        md.md_table(data.sensitivity),
        "Total wins per probe under each rule:",
        md.md_table(data.wins_by_rule),
    )


def _ranks(data: ReportData) -> str:
    return md.section(
        "Probe ranks",
        f"Over the headline matrix's configurations ({data.headline.name} encoders). `total_wins`: row sums of the win matrix. `mean_rank`: average rank by seed mean over "
        "the configurations where every probe has a result (1 = best). `borda`: per "
        "configuration one point per present probe with a lower mean, half per equal mean.",
        md.md_table(data.ranks, digits=2),
    )


def _families(data: ReportData) -> str:
    fam = data.families
    if fam is None:
        return md.section(
            "Base vs _plus encoders",
            "Not computed: no encoder family has both a base and a `_plus` backbone.",
        )
    unpaired = f" Left out (no counterpart): {', '.join(fam.unpaired)}." if fam.unpaired else ""
    return md.section(
        "Base vs _plus encoders",
        f"Families with both variants: {', '.join(fam.families)} (family = backbone name before "
        f"`@`, without `_plus`).{unpaired} Rank = competition rank by total wins; "
        "`rank_change = rank_base - rank_plus` (positive: the probe climbs on `_plus`).",
        "Base:",
        md.md_table(fam.base.frame()),
        "_plus:",
        md.md_table(fam.plus.frame()),
        md.md_table(fam.ranks),
        "![families](family_win_matrices.png)",
    )


def _encoders(data: ReportData) -> str:
    a, b = data.options.compare_probes
    if data.encoders is None:
        present = ", ".join(data.counts.probes)
        return md.section(
            f"Encoders under {a} vs {b}",
            f"Not computed: needs both {a} and {b} (probes present: {present}; choose two with "
            "--compare-probes A B).",
        )
    overall = (
        data.encoders.filter(pl.col("dataset") == ALL)
        .drop("dataset")
        .with_columns(pl.col(f"mean_{a}", f"mean_{b}") * data.scale)
    )
    return md.section(
        f"Encoders under {a} vs {b}",
        f"The paper's Figure 6: each backbone's mean test score over the general-audio datasets "
        f"(every dataset but BirdSet's), ranked (1 = best; only backbones with the probe on every "
        f"general dataset are ranked; `rank_shift = rank_{a} - rank_{b}`, positive: climbs under "
        f"{b}). Ranks per dataset: encoder_ranks.csv.",
        md.md_table(overall, digits=3),
        "Kendall's tau between the two rankings per dataset:",
        md.md_table(data.agreement) if data.agreement is not None else "",
        "![encoder ranks](encoder_ranks.png)",
    )


def _significance(data: ReportData) -> str:
    sig = data.significance
    excluded = [f"{b}/{d}" for b, d in sig.excluded]
    note = f" Excluded (incomplete): {_names(excluded)}." if excluded else ""
    head = (
        f"Blocks: {sig.n_blocks} (backbone, dataset) configurations of the headline matrix "
        f"({data.headline.name} encoders) where every probe has a result; value = seed mean.{note}"
    )
    if sig.skipped and sig.statistic is None:
        return md.section("Significance", head, f"Not computed: {sig.skipped}.")
    parts = [
        head,
        f"Friedman chi² = {sig.statistic:.3f}, p = {sig.pvalue:.3g} (scipy.stats.friedmanchisquare).",
    ]
    pvalues = sig.pvalue_frame()
    if pvalues is None:
        parts.append(f"Post-hoc not computed: {sig.skipped}.")
    else:
        cd = (
            f", critical difference {sig.critical_difference:.3f}"
            if sig.critical_difference is not None
            else ""
        )
        parts += [
            f"Post-hoc {sig.posthoc} p-values (scikit-posthocs; alpha = {sig.alpha}{cd}):",
            md.md_table(pvalues),
            "![CD diagram](cd_diagram.png)",
        ]
    return md.section("Significance", *parts)


def _finetune(data: ReportData) -> str:
    if data.finetune is None:
        return ""
    if data.finetune.height == 0:
        return md.section("Gap to fine-tuning", "No reference matched a (dataset, backbone).")
    shown = data.finetune.with_columns(
        (pl.col(c) * data.scale) for c in ("mean", "finetune", "baseline_mean", "gap")
    )
    return md.section(
        "Gap to fine-tuning",
        f"`gap = finetune - mean`; `gap_closed = (mean - {data.options.baseline}) / (finetune - "
        f"{data.options.baseline})`, the share of the baseline-to-fine-tuning gap the probe closes.",
        md.md_table(shown, digits=3),
    )


def _paper(data: ReportData) -> str:
    if data.paper is None:
        return ""
    cells = data.paper.cells.drop("within_1pt", "within_sd", "source", "confidence")
    table = md.md_table(cells, digits=2) if cells.height else ""
    return md.section("Beside the paper", *render_paper(data.paper), table)


def render_report(data: ReportData) -> str:
    """The full ``report.md`` text."""
    sections = [
        _summary(data),
        _wins(data),
        _plus_wins(data),
        _sensitivity(data),
        _ranks(data),
        _families(data),
        _encoders(data),
        _encoder_wins(data),
        _significance(data),
        _finetune(data),
        _paper(data),
        md.section(
            "Files",
            "LaTeX table: `results_table.tex` (needs booktabs). Tables "
            "come as CSV and parquet, figures as PNG and PDF.",
        ),
    ]
    return md.render("Probing results", _intro(data), [s for s in sections if s])
