"""A user's dataset folder (three tones, one label each) and a user's project folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.backbones.user_encoder_source import HEAR_SOURCE, SOURCE

TONES = {"low": 220.0, "mid": 660.0, "high": 1980.0}


def write_dataset(folder: Path, per_class: dict[str, int] | None = None) -> Path:
    """``folder`` with 1 s clips of three tones in noise, metadata.csv and dataset.yaml."""
    per_class = per_class or {"train": 8, "valid": 3, "test": 3}
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = ["id,split,path,labels"]
    t = np.arange(16000) / 16000
    for split, n in per_class.items():
        for label, hz in TONES.items():
            for i in range(n):
                clip = 0.3 * np.sin(2 * np.pi * hz * t + rng.uniform(0, 6)) + 0.05 * rng.normal(
                    size=t.shape
                )
                cid = f"{split}-{label}-{i}"
                sf.write(folder / "audio" / f"{cid}.wav", clip.astype("float32"), 16000)
                rows.append(f"{cid},{split},audio/{cid}.wav,{label}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    (folder / "dataset.yaml").write_text("name: tones\ndescription: three tones in noise\n")
    return folder


def write_project(folder: Path) -> Path:
    """A user's folder: an encoder file, a HEAR module and a tones dataset."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "my_encoder.py").write_text(SOURCE)
    (folder / "hear_tiny.py").write_text(HEAR_SOURCE)
    write_dataset(folder / "tones")
    return folder
