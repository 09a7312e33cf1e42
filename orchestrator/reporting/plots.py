"""Figures of the report (annotated win-matrix heatmaps, CD diagram, rank charts), PNG and PDF.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
pyplot's global state, so the report is safe to call from a sweep driver or a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FORMATS: tuple[str, ...] = ("png", "pdf")


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(
    fig: Figure, out_dir: Path, stem: str, formats: Sequence[str] = FORMATS
) -> dict[str, Path]:
    """Save ``fig`` as ``stem.<fmt>``; keys are ``stem`` for PNG and ``stem_<fmt>`` otherwise."""
    paths: dict[str, Path] = {}
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, dpi=150)
        paths[stem if fmt == "png" else f"{stem}_{fmt}"] = path
    return paths


def draw_heatmap(ax, wins: np.ndarray, probes: Sequence[str], title: str,
                 compared: np.ndarray | None = None) -> None:  # fmt: skip
    """Annotated heatmap: row A, column B, cell = configurations A beats B."""
    k = len(probes)
    shown = wins.astype(float).copy()
    np.fill_diagonal(shown, np.nan)
    vmax = max(1.0, float(compared.max()) if compared is not None and compared.size else 1.0,
               float(np.nanmax(shown)) if k > 1 else 1.0)  # fmt: skip
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
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(k), list(probes), rotation=45, ha="right")
    ax.set_yticks(range(k), list(probes))
    ax.set_xlabel("opponent (B)")
    ax.set_ylabel("probe (A)")
    ax.set_title(title, fontsize=10)
    return image


def win_matrix_figure(wins: np.ndarray, probes: Sequence[str], title: str,
                      compared: np.ndarray | None = None) -> Figure:  # fmt: skip
    """One annotated win-matrix heatmap; cells read "wins / configurations compared"."""
    size = 1.2 + 0.55 * max(len(probes), 2)
    fig = new_figure(size + 1.2, size)
    ax = fig.add_subplot()
    image = draw_heatmap(ax, wins, probes, title, compared)
    fig.colorbar(image, ax=ax, shrink=0.8, label="configurations won")
    return fig


def family_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], probes: Sequence[str],
                  rank_change: dict[str, tuple[int | None, int | None]]) -> Figure:  # fmt: skip
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
        ax.annotate(probe, (1, r1), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)  # fmt: skip
    ax.set_xticks([0, 1], names[:2])
    ax.set_xlim(-0.2, 1.6)
    ax.invert_yaxis()
    ax.set_ylabel("rank by total wins (1 = best)")
    ax.set_title("rank change", fontsize=10)
    return fig
