"""Win matrices per encoder family: base encoders vs their AudioSet-fine-tuned ``_plus`` variants.

How a backbone label maps to a family (paper Fig. 8):

1. Anything after the first ``@`` is provenance, not identity: ``eat@random-tiny`` -> ``eat``.
2. A name ending in ``_plus`` is the fine-tuned ("supervised+") variant of the name without it:
   ``eat_plus`` -> family ``eat``, variant ``plus``; every other name is variant ``base``.
3. Only *paired* families (both variants present in the table) enter the comparison, so the two
   matrices cover the same encoders and datasets and a rank change reflects fine-tuning, not a
   different encoder set. Unpaired backbones are listed in the report.

Each probe's rank is its competition rank by total wins within a variant (1 = most wins, equal
totals share the better rank); ``rank_change = rank_base - rank_plus`` (positive: the probe
climbs on the fine-tuned encoders).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from orchestrator.reporting.tables import order_probes
from orchestrator.reporting.winmatrix import WinCounts, win_counts

PLUS_SUFFIX = "_plus"
VARIANTS: tuple[str, ...] = ("base", "plus")


def parse_backbone(label: str) -> tuple[str, str]:
    """``(family, variant)`` of a backbone label, e.g. ``eat_plus@random-tiny`` -> (eat, plus)."""
    name = label.split("@", 1)[0]
    if name.endswith(PLUS_SUFFIX) and len(name) > len(PLUS_SUFFIX):
        return name[: -len(PLUS_SUFFIX)], "plus"
    return name, "base"


def with_family(summary: pl.DataFrame) -> pl.DataFrame:
    """Add ``family`` and ``variant`` columns derived from ``backbone``."""
    parsed = {b: parse_backbone(b) for b in summary.get_column("backbone").unique().to_list()}
    return summary.with_columns(
        pl.col("backbone").replace_strict({b: f for b, (f, _) in parsed.items()}).alias("family"),
        pl.col("backbone").replace_strict({b: v for b, (_, v) in parsed.items()}).alias("variant"),
    )


def competition_rank(totals: dict[str, int]) -> dict[str, int]:
    """1 + the number of probes with strictly more wins."""
    return {p: 1 + sum(other > t for other in totals.values()) for p, t in totals.items()}


@dataclass(frozen=True)
class FamilyComparison:
    """Win counts on the base and on the ``_plus`` backbones of the paired families."""

    families: tuple[str, ...]
    unpaired: tuple[str, ...]
    base: WinCounts
    plus: WinCounts
    ranks: pl.DataFrame  # probe, wins_base, rank_base, wins_plus, rank_plus, rank_change


def compare_families(summary: pl.DataFrame, rule: str = "opponent") -> FamilyComparison | None:
    """Base vs ``_plus`` win matrices over paired families; None if no family has both."""
    tagged = with_family(summary)
    variants = tagged.group_by("family").agg(pl.col("variant").unique())
    paired = sorted(
        row["family"]
        for row in variants.iter_rows(named=True)
        if set(VARIANTS) <= set(row["variant"])
    )
    unpaired = sorted(
        tagged.filter(~pl.col("family").is_in(paired)).get_column("backbone").unique().to_list()
    )
    if not paired:
        return None
    probes = order_probes(summary.get_column("probe").unique())
    counts = {
        v: win_counts(
            tagged.filter(pl.col("family").is_in(paired) & (pl.col("variant") == v)), rule, probes
        )
        for v in VARIANTS
    }
    totals = {v: counts[v].total_wins() for v in VARIANTS}
    ranks = {v: competition_rank(totals[v]) for v in VARIANTS}
    table = pl.DataFrame(
        {
            "probe": probes,
            "wins_base": [totals["base"][p] for p in probes],
            "rank_base": [ranks["base"][p] for p in probes],
            "wins_plus": [totals["plus"][p] for p in probes],
            "rank_plus": [ranks["plus"][p] for p in probes],
            "rank_change": [ranks["base"][p] - ranks["plus"][p] for p in probes],
        }
    )
    return FamilyComparison(tuple(paired), tuple(unpaired), counts["base"], counts["plus"], table)
