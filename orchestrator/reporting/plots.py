"""Figures of the report (annotated win-matrix heatmaps, CD diagram, rank charts), PNG and PDF.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
pyplot's global state, so the report is safe to call from a sweep driver or a thread.
"""

from __future__ import annotations

import textwrap

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FORMATS: tuple[str, ...] = ("png", "pdf")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(
    fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS
) -> dict[str, Path]:
    """Save ``fig`` as ``stem.<fmt>``; keys are ``stem_<fmt>`` (``win_matrix_png``)."""
    paths: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150)
        paths[f"{stem}_{fmt}"] = path
    return paths


def draw_heatmap(
    ax, wins: np.ndarray, probes: Sequence[str], title: str, compared: np.ndarray | None = None
) -> None:
    """Annotated heatmap: row A, column B, cell = configurations A beats B."""
    k = len(probes)
    shown = wins.astype(float).copy()
    np.fill_diagonal(shown, np.nan)
    vmax = max(
        1.0,
        float(compared.max()) if compared is not None and compared.size else 1.0,
        float(np.nanmax(shown)) if k > 1 else 1.0,
    )
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    for i in range(k):
        for j in range(k):
            if i == j:
                ax.text(j, i, "·", ha="center", va="center", color="0.5")
                continue
            value = int(wins[i, j])
            dark = value > 0.6 * vmax
            text = str(value)
            if compared is not None:
                text += f"/{int(compared[i, j])}"
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(k), list(probes), rotation=45, ha="right")
    ax.set_yticks(range(k), list(probes))
    ax.set_xlabel("opponent (B)")
    ax.set_ylabel("probe (A)")
    # small matrices make narrow figures: wrap the title instead of letting it run off the edge
    ax.set_title("\n".join(textwrap.wrap(title, max(24, 9 * k))), fontsize=10)
    return image


def win_matrix_figure(
    wins: np.ndarray, probes: Sequence[str], title: str, compared: np.ndarray | None = None
) -> Figure:
    """One annotated win-matrix heatmap; cells read "wins / configurations compared"."""
    size = 1.2 + 0.55 * max(len(probes), 2)
    fig = new_figure(size + 1.2, size)
    ax = fig.add_subplot()
    image = draw_heatmap(ax, wins, probes, title, compared)
    bar = fig.colorbar(image, ax=ax, shrink=0.8, label="configurations won")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return fig


def family_figure(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    probes: Sequence[str],
    rank_change: dict[str, tuple[int | None, int | None]],
) -> Figure:
    """Win matrices per backbone family side by side, then each probe's rank in each family."""
    size = 1.2 + 0.55 * max(len(probes), 2)
    fig = new_figure((size + 0.4) * len(panels) + 3.5, size)
    axes = fig.subplots(
        1, len(panels) + 1, gridspec_kw={"width_ratios": [size] * len(panels) + [3]}
    )
    for ax, (name, wins, compared) in zip(axes, panels, strict=False):
        draw_heatmap(ax, wins, probes, name, compared)
    ax = axes[-1]
    names = [n for n, _, _ in panels]
    for probe, (r0, r1) in rank_change.items():
        if r0 is None or r1 is None:
            continue
        ax.plot([0, 1], [r0, r1], marker="o")
        ax.annotate(
            probe, (1, r1), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_xticks([0, 1], names[:2])
    ax.set_xlim(-0.2, 1.6)
    ax.invert_yaxis()
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("rank by total wins (1 = best)")
    ax.set_title("rank change", fontsize=10)
    return fig


def cd_figure(mean_ranks: dict[str, float], pvalues, alpha: float, title: str) -> Figure:
    """Critical-difference diagram (scikit-posthocs); bars join probes not significantly apart."""
    import scikit_posthocs as sp

    fig = new_figure(7.0, 1.2 + 0.3 * len(mean_ranks))
    ax = fig.add_subplot()
    sp.critical_difference_diagram(mean_ranks, pvalues, alpha=alpha, ax=ax)
    ax.set_title(
        title + "\nmean rank (1 = best); bars join probes not significantly different",
        fontsize=9,
        pad=22,
    )
    return fig


def encoder_rank_figure(table, probe_a: str, probe_b: str, all_label: str) -> Figure:
    """Slope charts: each backbone's rank under ``probe_a`` (left) and ``probe_b`` (right)."""
    datasets = [
        d for d in table.get_column("dataset").unique(maintain_order=True) if d != all_label
    ]
    panels = [all_label, *sorted(datasets)]
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = new_figure(3.0 * ncols, 2.6 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    backbones = sorted(table.get_column("backbone").unique().to_list())
    colors = {b: f"C{i % 10}" for i, b in enumerate(backbones)}
    for ax, dataset in zip(axes, panels, strict=False):
        part = table.filter(table["dataset"] == dataset)
        for row in part.iter_rows(named=True):
            ra, rb = row[f"rank_{probe_a}"], row[f"rank_{probe_b}"]
            color = colors[row["backbone"]]
            if ra is None or rb is None:  # a missing cell: one hollow marker, labelled as such
                x, r, absent = (0, ra, probe_b) if rb is None else (1, rb, probe_a)
                if r is not None:
                    ax.plot([x], [r], marker="o", mfc="none", color=color)
                    ax.annotate(
                        f"{row['backbone']} (no {absent})",
                        (x, r),
                        xytext=(4, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize=7,
                    )
                continue
            ax.plot([0, 1], [ra, rb], marker="o", color=color)
            ax.annotate(
                row["backbone"],
                (1, rb),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        ax.set_xticks([0, 1], [probe_a, probe_b])
        ax.set_xlim(-0.2, 1.9)
        ax.invert_yaxis()
        if dataset != all_label:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        title = "mean score over general-audio datasets" if dataset == all_label else dataset
        ax.set_title(title, fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("encoder rank (1 = best)")
    return fig
