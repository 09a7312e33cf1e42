"""Hand-built results tables with exactly known means and sds (three seeds: m - d, m, m + d)."""

from __future__ import annotations

import polars as pl


def cell(backbone: str, dataset: str, probe: str, mean: float, sd: float, **extra) -> list[dict]:
    """Three seed rows whose mean is ``mean`` and whose sample sd (ddof=1) is exactly ``sd``."""
    return [
        {"backbone": backbone, "dataset": dataset, "probe": probe, "seed": s, "score": v, **extra}
        for s, v in enumerate((mean - sd, mean, mean + sd))
    ]


def table(*cells: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([row for c in cells for row in c])


def rules_table() -> pl.DataFrame:
    """Probes a, b over three configurations that separate the four tie rules.

    c1: a 10 ± 1 vs b 8.5 ± 2 -> only ``own`` gives a the win (10 - 1 > 8.5).
    c2: a 10 ± 2 vs b 8.5 ± 1 -> only ``opponent`` gives a the win (10 > 8.5 + 1).
    c3: a 10 ± 1 vs b 9 ± 1   -> a tie under every rule (10 > 9 + 1 is false: strict).
    """
    return table(
        cell("enc", "c1", "a", 10, 1),
        cell("enc", "c1", "b", 8.5, 2),
        cell("enc", "c2", "a", 10, 2),
        cell("enc", "c2", "b", 8.5, 1),
        cell("enc", "c3", "a", 10, 1),
        cell("enc", "c3", "b", 9, 1),
    )


#: Expected wins of a over b per rule in :func:`rules_table` (b never beats a).
RULES_EXPECTED: dict[str, int] = {"opponent": 1, "own": 1, "max": 0, "pooled": 0}
