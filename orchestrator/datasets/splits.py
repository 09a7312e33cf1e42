"""A split as a lazy sequence of examples, and seeded validation carving.

Every reader turns its source into a list of :class:`Record` (an id, labels and a way to fetch
the audio bytes) and wraps it in a :class:`Split`; decoding happens on ``split[i]`` so opening a
split of 20k clips costs only its metadata. Carving is here because it only needs records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from orchestrator.datasets.audio import decode
from orchestrator.datasets.spec import DatasetSpec, Example

Loader = Callable[[], Any]


@dataclass(frozen=True)
class Record:
    """Metadata of one clip. ``load`` returns a path, file object or bytes for soundfile."""

    id: str
    labels: tuple[int, ...]
    load: Loader
    start: float | None = None
    end: float | None = None
    group: str = ""


class Split(Sequence[Example]):
    """``len(split)``, ``split[i] -> Example``; audio is decoded on access.

    ``transform`` (if any) maps the decoded example, e.g. BirdSet's cached mixup variants.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        name: str,
        records: Sequence[Record],
        classes: tuple[str, ...] | None = None,
        transform: Callable[[int, Example], Example] | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.records = list(records)
        self.classes = tuple(classes or spec.classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, i: int) -> Example: ...
    @overload
    def __getitem__(self, i: slice) -> list[Example]: ...
    def __getitem__(self, i: int | slice) -> Example | list[Example]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        rec = self.records[i]
        wave, rate = decode(rec.load(), rec.start, rec.end, name=rec.id)
        ex = Example(id=rec.id, waveform=wave, sample_rate=rate, labels=rec.labels)
        return self.transform(i, ex) if self.transform else ex

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def label_counts(self) -> np.ndarray:
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for r in self.records:
            for c in r.labels:
                counts[c] += 1
        return counts

    def __repr__(self) -> str:
        return f"Split({self.spec.name!r}, {self.name!r}, n={len(self)})"


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def carve(
    records: Sequence[Record], fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Split ``records`` into (rest, carved) with about ``fraction`` of the groups carved.

    Deterministic from ``seed`` and the record ids alone (not their order): a record's fate is
    a hash of ``seed`` and its group (``group`` or its id), so recordings of one source file
    never straddle train and valid, and adding clips to a source moves no existing clip.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"carve fraction {fraction} must be in (0, 1), e.g. 0.1.")
    groups = sorted({r.group or r.id for r in records}, key=lambda g: _rank(seed, g))
    n_carve = max(1, round(fraction * len(groups))) if len(groups) > 1 else 0
    carved = set(groups[:n_carve])
    rest = [r for r in records if (r.group or r.id) not in carved]
    out = [r for r in records if (r.group or r.id) in carved]
    return rest, out


def cap(records: Sequence[Record], max_clips: int | None, seed: int = 0) -> list[Record]:
    """Keep at most ``max_clips`` records, chosen by a seeded hash (CI shrinking)."""
    if not max_clips or len(records) <= max_clips:
        return list(records)
    keep = set(sorted((r.id for r in records), key=lambda i: _rank(seed, i))[:max_clips])
    return [r for r in records if r.id in keep]
