"""Probe ranks (total wins, mean rank, Borda), encoder families and encoders under two probes."""

from __future__ import annotations

import polars as pl
import pytest

from orchestrator.report import summarize
from orchestrator.reporting.families import compare_families, parse_backbone
from orchestrator.reporting.ranks import ALL, encoder_ranks, probe_ranks
from orchestrator.reporting.winmatrix import win_counts
from tests.orchestrator.test_report_fixtures import cell, table


def test_probe_ranks_by_hand() -> None:
    frame = table(
        cell("e1", "d", "linear", 1, 0.1),
        cell("e1", "d", "mhca", 2, 0.1),
        cell("e1", "d", "protobin", 3, 0.1),
        cell("e2", "d", "linear", 1, 0.1),
        cell("e2", "d", "mhca", 3, 0.1),
        cell("e2", "d", "protobin", 3, 0.1),
        cell("e3", "d", "linear", 2, 0.1),
        cell("e3", "d", "mhca", 1, 0.1),
    )  # fmt: skip  (e3 has no protobin)
    summary = summarize(frame)
    ranks = probe_ranks(summary, win_counts(summary))
    rows = {r["probe"]: r for r in ranks.iter_rows(named=True)}
    assert ranks.get_column("probe").to_list() == ["protobin", "mhca", "linear"]
    assert rows["protobin"]["total_wins"] == 3 and rows["mhca"]["total_wins"] == 2
    assert rows["linear"]["total_wins"] == 1
    # mean rank over complete configs e1, e2: protobin (1 + 1.5) / 2, mhca (2 + 1.5) / 2
    assert rows["protobin"]["mean_rank"] == pytest.approx(1.25)
    assert rows["mhca"]["mean_rank"] == pytest.approx(1.75)
    assert rows["linear"]["mean_rank"] == pytest.approx(3.0)
    assert rows["protobin"]["complete_configs"] == 2
    # Borda over all configs: e1 (0, 1, 2), e2 (0, 1.5, 1.5), e3 (1, 0, -)
    assert rows["linear"]["borda"] == 1 and rows["mhca"]["borda"] == 2.5
    assert rows["protobin"]["borda"] == 3.5 and rows["protobin"]["borda_configs"] == 2


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("eat", ("eat", "base")),
        ("eat_plus", ("eat", "plus")),
        ("eat_plus@random-tiny", ("eat", "plus")),
        ("beats@sha256:abc", ("beats", "base")),
        ("_plus", ("_plus", "base")),
    ],
)
def test_family_derivation(label: str, expected: tuple[str, str]) -> None:
    assert parse_backbone(label) == expected


def test_family_win_matrices_and_rank_change() -> None:
    frame = table(
        cell("eat@random-tiny", "d", "linear", 1, 0.1),
        cell("eat@random-tiny", "d", "protobin", 2, 0.1),
        cell("eat_plus@random-tiny", "d", "linear", 3, 0.1),
        cell("eat_plus@random-tiny", "d", "protobin", 2, 0.1),
        cell("dasheng", "d", "linear", 0, 0.1),
        cell("dasheng", "d", "protobin", 9, 0.1),
    )
    fam = compare_families(summarize(frame))
    assert fam is not None and fam.families == ("eat",) and fam.unpaired == ("dasheng",)
    assert fam.base.frame().rows() == [("linear", 0, 0), ("protobin", 1, 0)]
    assert fam.plus.frame().rows() == [("linear", 0, 1), ("protobin", 0, 0)]
    change = {r["probe"]: r for r in fam.ranks.iter_rows(named=True)}
    assert change["linear"]["rank_base"] == 2 and change["linear"]["rank_plus"] == 1
    assert change["linear"]["rank_change"] == 1 and change["protobin"]["rank_change"] == -1


def test_no_pairs_no_family_comparison() -> None:
    frame = table(cell("eat", "d", "linear", 1, 0.1), cell("beats_plus", "d", "linear", 1, 0.1))
    assert compare_families(summarize(frame)) is None


def test_encoders_ranked_under_two_probes() -> None:
    cells = []
    for dataset in ("d1", "d2"):
        for backbone, lin, pro in (("x", 3, 1), ("y", 2, 2), ("z", 1, 3)):
            if (dataset, backbone) != ("d2", "z"):
                cells.append(cell(backbone, dataset, "linear", lin, 0.1))
            cells.append(cell(backbone, dataset, "protobin", pro, 0.1))
    enc = encoder_ranks(summarize(table(*cells)), "linear", "protobin")
    d1 = {r["backbone"]: r for r in enc.filter(pl.col("dataset") == "d1").iter_rows(named=True)}
    assert (d1["x"]["rank_linear"], d1["x"]["rank_protobin"], d1["x"]["rank_shift"]) == (1, 3, -2)
    assert (d1["z"]["rank_linear"], d1["z"]["rank_protobin"], d1["z"]["rank_shift"]) == (3, 1, 2)
    d2z = enc.filter((pl.col("dataset") == "d2") & (pl.col("backbone") == "z")).row(0, named=True)
    assert d2z["rank_linear"] is None and d2z["rank_protobin"] == 1  # missing, not dropped
    overall = {r["backbone"]: r for r in enc.filter(pl.col("dataset") == ALL).iter_rows(named=True)}
    assert overall["z"]["rank_protobin"] == 1 and overall["x"]["rank_linear"] == 1
    assert encoder_ranks(summarize(table(*cells)), "linear", "mhca") is None
