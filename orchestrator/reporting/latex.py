"""A paper-ready LaTeX table of mean ± sd per (dataset, backbone) x probe, best cell in bold.

Needs only ``booktabs`` in the preamble. The best cell per row is the highest seed mean at the
printed precision (cells that print the same best mean are all bold); a missing cell prints
``--`` and is never a candidate for best.
"""

from __future__ import annotations

import polars as pl

from orchestrator.reporting.tables import order_probes

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
}


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def latex_table(
    summary: pl.DataFrame, *, scale: float = 1.0, digits: int = 2, caption: str | None = None
) -> str:
    """The ``table`` environment as a string."""
    probes = order_probes(summary.get_column("probe").unique())
    cells = {(r["dataset"], r["backbone"], r["probe"]): r for r in summary.iter_rows(named=True)}
    rows = sorted({(d, b) for d, b, _ in cells})
    unit = r" ($\times 100$)" if scale == 100.0 else ""
    caption = caption or f"Test score{unit}, mean $\\pm$ sd over seeds; best per row in bold."
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        r"\label{tab:probing-results}",
        r"\begin{tabular}{ll" + "c" * len(probes) + "}",
        r"\toprule",
        "Dataset & Backbone & " + " & ".join(escape(p) for p in probes) + r" \\",
        r"\midrule",
    ]
    previous = None
    for dataset, backbone in rows:
        if previous is not None and dataset != previous:
            lines.append(r"\midrule")
        row_cells = [cells.get((dataset, backbone, p)) for p in probes]
        means = [round(c["mean"] * scale, digits) for c in row_cells if c is not None and c["n"]]
        best = max(means) if means else None
        texts = []
        for c in row_cells:
            if c is None or not c["n"]:
                texts.append("--")
                continue
            text = f"{c['mean'] * scale:.{digits}f}"
            if c["sd"] is not None:
                text += rf" \pm {c['sd'] * scale:.{digits}f}"
            is_best = round(c["mean"] * scale, digits) == best
            texts.append(rf"$\mathbf{{{text}}}$" if is_best else f"${text}$")
        label = escape(dataset) if dataset != previous else ""
        lines.append(f"{label} & {escape(backbone)} & " + " & ".join(texts) + r" \\")
        previous = dataset
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
