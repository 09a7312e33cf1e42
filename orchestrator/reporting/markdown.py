"""Rendering of ``report.md``: the summary as mean ± sd, the win matrix and the other sections.

Only formatting lives here; every number comes from the tables computed elsewhere, so the
markdown and the CSV/parquet files can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl


def _fmt(value: object, digits: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def md_table(frame: pl.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured markdown table; nulls shown as "—"."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(_fmt(v, digits) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *body])


def section(title: str, *parts: str) -> str:
    return "\n\n".join([f"## {title}", *[p for p in parts if p]])


def render(title: str, intro: Sequence[str], sections: Sequence[str]) -> str:
    """The whole document: a title, intro paragraphs, then the sections."""
    return "\n\n".join([f"# {title}", *intro, *sections]) + "\n"
