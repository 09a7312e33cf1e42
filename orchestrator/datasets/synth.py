"""The embedded default datasets: localized synthetic sound events over background noise.

``synth_events`` (multi-label) places 0..``max_events`` short events of ten kinds at random
times and frequencies in each clip; ``synth_control`` (multi-class) places exactly one. Events
last 0.15-0.6 s, so in a 10 s clip an event covers a few percent of the patch tokens: mean
pooling dilutes it, per-token probes can find it. That is the paper's claim in miniature.

Each clip is a pure function of (seed, split, clip index): changing the number of clips per
split never changes an existing clip. The data is written once, under a file lock, to a
temporary folder that is renamed into place, in the canonical local-folder layout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from orchestrator.datasets.audio import write_audio
from orchestrator.datasets.local import write_metadata
from orchestrator.datasets.lock import clear_stale_temps, file_lock
from orchestrator.datasets.spec import DatasetSpec

log = logging.getLogger(__name__)

EVENT_CLASSES = (
    "tone",
    "chirp_up",
    "chirp_down",
    "click_train",
    "noise_burst",
    "harmonic_stack",
    "am_tone",
    "fm_tone",
    "tone_pips",
    "pluck",
)
SPLIT_CODES = {"train": 1, "valid": 2, "test": 3}
DEFAULTS = {
    "seed": 0,
    "train_clips": 240,
    "valid_clips": 80,
    "test_clips": 160,
    "clip_seconds": 10.0,
    "sample_rate": 16000,
    "max_events": 4,
    "min_event_seconds": 0.15,
    "max_event_seconds": 0.6,
}


def _event(
    kind: int, rng: np.random.Generator, sr: int, shortest: float = 0.15, longest: float = 0.6
) -> np.ndarray:
    dur = rng.uniform(shortest, longest)
    n = int(dur * sr)
    t = np.arange(n) / sr
    nyq = sr / 2
    f = rng.uniform(200.0, min(4000.0, 0.4 * nyq))
    name = EVENT_CLASSES[kind]
    if name == "tone":
        x = np.sin(2 * np.pi * f * t)
    elif name in ("chirp_up", "chirp_down"):
        f0, f1 = f, min(f * rng.uniform(2.0, 4.0), 0.45 * sr)
        if name == "chirp_down":
            f0, f1 = f1, f0
        x = np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur)))
    elif name == "click_train":
        x = np.zeros(n)
        period = int(sr / rng.uniform(15.0, 60.0))
        x[::period] = 1.0
        x = np.convolve(x, np.hanning(16), mode="same")
    elif name == "noise_burst":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / sr)
        lo = f * rng.uniform(0.5, 0.9)
        spec[(freqs < lo) | (freqs > lo + rng.uniform(300.0, 1500.0))] = 0
        x = np.fft.irfft(spec, n)
    elif name == "harmonic_stack":
        f0 = rng.uniform(100.0, 400.0)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < 0.45 * sr)
    elif name == "am_tone":
        x = np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(6, 20) * t))
    elif name == "fm_tone":
        dev, rate = f * rng.uniform(0.05, 0.15), rng.uniform(5.0, 15.0)
        x = np.sin(2 * np.pi * f * t + dev / rate * np.sin(2 * np.pi * rate * t))
    elif name == "tone_pips":
        x = np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * rng.uniform(8, 16) * t) > 0.3)
    else:  # pluck: decaying harmonic tone
        x = sum(np.sin(2 * np.pi * k * f * 0.5 * t) / k**1.5 for k in range(1, 5))
        x = x * np.exp(-t * rng.uniform(8.0, 20.0))
    x = np.asarray(x, dtype=np.float64)
    ramp = min(int(0.01 * sr), n // 4)
    if ramp:
        env = np.ones(n)
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
        x = x * env
    return x / (np.max(np.abs(x)) + 1e-9)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink-ish noise: white noise with a 1/sqrt(f) spectral tilt, random level."""
    spec = np.fft.rfft(rng.standard_normal(n))
    spec /= np.sqrt(np.maximum(np.arange(spec.size), 1.0))
    x = np.fft.irfft(spec, n)
    return x / (np.std(x) + 1e-9) * rng.uniform(0.02, 0.06)


def make_clip(
    seed: int, split: str, index: int, multilabel: bool, opts: dict
) -> tuple[np.ndarray, tuple[int, ...]]:
    """One clip and its sorted class indices, a pure function of its arguments."""
    rng = np.random.default_rng([int(seed), SPLIT_CODES.get(split, 9), int(index), int(multilabel)])
    sr = int(opts["sample_rate"])
    n = round(float(opts["clip_seconds"]) * sr)
    x = _background(rng, n)
    if multilabel:
        k = int(rng.integers(0, int(opts["max_events"]) + 1))
    else:
        k = 1
    kinds = rng.integers(0, len(EVENT_CLASSES), size=k)
    for kind in kinds:
        ev = _event(
            int(kind), rng, sr, float(opts["min_event_seconds"]), float(opts["max_event_seconds"])
        )[:n]
        at = int(rng.integers(0, n - ev.size + 1))
        x[at : at + ev.size] += ev * rng.uniform(0.15, 0.5)
    x = x / max(1.0, float(np.max(np.abs(x))) / 0.95)
    return x.astype(np.float32), tuple(sorted({int(c) for c in kinds}))


def ensure_generated(spec: DatasetSpec, data_root: str | os.PathLike) -> Path:
    """Generate ``spec`` under ``data_root/<folder>/`` unless it is already complete.

    Two processes racing here serialize on a lock file; the loser finds the finished folder.
    The folder appears by an atomic rename after its ``metadata.csv`` is written, so a reader
    never sees half a dataset.
    """
    root = Path(data_root)
    final = root / spec.folder_name
    if (final / "metadata.csv").exists() and _generated_version(final) == spec.version:
        return final
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{spec.folder_name}.lock"):
        if (final / "metadata.csv").exists() and _generated_version(final) == spec.version:
            return final
        clear_stale_temps(root, spec.folder_name)
        tmp = root / f".{spec.folder_name}.tmp-{os.getpid()}"
        try:
            _generate(spec, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():  # an interrupted earlier attempt left a folder without metadata
            shutil.rmtree(final)
        os.replace(tmp, final)
    log.info("generated %s under %s", spec.name, final)
    return final


def _generated_version(folder: Path) -> str | None:
    """The version a generated folder was made for (an older generator's folder is redone)."""
    try:
        return json.loads((folder / "dataset.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def _generate(spec: DatasetSpec, out: Path) -> None:
    opts = {**DEFAULTS, **spec.opts}
    multilabel = spec.task == "multilabel"
    rows = []
    for split in ("train", "valid", "test"):
        (out / "audio" / split).mkdir(parents=True, exist_ok=True)
        for i in range(int(opts[f"{split}_clips"])):
            wave, labels = make_clip(opts["seed"], split, i, multilabel, opts)
            clip_id = f"{split}-{i:05d}"
            rel = f"audio/{split}/{clip_id}.flac"
            write_audio(out / rel, wave, int(opts["sample_rate"]))
            rows.append(
                {
                    "id": clip_id,
                    "split": split,
                    "path": rel,
                    "labels": [EVENT_CLASSES[c] for c in labels],
                }
            )
    (out / "dataset.json").write_text(
        json.dumps({"name": spec.name, "version": spec.version, "options": opts}, indent=1)
    )
    write_metadata(str(out), rows, EVENT_CLASSES)
