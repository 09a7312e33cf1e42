"""The paper's published numbers beside yours: per-cell deltas and Figure 2's gap closed.

A researcher reproducing "Unmute the Patch Tokens" wants to see, for every (encoder, dataset,
probe) the paper reports, how far their mean is from the published one; one benchmarking a new
encoder wants the paper's values as a fixed reference. The values that could be recovered ship
with the package (``paper_data/paper_results.csv``, provenance in ``paper_data/paper_results.md``):
test scores in percent, each the paper's mean over 5 seeds, with the table they come from and a
confidence note.

Random-weight encoders (a backbone label whose provenance after ``@`` says ``random``) are never
compared: their numbers measure an untrained network, not the published checkpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import polars as pl

log = logging.getLogger(__name__)

PAPER_CSV = "paper_results.csv"
PAPER_NOTE = "paper_results.md"
PAPER_CITATION = '"Unmute the Patch Tokens" (arXiv 2509.24901, v4)'
FINETUNE = "finetune"
AGREE_POINTS = 1.0


def paper_file(name: str = PAPER_CSV):
    """The shipped file ``name`` under ``orchestrator/reporting/paper_data``."""
    return resources.files("orchestrator.reporting").joinpath("paper_data", name)


def paper_values() -> pl.DataFrame:
    """The shipped paper values: encoder, dataset, probe, test_score (percent), metric, source,
    confidence, note. ``probe == "finetune"`` rows are the fine-tuning references of Figure 2."""
    with paper_file().open("rb") as handle:
        return pl.read_csv(handle.read())


def is_random(backbone: str) -> bool:
    """True for random-weight encoders (``eat@random-tiny``), which are never compared."""
    _, _, provenance = backbone.partition("@")
    return "random" in provenance.lower()


def _family(backbone: str) -> str:
    return backbone.split("@", 1)[0]


@dataclass(frozen=True)
class PaperComparison:
    """Your cells beside the paper's: ``cells`` has one row per cell the paper reports."""

    cells: pl.DataFrame  # backbone, dataset, probe, paper, yours, diff, sd, within_1pt, within_sd,
    #                      gap_closed_paper, gap_closed_yours, source, confidence
    no_value: tuple[str, ...]  # "backbone/dataset/probe" of your cells the paper has no value for
    random: tuple[str, ...]  # random-weight backbones left out

    @property
    def agree_1pt(self) -> int:
        return int(self.cells.get_column("within_1pt").sum()) if self.cells.height else 0

    @property
    def agree_sd(self) -> int:
        return (
            int(self.cells.get_column("within_sd").fill_null(False).sum())
            if self.cells.height
            else 0
        )

    @property
    def with_sd(self) -> int:
        return int(self.cells.get_column("sd").is_not_null().sum()) if self.cells.height else 0


def _gap(value: float | None, linear: float | None, finetune: float | None) -> float | None:
    if value is None or linear is None or finetune is None or finetune == linear:
        return None
    return (value - linear) / (finetune - linear)


def compare_to_paper(
    summary: pl.DataFrame, scale: float, paper: pl.DataFrame | None = None
) -> PaperComparison:
    """Every scored summary cell of a non-random backbone beside the paper's value (percent).

    ``scale`` is the report's display scale (100 for scores in [0, 1]), so ``yours`` is in the
    paper's percent. ``within_sd``: ``|diff| <= sd`` of your seeds (null for a single seed).
    Figure 2's gap closed, ``(probe - linear) / (finetune - linear)``, is given for the paper's
    numbers and for yours (your linear mean, the paper's fine-tuning value) where both exist.
    """
    paper = paper_values() if paper is None else paper
    values = {
        (r["encoder"], r["dataset"], r["probe"]): r
        for r in paper.iter_rows(named=True)
        if r["probe"] != FINETUNE
    }
    finetune = {
        (r["encoder"], r["dataset"]): float(r["test_score"])
        for r in paper.iter_rows(named=True)
        if r["probe"] == FINETUNE
    }
    scored = summary.filter(pl.col("n") > 0)
    means = {
        (r["backbone"], r["dataset"], r["probe"]): r["mean"] * scale
        for r in scored.iter_rows(named=True)
    }
    rows, no_value, random = [], [], set()
    for r in scored.sort("backbone", "dataset", "probe").iter_rows(named=True):
        backbone, dataset, probe = r["backbone"], r["dataset"], r["probe"]
        if is_random(backbone):
            random.add(backbone)
            continue
        family = _family(backbone)
        ref = values.get((family, dataset, probe))
        if ref is None:
            no_value.append(f"{backbone}/{dataset}/{probe}")
            continue
        yours, published = r["mean"] * scale, float(ref["test_score"])
        sd = None if r["sd"] is None else r["sd"] * scale
        diff = yours - published
        ft = finetune.get((family, dataset))
        paper_linear = values.get((family, dataset, "linear"))
        rows.append(
            {
                "backbone": backbone,
                "dataset": dataset,
                "probe": probe,
                "paper": published,
                "yours": yours,
                "diff": diff,
                "sd": sd,
                "within_1pt": abs(diff) <= AGREE_POINTS,
                "within_sd": None if sd is None else abs(diff) <= sd,
                "gap_closed_paper": _gap(
                    published, None if paper_linear is None else paper_linear["test_score"], ft
                ),
                "gap_closed_yours": _gap(yours, means.get((backbone, dataset, "linear")), ft),
                "source": ref["source"],
                "confidence": ref["confidence"],
            }
        )
    schema = {
        "backbone": pl.Utf8,
        "dataset": pl.Utf8,
        "probe": pl.Utf8,
        "paper": pl.Float64,
        "yours": pl.Float64,
        "diff": pl.Float64,
        "sd": pl.Float64,
        "within_1pt": pl.Boolean,
        "within_sd": pl.Boolean,
        "gap_closed_paper": pl.Float64,
        "gap_closed_yours": pl.Float64,
        "source": pl.Utf8,
        "confidence": pl.Utf8,
    }
    return PaperComparison(
        cells=pl.DataFrame(rows, schema=schema),
        no_value=tuple(no_value),
        random=tuple(sorted(random)),
    )


def render_paper(comparison: PaperComparison, names: int = 10) -> list[str]:
    """Paragraphs + table of the report's "Beside the paper" section."""
    c = comparison
    intro = (
        f"Published test scores of {PAPER_CITATION} (percent, the paper's mean over 5 seeds; "
        f"shipped as `orchestrator/reporting/paper_data/{PAPER_CSV}`, provenance and "
        f"confidence in `{PAPER_NOTE}`). `diff = yours - paper` in points."
    )
    parts = [intro]
    n = c.cells.height
    if n:
        parts.append(
            f"**{c.agree_1pt} of {n} cell(s) agree within {AGREE_POINTS:g} point**; "
            f"{c.agree_sd} of {c.with_sd} cell(s) with several seeds agree within your seed sd."
        )
    else:
        parts.append("None of your cells has a published value.")
    if c.no_value:
        more = f" and {len(c.no_value) - names} more" if len(c.no_value) > names else ""
        parts.append(
            f"{len(c.no_value)} cell(s) have no paper value (not recovered or not in the paper): "
            + ", ".join(c.no_value[:names])
            + more
            + "."
        )
    if c.random:
        parts.append(
            f"Not compared: {', '.join(c.random)}: random weights measure an untrained network, "
            "not the paper's pretrained checkpoint, so a difference would mean nothing."
        )
    return parts
