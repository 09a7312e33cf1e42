"""The report's matrices and rankings as the paper defines them (Figures 5, 6 and 8).

Fixture tables are built so that counting the ``_plus`` encoders, BirdSet, or a dataset outside
``--datasets`` would change the asserted numbers.
"""

from __future__ import annotations

import polars as pl
import pytest

from orchestrator.report import ReportError, ReportOptions, main, write_report
from orchestrator.reporting.build import compute
from orchestrator.reporting.encoders import domain_wins, general_scores
from orchestrator.reporting.scopes import domain
from orchestrator.reporting.sources import load_results
from orchestrator.reporting.tables import summarize
from tests.orchestrator.test_report_fixtures import cell, table

OPTS = ReportOptions(n_boot=0)


def paper_table() -> pl.DataFrame:
    """Base eat, beats; eat_plus. On the base encoders protobin beats linear everywhere; on
    eat_plus linear beats protobin everywhere (so counting it would change the headline)."""
    cells = []
    for dataset in ("as20k", "esc50", "hsn"):
        for backbone in ("eat", "beats"):
            cells += [
                cell(backbone, dataset, "linear", 10, 0.1),
                cell(backbone, dataset, "mhca", 12, 0.1),
            ]
            cells.append(cell(backbone, dataset, "protobin", 20, 0.1))
        cells += [
            cell("eat_plus", dataset, "linear", 30, 0.1),
            cell("eat_plus", dataset, "mhca", 25, 0.1),
        ]
        cells.append(cell("eat_plus", dataset, "protobin", 20, 0.1))
    return table(*cells)  # fmt: skip


def wins(frame: pl.DataFrame, a: str, b: str) -> int:
    return frame.filter(pl.col("probe") == a).get_column(b).item()


def test_headline_matrix_counts_base_encoders_and_plus_is_beside_it():
    data = compute(load_results(paper_table()), OPTS)
    head = data.counts.frame()
    assert data.headline.backbones == ("beats", "eat")
    assert wins(head, "protobin", "linear") == 6 and wins(head, "linear", "protobin") == 0
    plus = data.plus_counts.frame()
    assert data.plus.backbones == ("eat_plus",)
    assert wins(plus, "linear", "protobin") == 3 and wins(plus, "protobin", "linear") == 0
    ranks = data.ranks.get_column("probe").to_list()
    assert ranks[0] == "protobin"  # with eat_plus counted, linear would tie it
    assert data.significance.n_blocks == 6  # base encoders x 3 datasets, not 9


def test_datasets_option_restricts_every_matrix_and_unknown_names_are_refused():
    data = compute(load_results(paper_table()), ReportOptions(n_boot=0, datasets=("as20k",)))
    assert data.headline.datasets == ("as20k",)
    assert wins(data.counts.frame(), "protobin", "linear") == 2
    assert wins(data.plus_counts.frame(), "linear", "protobin") == 1
    with pytest.raises(ReportError, match="Did you mean 'esc50'"):
        compute(load_results(paper_table()), ReportOptions(n_boot=0, datasets=("esc5",)))


def test_report_md_names_what_each_matrix_counts(tmp_path):
    paths = write_report(paper_table(), tmp_path, options=OPTS)
    text = paths["report"].read_text()
    assert "count the base (self-supervised) encoders" in text
    assert "2 encoder(s) (beats, eat) x 3 dataset(s) (as20k, esc50, hsn)" in text
    assert "## Win matrix of the _plus encoders" in text
    assert "1 encoder(s) (eat_plus)" in text
    assert paths["win_matrix_plus_png"].stat().st_size > 5000
    headline = pl.read_csv(paths["win_matrix"])
    assert wins(headline, "protobin", "linear") == 6


def test_only_plus_encoders_fall_back_to_counting_every_encoder():
    frame = paper_table().filter(pl.col("backbone") == "eat_plus")
    data = compute(load_results(frame), OPTS)
    assert data.headline.name == "all" and data.headline.backbones == ("eat_plus",)


def test_birdset_sites_are_their_own_domain():
    assert domain("hsn") == domain("nbp") == "birdset"
    assert domain("as20k") == domain("esc50") == domain("synth_events") == "general"
    assert domain("my_own_set") == "general"


def test_figure6_encoder_rank_is_the_mean_over_general_audio_datasets():
    cells = [
        cell("a", "as20k", "linear", 50, 0.1), cell("a", "esc50", "linear", 70, 0.1),
        cell("b", "as20k", "linear", 40, 0.1), cell("b", "esc50", "linear", 90, 0.1),
        cell("a", "hsn", "linear", 90, 0.1), cell("b", "hsn", "linear", 10, 0.1),
        cell("c", "as20k", "linear", 99, 0.1),  # c lacks esc50: shown, not ranked
    ]  # fmt: skip
    scores = general_scores(summarize(table(*cells), n_boot=0), ("linear",))
    rows = {r["backbone"]: r for r in scores.iter_rows(named=True)}
    # a: (50 + 70) / 2 = 60, b: (40 + 90) / 2 = 65 -> b first; BirdSet (hsn) would flip it
    assert rows["b"]["mean_linear"] == pytest.approx(65) and rows["b"]["rank_linear"] == 1
    assert rows["a"]["rank_linear"] == 2
    assert rows["c"]["rank_linear"] is None and rows["c"]["datasets_linear"] == 1


def test_figure8_encoder_wins_averaged_over_probes_per_domain():
    cells = []
    for probe, (ma, mb) in {"linear": (10, 5), "protobin": (10, 10)}.items():
        cells += [cell("a", "as20k", probe, ma, 0.1), cell("b", "as20k", probe, mb, 0.1)]
    cells += [cell("a", "hsn", "linear", 1, 0.1), cell("b", "hsn", "linear", 5, 0.1)]
    cells += [cell("a", "pow", "linear", 1, 0.1), cell("b", "pow", "linear", 5, 0.1)]
    wins_ = domain_wins(summarize(table(*cells), n_boot=0), "opponent")
    got = {(r["domain"], r["backbone"]): r for r in wins_.iter_rows(named=True)}
    # general: a beats b under linear only -> 1 win over 2 probes = 0.5
    assert got[("general", "a")]["mean_wins"] == 0.5 and got[("general", "a")]["rank"] == 1
    assert got[("general", "b")]["total_wins"] == 0 and got[("general", "b")]["rank"] == 2
    # birdset: b beats a on hsn and pow under its one probe
    assert got[("birdset", "b")]["mean_wins"] == 2 and got[("birdset", "b")]["rank"] == 1
    assert got[("birdset", "a")]["probes"] == 1 and got[("birdset", "a")]["datasets"] == 2


def test_cli_datasets_option(tmp_path, capsys):
    paper_table().write_csv(tmp_path / "r.csv")
    args = ["--results", str(tmp_path / "r.csv"), "--bootstrap", "0"]
    assert main([*args, "--out", str(tmp_path / "o"), "--datasets", "as20k,hsn"]) == 0
    text = (tmp_path / "o" / "report.md").read_text()
    assert "x 2 dataset(s) (as20k, hsn) (the datasets chosen with --datasets)" in text
    assert main([*args, "--out", str(tmp_path / "x"), "--datasets", "as2k"]) == 2
    assert "Did you mean 'as20k'" in capsys.readouterr().err
