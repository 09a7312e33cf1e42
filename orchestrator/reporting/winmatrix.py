"""Pairwise win matrices between probes under a selectable tie rule (shared/PAPER.md, Fig. 5).

For one configuration (backbone, dataset) and probes A, B with seed mean m and sample sd s
(ddof=1), A *beats* B iff ``m_A - m_B > margin`` where the margin depends on the tie rule:

- ``opponent`` (default, the paper's rule as recovered): ``margin = s_B``
- ``own``: ``margin = s_A``  (i.e. ``m_A - s_A > m_B``)
- ``max``: ``margin = max(s_A, s_B)``
- ``pooled``: ``margin = sqrt((s_A**2 + s_B**2) / 2)``

The inequality is strict. If neither probe beats the other the configuration is a tie and
counts for neither. A configuration where either cell is missing is not compared; one where
either sd is undefined (a single seed) is *undecided* and also counts for neither. Cell (A, B)
is the number of configurations A beats B; the diagonal is 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import polars as pl

from orchestrator.reporting.sources import ReportError
from orchestrator.reporting.tables import order_probes

TIE_RULES: tuple[str, ...] = ("opponent", "own", "max", "pooled")
TIE_RULE_HELP: dict[str, str] = {
    "opponent": "A beats B iff mean_A > mean_B + sd_B",
    "own": "A beats B iff mean_A - sd_A > mean_B",
    "max": "A beats B iff mean_A > mean_B + max(sd_A, sd_B)",
    "pooled": "A beats B iff mean_A > mean_B + sqrt((sd_A^2 + sd_B^2) / 2)",
}


def check_tie_rule(rule: str) -> str:
    """Return ``rule`` or raise :class:`ReportError` naming the valid rules."""
    if rule not in TIE_RULES:
        raise ReportError(
            f"unknown tie rule {rule!r}; valid tie rules: {', '.join(TIE_RULES)} "
            f"(default: opponent). Pass e.g. --tie-rule opponent."
        )
    return rule


def margin(rule: str, sd_a: float, sd_b: float) -> float:
    """The margin by which A's mean must exceed B's for A to beat B."""
    if rule == "opponent":
        return sd_b
    if rule == "own":
        return sd_a
    if rule == "max":
        return max(sd_a, sd_b)
    if rule == "pooled":
        return math.sqrt((sd_a**2 + sd_b**2) / 2.0)
    raise ReportError(check_tie_rule(rule))


def beats(
    rule: str, mean_a: float, sd_a: float | None, mean_b: float, sd_b: float | None
) -> bool | None:
    """True if A beats B, False if not, None if undecidable (an sd is undefined)."""
    if sd_a is None or sd_b is None or math.isnan(sd_a) or math.isnan(sd_b):
        return None
    return mean_a - mean_b > margin(rule, sd_a, sd_b)


@dataclass(frozen=True)
class WinCounts:
    """Win counts between probes plus the bookkeeping needed to read them honestly."""

    rule: str
    probes: tuple[str, ...]
    wins: np.ndarray  # [k, k] int: configurations row beats column
    compared: np.ndarray  # [k, k] int: configurations where both cells exist
    undecided: np.ndarray  # [k, k] int: compared, but an sd is undefined
    decisions: dict[tuple[str, str, str, str], int]  # (config..., A, B) -> +1 A, -1 B, 0 tie

    def frame(self) -> pl.DataFrame:
        """``probe`` column then one Int64 column per opponent, in row order."""
        data: dict[str, list] = {"probe": list(self.probes)}
        for j, opponent in enumerate(self.probes):
            data[opponent] = [int(v) for v in self.wins[:, j]]
        return pl.DataFrame(data, schema={"probe": pl.Utf8, **dict.fromkeys(self.probes, pl.Int64)})

    def total_wins(self) -> dict[str, int]:
        return {p: int(self.wins[i].sum()) for i, p in enumerate(self.probes)}


def _configs(summary: pl.DataFrame) -> dict[tuple[str, str], dict[str, tuple[float, float | None]]]:
    out: dict[tuple[str, str], dict[str, tuple[float, float | None]]] = {}
    for row in summary.filter(pl.col("n") > 0).iter_rows(named=True):
        out.setdefault((row["backbone"], row["dataset"]), {})[row["probe"]] = (
            row["mean"],
            row["sd"],
        )
    return out


def win_counts(
    summary: pl.DataFrame, rule: str = "opponent", probes: list[str] | None = None
) -> WinCounts:
    """Count wins between every pair of probes over the (backbone, dataset) configurations."""
    check_tie_rule(rule)
    if probes is None:
        probes = order_probes(summary.get_column("probe").unique())
    index = {p: i for i, p in enumerate(probes)}
    k = len(probes)
    wins, compared, undecided = (np.zeros((k, k), dtype=np.int64) for _ in range(3))
    decisions: dict[tuple[str, str, str, str], int] = {}
    for (backbone, dataset), cells in sorted(_configs(summary).items()):
        for a, b in combinations([p for p in probes if p in cells], 2):
            i, j = index[a], index[b]
            compared[i, j] += 1
            compared[j, i] += 1
            a_wins = beats(rule, *cells[a], *cells[b])
            b_wins = beats(rule, *cells[b], *cells[a])
            if a_wins is None or b_wins is None:
                undecided[i, j] += 1
                undecided[j, i] += 1
                continue
            wins[i, j] += a_wins
            wins[j, i] += b_wins
            decisions[(backbone, dataset, a, b)] = int(a_wins) - int(b_wins)
    return WinCounts(rule, tuple(probes), wins, compared, undecided, decisions)


def win_matrix_frame(summary: pl.DataFrame, tie_rule: str = "opponent") -> pl.DataFrame:
    """The win matrix as a frame: ``probe`` then one integer column per opponent."""
    return win_counts(summary, tie_rule).frame()


def rule_sensitivity(summary: pl.DataFrame) -> pl.DataFrame:
    """How much the win matrix changes between every pair of tie rules.

    ``cells_changed``: off-diagonal matrix cells whose count differs; ``decisions_changed``:
    (configuration, probe pair) outcomes that differ; ``abs_count_change``: sum of absolute
    differences of the counts.
    """
    probes = order_probes(summary.get_column("probe").unique())
    counts = {r: win_counts(summary, r, probes) for r in TIE_RULES}
    rows = []
    for r1, r2 in combinations(TIE_RULES, 2):
        w1, w2 = counts[r1], counts[r2]
        diff = w1.wins != w2.wins
        decided = set(w1.decisions) | set(w2.decisions)
        rows.append(
            {
                "rule_a": r1,
                "rule_b": r2,
                "cells_changed": int(diff.sum()),
                "cells_total": len(probes) * (len(probes) - 1),
                "decisions_changed": sum(
                    w1.decisions.get(d) != w2.decisions.get(d) for d in decided
                ),
                "abs_count_change": int(np.abs(w1.wins - w2.wins).sum()),
            }
        )
    return pl.DataFrame(rows)


def total_wins_by_rule(summary: pl.DataFrame) -> pl.DataFrame:
    """Total wins per probe under each tie rule (one column per rule)."""
    probes = order_probes(summary.get_column("probe").unique())
    data: dict[str, list] = {"probe": probes}
    for rule in TIE_RULES:
        totals = win_counts(summary, rule, probes).total_wins()
        data[rule] = [totals[p] for p in probes]
    return pl.DataFrame(data)
