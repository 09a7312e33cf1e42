"""The paper's data protocol (PROTOCOL.md) on metadata generated in the sources' real layouts.

ESC-50 at full size (2,000 rows of ``meta/esc50.csv``: 5 folds x 50 classes x 8 clips, several
takes per source file); Speech Commands v0.02 with all 35 words, the official list files and
background noise files. Audio is only decoded on access, so ESC-50 needs no audio files.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from orchestrator.datasets import get_dataset, open_split
from orchestrator.datasets.catalog import ESC50_CLASSES, SC2_WORDS

OTHER_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
    "happy", "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three",
    "tree", "two", "visual", "wow", "zero",
)  # fmt: skip


def esc50_full_metadata(root: Path) -> Path:
    """``ESC-50-master/meta/esc50.csv`` with the real row count and fold structure."""
    meta = root / "ESC-50-master" / "meta"
    meta.mkdir(parents=True)
    (root / "ESC-50-master" / "audio").mkdir()
    with open(meta / "esc50.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for fold in range(1, 6):
            for target, category in enumerate(ESC50_CLASSES):
                for k in range(8):  # two takes (A, B) of four source files per class and fold
                    src = 10000 * fold + 100 * target + k // 2
                    take = "AB"[k % 2]
                    w.writerow([f"{fold}-{src}-{take}-{target}.wav", fold, target, category,
                                "False", src, take])  # fmt: skip
    return root


def test_esc50_trains_on_four_folds_with_a_seeded_carved_valid(tmp_path):
    root = str(esc50_full_metadata(tmp_path / "esc"))
    spec = get_dataset("esc50", source=root)
    splits = {s: open_split(spec, s, tmp_path) for s in ("train", "valid", "test")}
    sizes = {s: len(v) for s, v in splits.items()}
    assert sizes["train"] + sizes["valid"] == 1600 and sizes["test"] == 400
    assert 140 <= sizes["valid"] <= 180  # 10 % of the 800 source files, two takes each
    assert {r.id[0] for r in splits["test"].records} == {"5"}
    assert {r.id[0] for r in splits["train"].records} == {"1", "2", "3", "4"}
    groups = {s: {r.group for r in v.records} for s, v in splits.items()}
    assert not groups["train"] & groups["valid"], "a source file straddles train and valid"
    assert min(splits["test"].label_counts()) == 8
    again = open_split(get_dataset("esc50", source=root), "valid", tmp_path)
    assert again.ids == splits["valid"].ids
    other = open_split(get_dataset("esc50", source=root, seed=1), "valid", tmp_path)
    assert set(other.ids) != set(splits["valid"].ids)


def sc2_layout(root: Path, per_word: int = 9, noise_seconds: tuple[float, ...] = (3.5, 2.0)):
    """Speech Commands v0.02: every word folder, the two list files, background noise."""
    valid, testing = [], []
    for w, word in enumerate((*SC2_WORDS, *OTHER_WORDS)):
        (root / word).mkdir(parents=True)
        for k in range(per_word + w % 2):  # uneven word counts, like the real set
            name = f"{word}/{k % 4:08x}_nohash_{k}.wav"
            (root / name).write_bytes(b"")  # decoded on access only
            (valid if k % 9 == 1 else testing if k % 9 == 2 else []).append(name)
    noise = root / "_background_noise_"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for i, seconds in enumerate(noise_seconds):
        sf.write(noise / f"noise{i}.wav", rng.uniform(-0.1, 0.1, int(seconds * 16000)), 16000)
    (root / "validation_list.txt").write_text("\n".join(valid) + "\n")
    (root / "testing_list.txt").write_text("\n".join(testing) + "\n")
    return root, valid, testing


def test_sc2_trains_on_every_training_clip_and_evaluates_balanced(tmp_path):
    root, valid, testing = sc2_layout(tmp_path / "sc")
    spec = get_dataset("sc2", source=str(root))
    train, val, test = (open_split(spec, s, tmp_path) for s in ("train", "valid", "test"))
    clips = sum(1 for p in root.glob("*/*.wav") if p.parent.name != "_background_noise_")
    listed = len(valid) + len(testing)
    silence = 3 + 2  # one window per whole second of each noise file
    assert len(train) == clips - listed + silence  # the paper's size rule: ~84.8 k on v0.02
    counts = Counter(train.classes[r.labels[0]] for r in train.records)
    keywords_train = sum(counts[w] for w in SC2_WORDS)
    assert counts["_unknown_"] == clips - listed - keywords_train
    assert counts["_silence_"] == silence
    windows = sorted((r.start, r.end) for r in train.records if r.labels == (11,))
    assert windows == [(0.0, 1.0), (0.0, 1.0), (1.0, 2.0), (1.0, 2.0), (2.0, 3.0)]
    for split in (val, test):  # balanced: unknown and silence at the mean keyword count
        c = Counter(split.classes[r.labels[0]] for r in split.records)
        mean_kw = sum(c[w] for w in SC2_WORDS) // 10
        assert c["_unknown_"] == mean_kw and c["_silence_"] == mean_kw
    assert {r.id for r in val.records if r.labels[0] < 10} <= set(valid)


def test_sc2_balanced_train_option_keeps_the_earlier_protocol_under_another_version(tmp_path):
    root, _, _ = sc2_layout(tmp_path / "sc")
    full = get_dataset("sc2", source=str(root))
    balanced = get_dataset("sc2", source=str(root), balanced_train=True)
    assert balanced.version != full.version
    train = open_split(balanced, "train", tmp_path)
    c = Counter(train.classes[r.labels[0]] for r in train.records)
    mean_kw = sum(c[w] for w in SC2_WORDS) // 10
    assert c["_unknown_"] == mean_kw and c["_silence_"] == mean_kw
