"""What a prototype found (the paper's Figure 4): activation maps of a trained protobin probe.

``python -m orchestrator.explain --study DIR | --run RUN_ID | --probe FILE.pt --clip FILE.wav
[--out PNG]`` loads a saved probe (``probes.checkpoint``), rebuilds its encoder from the saved
meta, embeds the clip exactly as extraction does (resampled, cropped or zero-padded to the
dataset's clip length, padding masked) and draws the clip's spectrogram (the encoder's own
normalised fbank) with, for each of the top classes, the activation maps of the prototypes
that contribute most to that class: the cosine similarity of every token with the prototype,
over the token grid (time x frequency), padded tokens blank.

Choices (the paper shows the maps, not how it picked them): a class's prototypes are ranked by
their contribution to its logit, ``head weight[c, m] x max-over-tokens cosine[m]`` (for ``proto``,
the class's own prototypes by ``class_weight x score``); classes by probability (sigmoid for
multi-label sets, softmax for multi-class). Defaults: 3 classes, 3 prototypes each.

Where the probe comes from:
- ``--probe FILE.pt``: that file.
- ``--study DIR``: ``DIR/probes/config-<i>-seed-<s>.pt`` of the selected configuration
  (``config_index`` in ``DIR/final.parquet``; the only configuration saved, if that file is
  absent), lowest seed unless ``--seed``.
- ``--run RUN_ID``: the ``.pt`` artifacts of that MLflow run (a study run or a final trial
  run); for a study run without any, those of its child runs tagged ``selected=true``.
The encoder is read from the probe's meta: ``encoder`` as a registry name with ``checkpoint``
and ``overrides`` (or ``encoder_checkpoint`` / ``encoder_overrides``) beside it, or as a dict
``{name, checkpoint, overrides}``; ``--checkpoint`` replaces the saved checkpoint reference
(weights that live elsewhere on this machine). Class names come from ``meta["classes"]``, else
the dataset's catalog entry.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROTOTYPE_PROBES = ("protobin", "proto")
_PROBE_FILE = re.compile(r"config-(\d+)-seed-(-?\d+)\.pt$")


class ExplainError(ValueError):
    """Input that cannot be explained; the message names the value and the fix."""


@dataclass(frozen=True)
class PrototypeMap:
    index: int  # prototype row in the probe
    contribution: float  # head weight x max cosine, its share of the class logit
    max_cosine: float
    peak: tuple[int, int]  # (time row, frequency column) of the most similar token
    grid: np.ndarray  # [T, F] cosine similarity, NaN at padding


@dataclass(frozen=True)
class ClassExplanation:
    index: int
    name: str
    probability: float
    prototypes: tuple[PrototypeMap, ...]


@dataclass(frozen=True)
class Explanation:
    """Everything the figure shows, as data."""

    probe: str
    backbone: str
    clip: str
    spectrogram: np.ndarray  # [frames, mel] the encoder's input features
    real_frames: int
    seconds_per_frame: float
    patch_frames: int
    grid: tuple[int, int]
    classes: tuple[ClassExplanation, ...]


# -- finding the saved probe ----------------------------------------------------------------------
def _parse(path: Path) -> tuple[int, int] | None:
    match = _PROBE_FILE.search(path.name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def pick_probe_file(files: Sequence[Path], config: int | None, seed: int | None) -> Path:
    """The file of configuration ``config`` (the only one if None) and ``seed`` (lowest if None)."""
    named = {p: _parse(p) for p in files}
    named = {p: cs for p, cs in named.items() if cs is not None}
    if not named:
        raise ExplainError(
            f"no saved probes named config-<i>-seed-<s>.pt among {[str(f) for f in files]}; "
            "final trials save them (or pass --probe FILE.pt)."
        )
    configs = sorted({c for c, _ in named.values()})
    if config is None:
        if len(configs) > 1:
            raise ExplainError(
                f"probes of configurations {configs} are saved and the selected one is unknown "
                "(no final.parquet); pass --probe with one of: "
                + ", ".join(str(p) for p in sorted(named))
            )
        config = configs[0]
    candidates = {s: p for p, (c, s) in named.items() if c == config}
    if not candidates:
        raise ExplainError(
            f"no saved probe of the selected configuration {config} (saved: {configs})."
        )
    if seed is None:
        return candidates[min(candidates)]
    if seed not in candidates:
        raise ExplainError(f"no saved probe for seed {seed}; seeds saved: {sorted(candidates)}.")
    return candidates[seed]


def study_probe(study_dir: Path, seed: int | None = None) -> Path:
    """The selected configuration's saved probe in a study folder."""
    if not study_dir.is_dir():
        raise ExplainError(f"--study {study_dir}: no such folder (expected <out>/studies/<id>).")
    files = sorted((study_dir / "probes").glob("*.pt"))
    if not files:
        raise ExplainError(
            f"{study_dir}/probes holds no saved probe; it is written by a study's final trials "
            "(a study of a version that did not save probes has none)."
        )
    config = None
    final = study_dir / "final.parquet"
    if final.exists():
        import polars as pl

        chosen = pl.read_parquet(final).get_column("config_index").unique().to_list()
        if len(chosen) == 1:
            config = int(chosen[0])
    return pick_probe_file(files, config, seed)


def run_probe(run_id: str, tracking_uri: str | None, seed: int | None, dst: Path) -> Path:
    """Download the saved probe of an MLflow run (or of its selected child runs)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise ExplainError(f"--run {run_id}: {err.message}") from None

    def pt_files(rid: str, path: str = "") -> list[str]:
        out = []
        for item in client.list_artifacts(rid, path or None):
            if item.is_dir:
                out += pt_files(rid, item.path)
            elif item.path.endswith(".pt"):
                out.append(item.path)
        return out

    sources = [(run_id, p) for p in pt_files(run_id)]
    if not sources:
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}' and tags.selected = 'true'",
        )
        sources = [(c.info.run_id, p) for c in children for p in pt_files(c.info.run_id)]
    if not sources:
        raise ExplainError(
            f"--run {run_id}: no .pt artifact in the run or in its child runs tagged "
            "selected=true; pass a study run or a final trial run of a sweep that saved probes."
        )
    local = []
    for rid, path in sources:
        got = client.download_artifacts(rid, path, str(dst))
        local.append(Path(got))
    if len(local) == 1:
        return local[0]
    return pick_probe_file(local, None, seed)


# -- the encoder and the clip -----------------------------------------------------------------
def encoder_from_meta(
    meta: dict[str, Any], checkpoint: str | None = None, embed_dim: int | None = None
):
    """The frozen backbone the probe was trained on, rebuilt from its meta.

    Without saved overrides, a random encoder's size is read from the backbone label
    (``eat@random-tiny``) or, failing that, from the probe's ``embed_dim``.
    """
    from backbones import create_backbone
    from backbones.base import SIZES

    enc = meta.get("encoder")
    if isinstance(enc, dict):
        name, ckpt, overrides = enc.get("name"), enc.get("checkpoint"), enc.get("overrides")
    else:
        name = enc
        ckpt = meta.get("checkpoint", meta.get("encoder_checkpoint"))
        overrides = meta.get("overrides", meta.get("encoder_overrides"))
    if not name:
        raise ExplainError(
            f"the probe's meta names no encoder (keys: {sorted(meta)}); it needs 'encoder' "
            "(and 'checkpoint', 'overrides') to rebuild the token maps."
        )
    ckpt = None if ckpt in (None, "", "None") else str(ckpt)
    overrides = dict(overrides or {})
    if "size" not in overrides:
        label = str(meta.get("backbone") or "")
        if "@random-" in label:
            overrides["size"] = label.split("@random-", 1)[1]
        elif embed_dim is not None:
            fits = [s for s, arch in SIZES.items() if arch.embed_dim == embed_dim]
            if fits and fits[0] != "base":
                overrides["size"] = fits[0]
    try:
        return create_backbone(str(name), checkpoint or ckpt, **overrides)
    except (TypeError, ValueError, OSError) as err:
        raise ExplainError(
            f"cannot rebuild encoder {name!r} (checkpoint {checkpoint or ckpt!r}, overrides "
            f"{overrides}): {err}. Pass --checkpoint with the weights' location."
        ) from None


def _dataset_facts(meta: dict[str, Any]) -> tuple[tuple[str, ...], str | None, float | None]:
    from orchestrator.datasets import DATASETS

    classes = tuple(meta.get("classes") or ())
    task, seconds = meta.get("task"), meta.get("clip_seconds")
    name = meta.get("dataset")
    if name in DATASETS:
        spec = DATASETS.get(name)
        classes = classes or spec.classes
        task = task or spec.task
        seconds = seconds or spec.clip_seconds
    return classes, task, seconds


def explain(
    probe_path: str | Path,
    clip: str | Path,
    *,
    top_classes: int = 3,
    top_prototypes: int = 3,
    checkpoint: str | None = None,
) -> Explanation:
    """Activation maps of the saved prototype probe at ``probe_path`` on ``clip``."""
    import torch

    from orchestrator.datasets.audio import AudioError, decode, fit_length, resample
    from probes import CheckpointError, load_probe

    try:
        probe, meta = load_probe(probe_path)
    except (CheckpointError, FileNotFoundError) as err:
        raise ExplainError(str(err)) from None
    if probe.probe_name not in PROTOTYPE_PROBES:
        raise ExplainError(
            f"{probe_path}: a {probe.probe_name!r} probe has no prototypes to draw; explain "
            f"works with {', '.join(PROTOTYPE_PROBES)} studies."
        )
    backbone = encoder_from_meta(meta, checkpoint, int(probe.init_kwargs["embed_dim"]))
    classes, task, seconds = _dataset_facts(meta)
    try:
        wave, rate = decode(str(clip))
    except AudioError as err:
        raise ExplainError(f"--clip {clip}: {err}") from None
    target = int(backbone.spec.sample_rate)
    wave = resample(wave, rate, target)
    samples = round((seconds or wave.shape[0] / target) * target)
    wave, length = fit_length(wave, samples)
    batch = torch.from_numpy(np.asarray(wave, dtype=np.float32))[None]
    lengths = torch.tensor([length])
    with torch.no_grad():
        feats, frames = backbone.features(batch, target, lengths)
        tm = backbone.embed_features(feats, frames)
        tokens = tm.tokens.float().cpu()
        mask = tm.padding_mask.cpu()
        logits = probe(tokens, cls=tm.cls, padding_mask=mask, grid=tm.grid)[0]
        probs = logits.softmax(-1) if task == "multiclass" else logits.sigmoid()
        scores = probe.scores(tokens, mask)
        evidence = probe.class_evidence(scores)[0]  # [C, M]
        sim = probe.similarity(tokens)[0]  # [M, N]
    sim = sim.masked_fill(mask[0].unsqueeze(0), float("nan")).numpy()
    t_rows, f_cols = tm.grid
    out = []
    for c in probs.argsort(descending=True)[:top_classes].tolist():
        ranked = evidence[c].argsort(descending=True)[:top_prototypes].tolist()
        maps = []
        for m in ranked:
            grid = sim[m].reshape(t_rows, f_cols)
            flat = int(np.nanargmax(grid))
            maps.append(
                PrototypeMap(
                    index=m,
                    contribution=float(evidence[c, m]),
                    max_cosine=float(scores[0, m]),
                    peak=(flat // f_cols, flat % f_cols),
                    grid=grid,
                )
            )
        name = classes[c] if c < len(classes) else f"class {c}"
        out.append(ClassExplanation(c, str(name), float(probs[c]), tuple(maps)))
    real = int(frames[0])
    return Explanation(
        probe=probe.probe_name,
        backbone=backbone.spec.name,
        clip=str(clip),
        spectrogram=feats[0].cpu().numpy(),
        real_frames=real,
        seconds_per_frame=length / target / max(real, 1),
        patch_frames=int(backbone.encoder.patch_frames),
        grid=(t_rows, f_cols),
        classes=tuple(out),
    )


# -- the figure -------------------------------------------------------------------------------
def figure(ex: Explanation):
    """Spectrogram on top, then one row per top class with its prototypes' maps over it."""
    from orchestrator.reporting.plots import new_figure

    per_row = max(len(c.prototypes) for c in ex.classes) if ex.classes else 1
    fig = new_figure(3.6 * per_row, 2.2 * (1 + len(ex.classes)))
    axes = fig.subplots(1 + len(ex.classes), per_row, squeeze=False)
    frames, mels = ex.spectrogram.shape
    t_rows, f_cols = ex.grid
    span = t_rows * ex.patch_frames * ex.seconds_per_frame
    extent = (0.0, frames * ex.seconds_per_frame, 0.0, float(mels))
    spec = ex.spectrogram.T

    def background(ax) -> None:
        ax.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="gray_r")
        ax.axvline(ex.real_frames * ex.seconds_per_frame, color="k", ls=":", lw=0.8)
        ax.set_xlim(0, extent[1])

    top = axes[0, 0]
    top.imshow(spec, origin="lower", aspect="auto", extent=extent, cmap="magma")
    top.set_title(
        f"{Path(ex.clip).name}: {ex.backbone} input (fbank), {ex.probe} probe", fontsize=9
    )
    top.set_ylabel("mel bin")
    if ex.real_frames < frames:
        top.axvspan(ex.real_frames * ex.seconds_per_frame, extent[1], color="w", alpha=0.5)
        top.text(extent[1], mels * 0.95, "padding ", ha="right", va="top", fontsize=7)
    for ax in axes[0, 1:]:
        ax.set_visible(False)
    for row, cls in enumerate(ex.classes, start=1):
        for col in range(per_row):
            ax = axes[row, col]
            if col >= len(cls.prototypes):
                ax.set_visible(False)
                continue
            pm = cls.prototypes[col]
            background(ax)
            image = ax.imshow(
                pm.grid.T,
                origin="lower",
                aspect="auto",
                extent=(0.0, span, 0.0, float(mels)),
                cmap="viridis",
                alpha=0.6,
                interpolation="nearest",
            )
            t, f = pm.peak
            ax.plot(
                (t + 0.5) * ex.patch_frames * ex.seconds_per_frame,
                (f + 0.5) * mels / f_cols,
                marker="x",
                color="red",
            )
            ax.set_title(
                f"{cls.name} (p={cls.probability:.2f}) · prototype {pm.index}\n"
                f"max cos {pm.max_cosine:.2f}, logit share {pm.contribution:+.2f}",
                fontsize=8,
            )
            if col == 0:
                ax.set_ylabel("mel bin")
            if row == len(ex.classes):
                ax.set_xlabel("time (s)")
            fig.colorbar(image, ax=ax, shrink=0.8, label="cosine")
    return fig


def write_png(ex: Explanation, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(ex).savefig(out, dpi=120)
    return out


# -- the CLI ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.explain",
        description="Draw what a trained protobin probe's prototypes respond to in a clip "
        "(the paper's Figure 4).",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--study", type=Path, help="a study folder: <out>/studies/<study_id>")
    src.add_argument("--run", metavar="RUN_ID", help="an MLflow study run or final trial run")
    src.add_argument("--probe", type=Path, help="a saved probe file (.pt)")
    parser.add_argument("--clip", type=Path, required=True, help="an audio file")
    parser.add_argument("--out", type=Path, help="PNG path (default: <clip>.explain.png here)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (with --run)")
    parser.add_argument("--seed", type=int, help="which seed's probe (default: the lowest)")
    parser.add_argument("--classes", type=int, default=3, help="top classes drawn")
    parser.add_argument("--prototypes", type=int, default=3, help="prototypes per class")
    parser.add_argument("--checkpoint", help="encoder checkpoint, replacing the saved one")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry; 0 on success, 2 on bad input (message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.classes < 1 or args.prototypes < 1:
        sys.stderr.write("error: --classes and --prototypes must be >= 1.\n")
        return 2
    if args.tracking_uri and not args.run:
        sys.stderr.write("error: --tracking-uri only applies with --run RUN_ID.\n")
        return 2
    out = args.out or Path(f"{args.clip.stem}.explain.png")
    try:
        if not args.clip.is_file():
            raise ExplainError(f"--clip {args.clip}: no such file.")
        with tempfile.TemporaryDirectory() as tmp:
            if args.probe:
                path = args.probe
            elif args.study:
                path = study_probe(args.study, args.seed)
            else:
                path = run_probe(args.run, args.tracking_uri, args.seed, Path(tmp))
            ex = explain(
                path,
                args.clip,
                top_classes=args.classes,
                top_prototypes=args.prototypes,
                checkpoint=args.checkpoint,
            )
        write_png(ex, out)
    except ExplainError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stdout.write(f"probe: {path}\n")
    for cls in ex.classes:
        protos = ", ".join(f"#{p.index} (cos {p.max_cosine:.2f})" for p in cls.prototypes)
        sys.stdout.write(f"  {cls.name}: p={cls.probability:.3f}; prototypes {protos}\n")
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
