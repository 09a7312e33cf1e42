"""Readers of the official archive layouts: ESC-50, Speech Commands v2, FSD50K, AudioSet.

Each reads the metadata exactly as its archive ships it (on a local disk or any fsspec URL),
so an extracted archive, or a copy of it on S3, is usable without conversion:

- ESC-50 (``ESC-50-master/``): ``meta/esc50.csv`` (filename, fold, target, category, esc10,
  src_file, take) and ``audio/``. The paper's protocol: folds 1-4 train (1,600 clips), fold 5
  test; valid is carved from the training folds like every set without one (by ``src_file``).
- Speech Commands v0.02: ``<word>/<speaker>_nohash_<n>.wav``, ``validation_list.txt``,
  ``testing_list.txt``, ``_background_noise_/``. 12 classes: the ten keywords, ``_unknown_``
  (the 25 other words) and ``_silence_`` (1 s windows of the background noise files). Train
  follows the paper's size (~84.8 k): every training clip of every word (unknown words not
  subsampled) plus one window per whole second of background noise. Valid and test stay
  balanced (the usual 12-class evaluation): unknown words subsampled to the mean keyword count,
  seeded, and as many silence windows at seeded offsets. Option ``balanced_train: true`` treats
  train like valid/test (the earlier ~37 k protocol).
- FSD50K: ``FSD50K.ground_truth/{dev,eval,vocabulary}.csv``, ``FSD50K.dev_audio/``,
  ``FSD50K.eval_audio/``; the official train/val split of dev.csv.
- AudioSet: ``balanced_train_segments.csv``, ``eval_segments.csv``,
  ``class_labels_indices.csv`` and user-supplied clips under ``audio/`` named ``<YTID>.*``,
  ``Y<YTID>.*`` or ``<YTID>_<start>*``; segments without audio are left out (and counted).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import fsspec

from orchestrator.datasets.spec import DatasetError, DatasetSpec
from orchestrator.datasets.splits import Record

log = logging.getLogger(__name__)

Records = dict[str, list[Record]]
AUDIO_EXT = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")


class _Tree:
    """The files under a root (listed once), opened through fsspec."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)
        self.base = self.base.rstrip("/")
        self.proto = self.root.split("://")[0] + "://" if "://" in self.root else ""
        self.files = [f[len(self.base) + 1 :] for f in self.fs.find(self.base)]

    def find(self, suffix: str) -> str | None:
        hits = sorted((f for f in self.files if f == suffix or f.endswith("/" + suffix)), key=len)
        return hits[0] if hits else None

    def text(self, rel: str) -> str:
        with self.fs.open(f"{self.base}/{rel}", "rt", encoding="utf-8") as f:
            return f.read()

    def loader(self, rel: str) -> Callable[[], Any]:
        url = f"{self.proto}{self.base}/{rel}"

        def load() -> Any:
            if not self.proto:
                return url
            with fsspec.open(url, "rb") as f:
                return f.read()

        return load

    def need(self, suffix: str, what: str) -> str:
        rel = self.find(suffix)
        if rel is None:
            raise DatasetError(
                f"{self.root}: no {suffix} ({what}); is this the extracted "
                "official archive? `python -m orchestrator.data NAME --prepare`."
            )
        return rel


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def read_esc50(spec: DatasetSpec, t: _Tree) -> tuple[Records, tuple[str, ...]]:
    meta = t.need("meta/esc50.csv", "ESC-50 metadata")
    audio_dir = meta.rsplit("meta/", 1)[0] + "audio/"
    fold_split = ESC50_FOLDS
    out: Records = defaultdict(list)
    for row in csv.DictReader(io.StringIO(t.text(meta))):
        target = int(row["target"])
        if spec.classes[target] != row["category"]:
            raise DatasetError(
                f"{meta}: target {target} is {row['category']!r}, registered "
                f"{spec.classes[target]!r}."
            )
        out[fold_split[int(row["fold"])]].append(
            Record(
                id=row["filename"],
                labels=(target,),
                load=t.loader(audio_dir + row["filename"]),
                group=row["src_file"],
            )
        )
    return dict(out), spec.classes


def read_sc2(spec: DatasetSpec, t: _Tree) -> tuple[Records, tuple[str, ...]]:
    vlist = t.need("validation_list.txt", "Speech Commands v2 validation list")
    prefix = vlist.rsplit("validation_list.txt", 1)[0]
    valid = set(t.text(vlist).split())
    test = set(t.text(t.need("testing_list.txt", "Speech Commands v2 testing list")).split())
    index = {c: i for i, c in enumerate(spec.classes)}
    unknown, silence = index["_unknown_"], index["_silence_"]
    seed = int(spec.opts.get("seed", 0))
    words: Records = defaultdict(list)
    others: Records = defaultdict(list)
    noise = []
    for rel in t.files:
        if not rel.startswith(prefix) or not rel.endswith(".wav"):
            continue
        inner = rel[len(prefix) :]
        if "/" not in inner:
            continue
        word = inner.split("/")[0]
        if word == "_background_noise_":
            noise.append(rel)
            continue
        split = "valid" if inner in valid else "test" if inner in test else "train"
        speaker = inner.split("/")[1].split("_nohash_")[0]
        rec_labels = (index[word],) if word in index else (unknown,)
        rec = Record(id=inner, labels=rec_labels, load=t.loader(rel), group=speaker)
        (words if word in index else others)[split].append(rec)
    out: Records = {}
    lengths = _Lengths(t)
    for split in ("train", "valid", "test"):
        if split == "train" and not spec.opts.get("balanced_train", False):
            out[split] = (
                words[split] + others[split] + _tiled_silence(lengths, sorted(noise), silence)
            )
            continue
        per_class = max(1, len(words[split]) // 10)
        chosen = sorted(others[split], key=lambda r: _rank(seed, r.id))[:per_class]
        windows = []
        for k in range(per_class if noise else 0):
            rel = sorted(noise)[int(_rank(seed, f"{split}:{k}")[:8], 16) % len(noise)]
            windows.append((rel, k))
        out[split] = words[split] + chosen + _silence(lengths, windows, split, seed, silence)
    return out, spec.classes


class _Lengths:
    """Durations (s) of audio files under a tree, read once each."""

    def __init__(self, t: _Tree) -> None:
        self.t = t
        self.seconds: dict[str, float] = {}

    def __call__(self, rel: str) -> float:
        if rel not in self.seconds:
            import soundfile as sf

            with self.t.fs.open(f"{self.t.base}/{rel}", "rb") as f:
                info = sf.info(f)
            self.seconds[rel] = info.frames / info.samplerate
        return self.seconds[rel]


def _tiled_silence(lengths: _Lengths, noise: list[str], label: int) -> list[Record]:
    """One 1 s window per whole second of every background noise file, back to back."""
    out = []
    for rel in noise:
        for k in range(int(lengths(rel))):
            out.append(
                Record(
                    id=f"_silence_/train-{rel.rsplit('/', 1)[-1].rsplit('.', 1)[0]}-{k:04d}",
                    labels=(label,),
                    load=lengths.t.loader(rel),
                    start=float(k),
                    end=float(k + 1),
                )
            )
    return out


def _silence(
    lengths: _Lengths, windows: list[tuple[str, int]], split: str, seed: int, label: int
) -> list[Record]:
    t = lengths.t
    out = []
    for rel, k in windows:
        span = max(0.0, lengths(rel) - 1.0)
        start = (int(_rank(seed, f"{split}:{k}:start")[:8], 16) / 0xFFFFFFFF) * span
        out.append(
            Record(
                id=f"_silence_/{split}-{k:05d}",
                labels=(label,),
                load=t.loader(rel),
                start=round(start, 3),
                end=round(start, 3) + 1.0,
            )
        )
    return out


def read_fsd50k(spec: DatasetSpec, t: _Tree) -> tuple[Records, tuple[str, ...]]:
    vocab_rel = t.need("FSD50K.ground_truth/vocabulary.csv", "FSD50K vocabulary")
    gt = vocab_rel.rsplit("vocabulary.csv", 1)[0]
    base = gt.rsplit("FSD50K.ground_truth/", 1)[0]
    vocab = list(csv.reader(io.StringIO(t.text(vocab_rel))))
    classes = tuple(row[1] for row in sorted(vocab, key=lambda r: int(r[0])))
    mid_index = {row[2]: int(row[0]) for row in vocab}
    out: Records = defaultdict(list)
    for table, audio in (("dev.csv", "FSD50K.dev_audio/"), ("eval.csv", "FSD50K.eval_audio/")):
        for row in csv.DictReader(io.StringIO(t.text(gt + table))):
            split = {"train": "train", "val": "valid"}.get(row.get("split", ""), "test")
            labels = tuple(sorted({mid_index[m] for m in row["mids"].split(",") if m}))
            out[split].append(
                Record(
                    id=row["fname"],
                    labels=labels,
                    load=t.loader(f"{base}{audio}{row['fname']}.wav"),
                )
            )
    return dict(out), classes


def read_audioset(spec: DatasetSpec, t: _Tree) -> tuple[Records, tuple[str, ...]]:
    rows = list(
        csv.DictReader(
            io.StringIO(t.text(t.need("class_labels_indices.csv", "AudioSet class list")))
        )
    )
    classes = tuple(r["display_name"] for r in rows)
    mid_index = {r["mid"]: int(r["index"]) for r in rows}
    audio: dict[str, str] = {}
    for rel in t.files:
        if rel.lower().endswith(AUDIO_EXT):
            stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            audio.setdefault(stem, rel)
    out: Records = {}
    for split in ("train", "test"):
        native = spec.native_split(split)
        text = t.text(t.need(f"{native}.csv", f"AudioSet {native} segments"))
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        recs, missing = [], 0
        for parts in csv.reader(lines, skipinitialspace=True):
            ytid, start = parts[0], float(parts[1])
            rel = audio.get(ytid) or audio.get(f"Y{ytid}") or audio.get(f"{ytid}_{int(start)}")
            if rel is None:
                rel = next(
                    (
                        audio[s]
                        for s in (f"Y{ytid}_{start:.3f}", f"{ytid}_{start:.3f}")
                        if s in audio
                    ),
                    None,
                )
            if rel is None:
                missing += 1
                continue
            labels = tuple(sorted(mid_index[m] for m in parts[3].split(",") if m in mid_index))
            recs.append(Record(id=ytid, labels=labels, load=t.loader(rel)))
        if missing:
            log.warning(
                "as20k %s: %d of %d segments have no audio under %s (left out)",
                split,
                missing,
                missing + len(recs),
                t.root,
            )
        out[split] = recs
    return out, classes


READERS = {"esc50": read_esc50, "sc2": read_sc2, "fsd50k": read_fsd50k, "audioset": read_audioset}


MARKERS = {
    "esc50": "esc50.csv",
    "sc2": "validation_list.txt",
    "fsd50k": "vocabulary.csv",
    "audioset": "class_labels_indices.csv",
}
# The paper's ESC-50 protocol: four folds train, one tests; no valid fold (carved from train).
ESC50_FOLDS = {1: "train", 2: "train", 3: "train", 4: "train", 5: "test"}


def read(spec: DatasetSpec, root: str) -> tuple[Records, tuple[str, ...]]:
    """Records by split of the official layout of ``spec.fmt`` under ``root``.

    A folder without the official metadata but with parquet files is read as a Hugging Face
    copy of the dataset (e.g. ``ashraq/esc50``, folds in a ``fold`` column).
    """
    tree = _Tree(root)
    if tree.find(MARKERS[spec.fmt]) is None and any(f.endswith(".parquet") for f in tree.files):
        from orchestrator.datasets import hf

        return hf.read(spec, root, folds=ESC50_FOLDS if spec.fmt == "esc50" else None)
    return READERS[spec.fmt](spec, tree)
