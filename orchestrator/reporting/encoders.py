"""Encoder rankings as the paper computes them (Figures 6 and 8).

- Figure 6 (:func:`general_scores`): per probe, each backbone's **mean test score over the
  general-audio datasets** (every dataset but BirdSet's, see
  :mod:`orchestrator.reporting.scopes`), then backbones ranked by that mean (1 = best; equal
  means share the better rank). Only backbones with the probe on *every* general dataset of the
  table are ranked (a mean over fewer datasets is shown, with its count, but not ranked).
- Figure 8 (:func:`domain_wins`): encoders compared like probes are in Figure 5, but the other
  way round: for one probe and one dataset, backbone A beats B under the report's tie rule
  (e.g. mean_A > mean_B + sd_B). A backbone's wins under a probe are summed over the datasets
  of a domain and then **averaged over the probes**; ``general`` and ``birdset`` are kept apart.
  Backbones are ranked by their average wins per domain (competition rank).
Every backbone is ranked, ``_plus`` variants included (they are encoders too).
"""

from __future__ import annotations

from itertools import permutations

import polars as pl

from orchestrator.reporting.families import competition_rank
from orchestrator.reporting.scopes import BIRDSET, DOMAINS, GENERAL, domain
from orchestrator.reporting.winmatrix import beats


def _observed(summary: pl.DataFrame) -> pl.DataFrame:
    return summary.filter(pl.col("n") > 0).with_columns(
        pl.col("dataset").map_elements(domain, return_dtype=pl.Utf8).alias("domain")
    )


def general_scores(summary: pl.DataFrame, probes: tuple[str, ...]) -> pl.DataFrame | None:
    """backbone, then per probe ``mean_<p>``, ``datasets_<p>``, ``rank_<p>``; None if no data.

    Means are over the general-audio datasets only (Figure 6); rank 1 = best.
    """
    rows = _observed(summary).filter(pl.col("domain") == GENERAL)
    present = [p for p in probes if p in set(rows.get_column("probe").to_list())]
    if not present:
        return None
    general = sorted(rows.get_column("dataset").unique().to_list())
    table = pl.DataFrame({"backbone": sorted(summary.get_column("backbone").unique().to_list())})
    for probe in present:
        part = (
            rows.filter(pl.col("probe") == probe)
            .group_by("backbone")
            .agg(pl.col("mean").mean().alias(f"mean_{probe}"), pl.len().alias(f"datasets_{probe}"))
        )
        complete = part.filter(pl.col(f"datasets_{probe}") == len(general))
        ranks = competition_rank(
            {r["backbone"]: r[f"mean_{probe}"] for r in complete.iter_rows(named=True)}
        )
        part = part.with_columns(
            pl.col("backbone")
            .replace_strict(ranks, default=None, return_dtype=pl.Int64)
            .alias(f"rank_{probe}")
        )
        table = table.join(part, on="backbone", how="left")
    first = f"rank_{present[0]}"
    return table.sort([first, "backbone"], nulls_last=True)


def domain_wins(summary: pl.DataFrame, rule: str) -> pl.DataFrame | None:
    """backbone, domain, probes, datasets, total_wins, mean_wins, rank; None if < 2 backbones.

    ``mean_wins`` = wins summed over the domain's datasets, averaged over the probes (Figure 8).
    """
    rows = _observed(summary)
    if rows.get_column("backbone").n_unique() < 2:
        return None
    cells = {
        (r["domain"], r["probe"], r["dataset"], r["backbone"]): (r["mean"], r["sd"])
        for r in rows.iter_rows(named=True)
    }
    backbones = sorted(rows.get_column("backbone").unique().to_list())
    out = []
    for dom in DOMAINS:
        in_domain = rows.filter(pl.col("domain") == dom)
        if in_domain.height == 0:
            continue
        probes = sorted(in_domain.get_column("probe").unique().to_list())
        datasets = sorted(in_domain.get_column("dataset").unique().to_list())
        wins = dict.fromkeys(backbones, 0)
        for probe in probes:
            for dataset in datasets:
                for a, b in permutations(backbones, 2):
                    ca, cb = (
                        cells.get((dom, probe, dataset, a)),
                        cells.get((dom, probe, dataset, b)),
                    )
                    if ca and cb and beats(rule, *ca, *cb):
                        wins[a] += 1
        mean = {b: wins[b] / len(probes) for b in backbones}
        ranks = competition_rank({b: round(m, 9) for b, m in mean.items()})
        out += [
            {
                "domain": dom,
                "backbone": b,
                "probes": len(probes),
                "datasets": len(datasets),
                "total_wins": wins[b],
                "mean_wins": mean[b],
                "rank": ranks[b],
            }
            for b in backbones
        ]
    return pl.DataFrame(out).sort(["domain", "rank", "backbone"])


__all__ = ["BIRDSET", "GENERAL", "domain_wins", "general_scores"]
