"""Friedman + post-hoc + CD checked against scipy / scikit-posthocs; bootstrap CIs per cell."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scikit_posthocs as sp
from scipy.stats import friedmanchisquare

from orchestrator.report import summarize
from orchestrator.reporting.stats import friedman_posthoc, nemenyi_cd
from orchestrator.reporting.tables import bootstrap_ci
from tests.orchestrator.test_report_fixtures import cell, table

PROBES = ["linear", "mhca", "ep", "protobin"]
# Six configurations x four probes (seed means); config 2 has a tie between mhca and ep.
MEANS = np.array(
    [
        [0.20, 0.30, 0.28, 0.35],
        [0.25, 0.27, 0.29, 0.33],
        [0.22, 0.31, 0.31, 0.30],
        [0.30, 0.29, 0.35, 0.40],
        [0.18, 0.26, 0.24, 0.29],
        [0.27, 0.33, 0.32, 0.31],
    ]
)


def known_table() -> pl.DataFrame:
    cells = [
        cell(f"enc{i}", "d", p, float(MEANS[i, j]), 0.01)
        for i in range(MEANS.shape[0])
        for j, p in enumerate(PROBES)
    ]
    return table(*cells)


def test_friedman_and_nemenyi_match_the_libraries() -> None:
    sig = friedman_posthoc(summarize(known_table()), "nemenyi")
    stat, p = friedmanchisquare(*MEANS.T)
    assert sig.skipped is None and sig.n_blocks == 6
    assert math.isclose(sig.statistic, stat) and math.isclose(sig.pvalue, p)
    expected = sp.posthoc_nemenyi_friedman(pd.DataFrame(MEANS, columns=PROBES))
    np.testing.assert_allclose(sig.pvalues.loc[PROBES, PROBES], expected.loc[PROBES, PROBES])
    # ranks by hand: linear is last everywhere but config 3 (rank 3 there)
    assert sig.mean_ranks["linear"] == pytest.approx((4 + 4 + 4 + 3 + 4 + 4) / 6)
    assert sig.mean_ranks["mhca"] == pytest.approx((2 + 3 + 1.5 + 4 + 2 + 1) / 6)
    assert sig.critical_difference == pytest.approx(nemenyi_cd(4, 6))


def test_wilcoxon_holm_matches_the_library() -> None:
    sig = friedman_posthoc(summarize(known_table()), "wilcoxon-holm")
    long = pd.DataFrame(MEANS, columns=PROBES).melt(var_name="probe", value_name="score")
    expected = sp.posthoc_wilcoxon(long, val_col="score", group_col="probe", p_adjust="holm")
    np.testing.assert_allclose(sig.pvalues.loc[PROBES, PROBES], expected.loc[PROBES, PROBES])
    assert sig.critical_difference is None


def test_nemenyi_cd_matches_demsar_table() -> None:
    # Demšar (2006), Table 5: q_0.05 = 2.569 for k = 4; CD = q * sqrt(k (k + 1) / (6 N)).
    assert nemenyi_cd(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=1e-3)
    assert nemenyi_cd(3, 10) == pytest.approx(2.343 * math.sqrt(12 / 60), abs=1e-3)


def test_incomplete_configurations_are_excluded_and_listed() -> None:
    frame = known_table().filter(~((pl.col("backbone") == "enc0") & (pl.col("probe") == "ep")))
    sig = friedman_posthoc(summarize(frame))
    assert sig.n_blocks == 5 and sig.excluded == (("enc0", "d"),)
    stat, _ = friedmanchisquare(*MEANS[1:].T)
    assert math.isclose(sig.statistic, stat)


def test_too_few_probes_or_blocks_is_skipped_with_a_reason() -> None:
    two = known_table().filter(pl.col("probe").is_in(["linear", "mhca"]))
    assert "at least 3 probes" in friedman_posthoc(summarize(two)).skipped
    one = known_table().filter(pl.col("backbone") == "enc0")
    assert "at least 2 configurations" in friedman_posthoc(summarize(one)).skipped


def test_bootstrap_ci_per_cell() -> None:
    summary = summarize(known_table())
    row = summary.row(0, named=True)
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert row["ci_low"] >= row["mean"] - 0.01 and row["ci_high"] <= row["mean"] + 0.01
    again = summarize(known_table().reverse())
    assert again.equals(summary)  # order-independent seeding
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    low, high = bootstrap_ci(scores, "k", n_boot=4000, ci=0.9)
    assert 1.0 < low < 3.0 < high < 5.0
    assert bootstrap_ci(np.array([1.0]), "k") == (None, None)
