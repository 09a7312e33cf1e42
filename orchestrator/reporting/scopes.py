"""Which (backbone, dataset) configurations a win matrix counts (the paper's Figure 5).

The paper's headline win matrix, probe ranks, Friedman test and CD diagram count the **base**
(self-supervised) encoders only; the AudioSet-fine-tuned ``_plus`` variants get a matrix of
their own beside it. A *scope* is such a selection: a variant (``base`` or ``plus``, from the
backbone label, see :mod:`orchestrator.reporting.families`) and a set of datasets.

Datasets (a documented choice; the paper's figures use its 14 datasets): by default every
dataset of the results table, so a ``full_benchmark``/``paper`` sweep counts the paper's 14;
``ReportOptions.datasets`` (CLI ``--datasets``) restricts every scope to a named subset.

Dataset domains (Figures 6 and 8): BirdSet's seven test sites (the catalog's ``birdset``
format) are ``birdset``; every other dataset is ``general`` audio (AudioSet-domain sets and the
controls, generated sets included).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import polars as pl

from orchestrator.reporting.families import parse_backbone
from orchestrator.reporting.sources import ReportError

GENERAL, BIRDSET = "general", "birdset"
DOMAINS: tuple[str, ...] = (GENERAL, BIRDSET)


def domain(dataset: str) -> str:
    """``birdset`` for the BirdSet test sites of the catalog, ``general`` otherwise."""
    from orchestrator.datasets import DATASETS

    if dataset in DATASETS and DATASETS.get(dataset).fmt == "birdset":
        return BIRDSET
    return GENERAL


@dataclass(frozen=True)
class Scope:
    """A selection of configurations: its name, what it counts, and the summary rows."""

    name: str  # "base" | "plus" | "all"
    backbones: tuple[str, ...]
    datasets: tuple[str, ...]
    summary: pl.DataFrame

    @property
    def empty(self) -> bool:
        return not self.backbones or not self.datasets

    def describe(self) -> str:
        if self.empty:
            return "nothing (no such backbone in the results)"
        return (
            f"{len(self.backbones)} encoder(s) ({', '.join(self.backbones)}) x "
            f"{len(self.datasets)} dataset(s) ({', '.join(self.datasets)})"
        )


def check_datasets(summary: pl.DataFrame, datasets: tuple[str, ...]) -> tuple[str, ...]:
    """The datasets a report counts: ``datasets`` (checked against the table) or all of them."""
    present = sorted(summary.get_column("dataset").unique().to_list())
    if not datasets:
        return tuple(present)
    for name in datasets:
        if name not in present:
            close = difflib.get_close_matches(name, present, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ReportError(
                f"dataset {name!r} (--datasets) is not in the results.{hint} Datasets present: "
                f"{', '.join(present)}."
            )
    return tuple(dict.fromkeys(datasets))


def select(summary: pl.DataFrame, variant: str, datasets: tuple[str, ...]) -> Scope:
    """The summary rows of ``variant`` backbones (``base``, ``plus`` or ``all``) on ``datasets``."""
    backbones = sorted(
        b
        for b in summary.get_column("backbone").unique().to_list()
        if variant == "all" or parse_backbone(b)[1] == variant
    )
    rows = summary.filter(
        pl.col("backbone").is_in(backbones) & pl.col("dataset").is_in(list(datasets))
    )
    present = set(rows.get_column("dataset").unique().to_list())
    return Scope(variant, tuple(backbones), tuple(d for d in datasets if d in present), rows)
