"""Every report output from one hand-built table: figures, LaTeX, fine-tuning gap, report.md."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from orchestrator.report import ReportError, ReportOptions, main, summarize, write_report
from orchestrator.reporting.finetune import finetune_gap, parse_refs
from orchestrator.reporting.latex import latex_table
from tests.orchestrator.test_report_fixtures import cell, table

FIGURES = ("win_matrix", "win_matrix_plus", "family_win_matrices", "encoder_ranks", "cd_diagram")


def full() -> pl.DataFrame:
    """eat/eat_plus/beats x as20k/esc50 x linear/mhca/protobin; beats/esc50/protobin missing."""
    means = {"linear": 0.17, "mhca": 0.26, "protobin": 0.31}
    enc = {"eat": 0.0, "eat_plus": 0.1, "beats": 0.05}
    cells = [
        cell(b, d, p, m + eo + do, 0.01, dataset_version="1")
        for b, eo in enc.items()
        for d, do in {"as20k": 0.0, "esc50": 0.5}.items()
        for p, m in means.items()
        if (b, d, p) != ("beats", "esc50", "protobin")
    ]
    return table(*cells)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report")
    options = ReportOptions(finetune_refs=("as20k=eat:40.2%",), n_boot=200)
    return write_report(full(), out, options=options)


def test_figures_png_and_pdf_non_empty(report: dict[str, Path]) -> None:
    for stem in FIGURES:
        png, pdf = report[f"{stem}_png"], report[f"{stem}_pdf"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, stem
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000, stem


def test_tables_in_csv_and_parquet(report: dict[str, Path]) -> None:
    stems = (
        "summary",
        "win_matrix",
        "win_matrix_all_rules",
        "tie_rule_sensitivity",
        "total_wins_by_rule",
        "probe_ranks",
        "win_matrix_plus",
        "family_win_matrix_base",
        "family_win_matrix_plus",
        "encoder_wins_by_domain",
        "family_rank_change",
        "encoder_ranks",
        "friedman",
        "posthoc_pvalues",
        "finetune_gap",
    )
    for stem in stems:
        csv, parquet = pl.read_csv(report[stem]), pl.read_parquet(report[f"{stem}_parquet"])
        assert csv.height > 0 and csv.shape == parquet.shape, stem
    all_rules = pl.read_parquet(report["win_matrix_all_rules_parquet"])
    assert sorted(all_rules.get_column("rule").unique()) == ["max", "opponent", "own", "pooled"]


def test_report_md_has_every_section(report: dict[str, Path]) -> None:
    text = report["report"].read_text()
    for heading in (
        "Summary",
        "Win matrix (opponent rule)",
        "Tie-rule sensitivity",
        "Probe ranks",
        "Base vs _plus",
        "Encoders under linear vs protobin",
        "Significance",
        "Gap to fine-tuning",
    ):
        assert f"## {heading}" in text, heading
    assert "beats/esc50/protobin" in text  # the missing cell is named
    assert "![CD diagram](cd_diagram.png)" in text


def test_latex_bold_best_and_missing() -> None:
    frame = table(
        cell("eat_plus", "as20k", "linear", 0.2, 0.01),
        cell("eat_plus", "as20k", "mhca", 0.3, 0.02),
        cell("beats", "as20k", "linear", 0.25, 0.01),
        cell("beats", "as20k", "mhca", 0.25, 0.03),
        cell("eat_plus", "esc50", "linear", 0.5, 0.01),
    )
    tex = latex_table(summarize(frame), scale=100.0)
    assert r"as20k & beats & $\mathbf{25.00" in tex
    assert r" & eat\_plus & $20.00 \pm 1.00$ & $\mathbf{30.00 \pm 2.00}$ \\" in tex
    assert r"$\mathbf{25.00 \pm 1.00}$ & $\mathbf{25.00 \pm 3.00}$" in tex  # equal best: both
    assert r"$\mathbf{50.00 \pm 1.00}$ & -- \\" in tex  # missing cell printed, not dropped
    assert r"esc50 & beats & -- & -- \\" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and "eat\\_plus" in tex


def test_finetune_gap_paper_example() -> None:
    frame = table(
        cell("eat", "as20k", "linear", 0.1729, 0.001),
        cell("eat", "as20k", "protobin", 0.3167, 0.001),
    )
    gap = finetune_gap(summarize(frame), parse_refs(["as20k=eat:40.2%"]), scale=100.0)
    row = gap.filter(pl.col("probe") == "protobin").row(0, named=True)
    assert row["finetune"] == pytest.approx(0.402)
    assert row["gap_closed"] == pytest.approx((31.67 - 17.29) / (40.2 - 17.29))
    assert row["gap"] == pytest.approx(0.402 - 0.3167)
    with pytest.raises(ReportError, match="above 1"):
        finetune_gap(summarize(frame), parse_refs(["as20k=eat:40.2"]), scale=100.0)


def test_finetune_refs_from_files(tmp_path: Path) -> None:
    yml = tmp_path / "ft.yaml"
    yml.write_text("as20k:\n  eat: 40.2%\n  beats: 0.38\n")
    csv = tmp_path / "ft.csv"
    csv.write_text("dataset,backbone,score\nesc50,eat,0.95\n")
    refs = parse_refs([str(yml), str(csv)])
    assert [(r.dataset, r.backbone, r.score, r.percent) for r in refs] == [
        ("as20k", "eat", 40.2, True),
        ("as20k", "beats", 0.38, False),
        ("esc50", "eat", 0.95, False),
    ]
    with pytest.raises(ReportError, match="DATASET=BACKBONE:SCORE"):
        parse_refs(["as20k:eat=40"])


def test_cli_all_options(tmp_path: Path, capsys) -> None:
    src = tmp_path / "r.csv"
    full().write_csv(src)
    out = tmp_path / "out"
    rc = main(
        [
            "--results",
            str(src),
            "--out",
            str(out),
            "--posthoc",
            "wilcoxon-holm",
            "--finetune-ref",
            "as20k=eat:40.2%",
            "--bootstrap",
            "100",
            "--tie-rule",
            "pooled",
        ]
    )
    assert rc == 0 and (out / "finetune_gap.csv").is_file()
    assert "wilcoxon-holm" in (out / "report.md").read_text()
    assert main(["--results", str(src), "--out", str(out), "--posthoc", "tukey"]) == 2
    err = capsys.readouterr().err
    assert "'tukey'" in err and "nemenyi, wilcoxon-holm" in err


def test_uncomputable_sections_say_so(tmp_path: Path) -> None:
    frame = table(cell("eat", "d", "linear", 1, 0.1), cell("eat", "d", "mhca", 2, 0.1))
    paths = write_report(frame, tmp_path)
    assert "cd_diagram_png" not in paths and "family_win_matrices_png" not in paths
    text = paths["report"].read_text()
    assert "Not computed: needs at least 3 probes" in text
    assert "Not computed: needs both linear and protobin" in text


def test_unknown_baseline_refused(tmp_path: Path) -> None:
    options = ReportOptions(finetune_refs=("as20k=eat:40.2%",), baseline="linaer")
    with pytest.raises(ReportError, match=r"'linaer'.*Did you mean 'linear'\?"):
        write_report(full(), tmp_path, options=options)
