"""BirdSet (hsn, pow, per, nes, sne, uhh, nbp): the paper's few-shot protocol on the real layouts.

Two layouts of ``DBD-research-group/BirdSet`` are read:

- the dataset's own files (revision ``data``): ``<CFG>_metadata_train.parquet`` and
  ``<CFG>_metadata_test_5s.parquet`` next to the extracted ``.ogg`` files of the
  ``*_train_shard_*.tar.gz`` / ``*_test5s_shard_*.tar.gz`` archives (``--prepare`` stages this);
- parquet with audio bytes (``datasets`` ``push_to_hub`` / Hub conversion), same columns.

Protocol (choices documented in the README):

- train: per class (primary ``ebird_code`` of a Xeno-canto focal recording) the first
  ``shots`` = 64 recordings in a seeded order; each gives one 5 s window centred on its first
  ``detected_events`` entry (start of the file when it has none);
- valid: ``min(valid_shots, n // 5)`` further recordings per class (taken before the 64 so
  that rare classes keep a validation example), same windowing;
- test: the multi-label ``test_5s`` soundscape segments (``ebird_code_multilabel``);
- ``train_mix0..4``: five mixup variants of train, computed deterministically on read and so
  cached by the store: with p = ``mixup_p`` (0.9) a clip is mixed with another training clip
  at an SNR drawn from U(3, 30) dB, labels the union (as BirdSet's multi-label mix).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import fsspec
import numpy as np

from orchestrator.datasets.audio import AudioError, decode, fit_length, resample
from orchestrator.datasets.hf import _RowGroups, parquet_files, read_parquet_rows
from orchestrator.datasets.local import read_classes
from orchestrator.datasets.spec import DatasetError, DatasetSpec, Example
from orchestrator.datasets.splits import Record

log = logging.getLogger(__name__)

AUDIO_EXT = (".ogg", ".flac", ".wav", ".mp3")
SNR_DB = (3.0, 30.0)


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"birdset:{seed}:{key}".encode()).hexdigest()


def _find(root: str, suffix: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    proto = root.split("://")[0] + "://" if "://" in root else ""
    return [proto + f for f in sorted(fs.find(base)) if f.endswith(suffix)]


def _labels(value: Any, names: list[str] | None, index: dict[str, int], where: str) -> set[int]:
    items = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
    out = set()
    for item in items:
        if item is None:
            continue
        if isinstance(item, str):
            if item not in index:
                raise DatasetError(f"{where}: eBird code {item!r} is not in the class list.")
            out.add(index[item])
        else:
            k = int(item)
            if names is not None and 0 <= k < len(names) and names[k] in index:
                k = index[names[k]]
            if not 0 <= k < len(index):
                raise DatasetError(f"{where}: class index {k} outside 0..{len(index) - 1}.")
            out.add(k)
    return out


def _window(row: dict, seconds: float) -> tuple[float, float]:
    events = row.get("detected_events") or []
    if len(events) and events[0] is not None and len(events[0]) == 2:
        s, e = float(events[0][0]), float(events[0][1])
        start = max(0.0, (s + e) / 2 - seconds / 2)
    else:
        start = 0.0
    return start, start + seconds


def _raw_rows(root: str, cfg: str, native: str) -> list[tuple[dict, Callable[[], Any]]]:
    """Rows of ``<CFG>_metadata_<split>.parquet`` with a loader of their audio file."""
    metas = [u for u in _find(root, f"{cfg}_metadata_{native}.parquet")]
    if not metas:
        return []
    audio = {u.rsplit("/", 1)[-1]: u for ext in AUDIO_EXT for u in _find(root, ext)}
    rows, _, _ = read_parquet_rows(metas[0])
    out = []
    for row in rows:
        name = str(row["filepath"]).replace("\\", "/").rsplit("/", 1)[-1]
        url = audio.get(name)

        def load(url: str | None = url, name: str = name) -> Any:
            if url is None:
                raise FileNotFoundError(f"{name}: audio file not staged under {root}")
            if "://" not in url:
                return url
            with fsspec.open(url, "rb") as f:
                return f.read()

        out.append((row, load))
    return out


def _parquet_rows(root: str, cfg: str, native: str) -> tuple[list[tuple[dict, Callable]], Any]:
    out, names = [], None
    for url in parquet_files(root, native, cfg):
        rows, features, audio = read_parquet_rows(url)
        from orchestrator.datasets.hf import class_names

        names = (
            names
            or class_names(features.get("ebird_code_multilabel"))
            or class_names(features.get("ebird_code"))
        )
        reader = _RowGroups(url, audio)
        out += [(row, (lambda r=i, rd=reader: rd.get(r))) for i, row in enumerate(rows)]
    return out, names


def read(spec: DatasetSpec, root: str) -> tuple[dict[str, list[Record]], tuple[str, ...]]:
    cfg = spec.hf_config or spec.name.upper()
    opts = spec.opts
    train = _raw_rows(root, cfg, "train")
    test = _raw_rows(root, cfg, "test_5s")
    names = None
    if not train and not test:
        train, names = _parquet_rows(root, cfg, spec.native_split("train"))
        test, names_t = _parquet_rows(root, cfg, spec.native_split("test"))
        names = names or names_t
    if not train or not test:
        raise DatasetError(
            f"{root}: no BirdSet {cfg} train and test_5s data ({cfg}_metadata_train.parquet / "
            f"{cfg}_metadata_test_5s.parquet with audio, or parquet with audio bytes). Stage it "
            f"with `python -m orchestrator.data {spec.name} --prepare`."
        )
    classes = read_classes(root) or (tuple(names) if names else spec.classes)
    if len(classes) != spec.num_classes:
        raise DatasetError(
            f"{root}: {len(classes)} classes for {spec.name!r}, expected {spec.num_classes} "
            "(classes.txt is written by --prepare from BirdSet's classes.py)."
        )
    index = {c: i for i, c in enumerate(classes)}
    seed = int(opts.get("seed", 0))
    by_class: dict[int, list[Record]] = defaultdict(list)
    for row, load in train:
        primary = row.get("ebird_code")
        where = f"{cfg} train {row.get('filepath')}"
        labels = _labels(
            primary if primary is not None else row.get("ebird_code_multilabel"),
            names,
            index,
            where,
        )
        if not labels:
            continue
        start, end = _window(row, spec.clip_seconds)
        rid = str(row["filepath"]).replace("\\", "/").rsplit("/", 1)[-1]
        by_class[min(labels)].append(
            Record(id=rid, labels=tuple(sorted(labels)), load=load, start=start, end=end, group=rid)
        )
    shots, valid_shots = int(opts.get("shots", 64)), int(opts.get("valid_shots", 8))
    train_recs: list[Record] = []
    valid_recs: list[Record] = []
    for c in sorted(by_class):
        ranked = sorted(by_class[c], key=lambda r: _rank(seed, r.id))
        # every class with two or more recordings keeps one for validation (rare classes too)
        k_valid = min(valid_shots, max(1, len(ranked) // 5)) if len(ranked) >= 2 else 0
        valid_recs += ranked[:k_valid]
        train_recs += ranked[k_valid : k_valid + shots]
    test_recs = []
    for n, (row, load) in enumerate(test):
        where = f"{cfg} test_5s {row.get('filepath')}"
        labels = _labels(row.get("ebird_code_multilabel") or [], names, index, where)
        base = str(row["filepath"]).replace("\\", "/").rsplit("/", 1)[-1]
        test_recs.append(Record(id=f"{base}:{n}", labels=tuple(sorted(labels)), load=load))
    log.info(
        "%s: %d-shot train %d, valid %d, test_5s %d",
        spec.name,
        shots,
        len(train_recs),
        len(valid_recs),
        len(test_recs),
    )
    return {"train": train_recs, "valid": valid_recs, "test": test_recs}, classes


def mixup_transform(
    spec: DatasetSpec, records: list[Record], split: str
) -> Callable[[int, Example], Example]:
    """The deterministic mixup of variant ``split`` (``train_mixK``) for ``Split.transform``."""
    variant = int(split.removeprefix("train_mix"))
    p = float(spec.opts.get("mixup_p", 0.9))
    seed = int(spec.opts.get("seed", 0))

    def transform(i: int, ex: Example) -> Example:
        rng = np.random.default_rng([seed, 7919, variant, i])
        if len(records) < 2 or rng.random() >= p:
            return ex
        j = int(rng.integers(0, len(records) - 1))
        j = j + 1 if j >= i else j
        other = records[j]
        try:
            wave, rate = decode(other.load(), other.start, other.end, name=other.id)
        except (AudioError, OSError) as err:
            log.warning("mixup partner of %s unreadable, clip kept unmixed: %s", ex.id, err)
            return ex
        wave, _ = fit_length(resample(wave, rate, ex.sample_rate), ex.waveform.shape[0])
        snr = rng.uniform(*SNR_DB)
        e_x = float(np.mean(ex.waveform**2)) + 1e-12
        e_o = float(np.mean(wave**2)) + 1e-12
        gain = np.sqrt(e_x / (e_o * 10 ** (snr / 10)))
        mixed = (ex.waveform + gain * wave).astype(np.float32)
        labels = tuple(sorted(set(ex.labels) | set(other.labels)))
        return Example(
            id=f"{ex.id}+{other.id}", waveform=mixed, sample_rate=ex.sample_rate, labels=labels
        )

    return transform
