"""The report beside the paper: shipped values, per-cell deltas, agreement counts, Figure 2."""

from __future__ import annotations

import polars as pl
import pytest

from orchestrator.report import main
from orchestrator.reporting.paper import paper_file, paper_values
from tests.orchestrator.test_report_fixtures import cell, table


def test_shipped_paper_values_load_with_provenance():
    values = paper_values()
    assert {"encoder", "dataset", "probe", "test_score", "source", "confidence"} <= set(
        values.columns
    )
    eat = values.filter(
        (pl.col("encoder") == "eat") & (pl.col("dataset") == "as20k") & (pl.col("probe") == "mhca")
    )
    assert eat.get_column("test_score").item() == pytest.approx(26.11)
    assert "Unmute the Patch Tokens" in paper_file("paper_results.md").read_text()


def test_report_shows_agreeing_cells_and_a_difference(tmp_path):
    results = table(
        # equal to the paper's 17.29 / 26.11 / 31.67 (scores in [0, 1], the paper in percent)
        cell("eat", "as20k", "linear", 0.1729, 0.002),
        cell("eat", "as20k", "protobin", 0.3167, 0.002),
        # the paper says 26.11: 3 points off, outside 1 point and outside the 0.2-point sd
        cell("eat", "as20k", "mhca", 0.2311, 0.002),
        cell("myenc", "as20k", "linear", 0.20, 0.01),  # the paper has no value
        cell("eat@random-tiny", "as20k", "linear", 0.05, 0.01),  # never compared
    )
    src = tmp_path / "results.csv"
    results.write_csv(src)
    assert main(["--results", str(src), "--out", str(tmp_path / "r"), "--bootstrap", "0"]) == 0
    cells = pl.read_csv(tmp_path / "r" / "paper_comparison.csv")
    by_probe = {r["probe"]: r for r in cells.iter_rows(named=True)}
    assert set(by_probe) == {"linear", "protobin", "mhca"}
    assert by_probe["linear"]["within_1pt"] and by_probe["linear"]["within_sd"]
    assert by_probe["mhca"]["diff"] == pytest.approx(-3.0)
    assert not by_probe["mhca"]["within_1pt"] and not by_probe["mhca"]["within_sd"]
    # Figure 2: (protobin - linear) / (finetune 40.2 - linear) for the paper's and your numbers
    closed = (31.67 - 17.29) / (40.2 - 17.29)
    assert by_probe["protobin"]["gap_closed_paper"] == pytest.approx(closed)
    assert by_probe["protobin"]["gap_closed_yours"] == pytest.approx(closed)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Beside the paper" in report
    assert "**2 of 3 cell(s) agree within 1 point**" in report
    assert "2 of 3 cell(s) with several seeds agree within your seed sd" in report
    assert "no paper value" in report and "myenc/as20k/linear" in report
    assert "Not compared: eat@random-tiny: random weights" in report


def test_installed_wheel_carries_the_paper_values(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    src = tmp_path / "src"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(
        Path(__file__).resolve().parents[2],
        src,
        ignore=shutil.ignore_patterns(".*", "outputs", "data", "build", "*.egg-info", "tests"),
    )
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True,
    )
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    code = (
        "import orchestrator.reporting.paper as p; print(p.__file__); "
        "print(p.paper_values().height)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(site))
    assert int(out[1]) == paper_values().height > 60
