"""Win matrices under every tie rule on tables with known winners, ties and missing cells."""

from __future__ import annotations

import math

import polars as pl
import pytest

from orchestrator.report import ReportError, summarize, win_matrix
from orchestrator.reporting.winmatrix import TIE_RULES, beats, rule_sensitivity, win_counts
from tests.orchestrator.test_report_fixtures import RULES_EXPECTED, cell, rules_table, table


@pytest.mark.parametrize("rule", TIE_RULES)
def test_each_rule_counts_known_winner(rule: str) -> None:
    wm = win_matrix(rules_table(), tie_rule=rule)
    assert wm.columns == ["probe", "a", "b"]
    assert wm.get_column("probe").to_list() == ["a", "b"]
    assert wm.row(0) == ("a", 0, RULES_EXPECTED[rule])
    assert wm.row(1) == ("b", 0, 0)


def test_rule_definitions_on_single_pairs() -> None:
    assert beats("opponent", 10, 2, 8.5, 1) and not beats("opponent", 10, 1, 8.5, 2)
    assert beats("own", 10, 1, 8.5, 2) and not beats("own", 10, 2, 8.5, 1)
    assert beats("max", 11, 1, 8.5, 2) and not beats("max", 10, 1, 8.5, 2)
    pooled = math.sqrt((1 + 4) / 2)
    assert beats("pooled", 8.5 + pooled + 1e-9, 1, 8.5, 2)
    assert not beats("pooled", 8.5 + pooled - 1e-9, 1, 8.5, 2)
    assert beats("opponent", 10, None, 8, 1) is None


def test_exact_boundary_is_a_tie_for_both_sides() -> None:
    wm = win_matrix(table(cell("e", "d", "a", 10, 1), cell("e", "d", "b", 9, 1)))
    assert wm.drop("probe").to_numpy().sum() == 0


def test_missing_cell_is_not_compared_and_not_dropped() -> None:
    frame = table(
        cell("e1", "d", "linear", 1, 0.1),
        cell("e1", "d", "protobin", 5, 0.1),
        cell("e2", "d", "linear", 1, 0.1),  # protobin on e2 is missing
        cell("e2", "d", "mhca", 4, 0.1),
        cell("e1", "d", "mhca", 3, 0.1),
    )
    summary = summarize(frame)
    assert summary.height == 6  # full grid 2 x 1 x 3
    missing = summary.filter(pl.col("n") == 0)
    assert missing.select("backbone", "probe").rows() == [("e2", "protobin")]
    counts = win_counts(summary)
    assert counts.probes == ("linear", "mhca", "protobin")
    assert counts.wins.tolist() == [[0, 0, 0], [2, 0, 0], [1, 1, 0]]
    assert counts.compared.tolist() == [[0, 2, 1], [2, 0, 1], [1, 1, 0]]


def test_single_seed_is_undecided_not_a_win() -> None:
    frame = pl.DataFrame(
        {
            "backbone": ["e", "e"],
            "dataset": ["d", "d"],
            "probe": ["a", "b"],
            "seed": [0, 0],
            "score": [0.9, 0.1],
        }
    )
    counts = win_counts(summarize(frame))
    assert counts.wins.sum() == 0
    assert counts.undecided[0, 1] == 1


def test_probe_order_follows_paper_then_alphabet() -> None:
    frame = table(*(cell("e", "d", p, 1, 0.1) for p in ("zeta", "protobin", "linear", "mhca")))
    assert win_matrix(frame).get_column("probe").to_list() == ["linear", "mhca", "protobin", "zeta"]


def test_sensitivity_counts_changed_cells() -> None:
    sens = rule_sensitivity(summarize(rules_table()))
    row = sens.filter((pl.col("rule_a") == "opponent") & (pl.col("rule_b") == "max")).row(
        0, named=True
    )
    assert row["cells_changed"] == 1 and row["decisions_changed"] == 1 and row["cells_total"] == 2
    row = sens.filter((pl.col("rule_a") == "opponent") & (pl.col("rule_b") == "own")).row(
        0, named=True
    )
    # same count (1 each) but won on different configurations
    assert row["cells_changed"] == 0 and row["decisions_changed"] == 2
    assert sens.height == 6


def test_unknown_rule_names_choices() -> None:
    with pytest.raises(ReportError, match=r"'bogus'.*opponent, own, max, pooled"):
        win_matrix(rules_table(), tie_rule="bogus")
