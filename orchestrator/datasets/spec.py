"""The frozen description of a dataset and of one decoded example.

A :class:`DatasetSpec` is plain data: the registry (``catalog.py``) holds one per benchmark
dataset, ``get_dataset`` returns a copy with user options (sizes, a source override) baked in,
and everything downstream (extraction, store keys, probes) reads only the spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

TASKS = ("multilabel", "multiclass")
METRICS = {"multilabel": "map", "multiclass": "accuracy"}
REQUIRED_SPLITS = ("train", "valid", "test")
# Options every dataset accepts: cap the clips per split (CI), and the carving seed.
GENERIC_OPTIONS = ("max_clips", "seed")
GENERIC_DEFAULTS = {"max_clips": None, "seed": 0}


class DatasetError(ValueError):
    """A dataset that cannot be read as asked; the message names the value and the fix."""


@dataclass(frozen=True)
class Example:
    """One decoded clip: mono float32 waveform at ``sample_rate`` and class indices."""

    id: str
    waveform: np.ndarray
    sample_rate: int
    labels: tuple[int, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Registry metadata of one dataset (see ``shared/PAPER.md``, "The 14 datasets").

    ``classes`` may be empty for vocabularies too large to list in code (AudioSet, FSD50K);
    then ``num_classes`` and ``classes_url`` say where the vocabulary is read at prepare time.
    ``fmt`` names the reader of the dataset's native layout (``local``, ``synth``, ``esc50``,
    ``sc2``, ``fsd50k``, ``audioset``, ``hf``, ``birdset``); a folder holding the canonical
    ``metadata.csv`` is always read by the local-folder reader, whatever ``fmt`` says.
    """

    name: str
    task: str
    classes: tuple[str, ...]
    metric: str
    clip_seconds: float
    sample_rate: int
    splits: tuple[str, ...]
    version: str
    source: str
    description: str
    num_classes: int = 0
    classes_url: str | None = None
    fmt: str = "local"
    native_splits: tuple[tuple[str, str], ...] = ()
    hf_config: str | None = None
    valid_carving: str = "official"
    extra_splits: tuple[str, ...] = ()
    license: str = ""
    paper: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    synthetic: bool = False
    base_version: str = field(default="", compare=False)
    base_source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DatasetError(f"dataset {self.name!r}: task {self.task!r} is not one of {TASKS}.")
        if self.metric != METRICS[self.task]:
            raise DatasetError(
                f"dataset {self.name!r}: metric {self.metric!r} does not fit task {self.task!r}; "
                f"use {METRICS[self.task]!r}."
            )
        missing = [s for s in REQUIRED_SPLITS if s not in self.splits]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: splits {self.splits} lack {missing}; carve them "
                "(valid_carving) and list them."
            )
        if self.classes and self.num_classes and len(self.classes) != self.num_classes:
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.classes)} class names but num_classes="
                f"{self.num_classes}."
            )
        if not self.classes and not self.num_classes:
            raise DatasetError(f"dataset {self.name!r}: give classes or num_classes.")
        if len(set(self.classes)) != len(self.classes):
            raise DatasetError(f"dataset {self.name!r}: duplicate class names.")
        if not self.num_classes:
            object.__setattr__(self, "num_classes", len(self.classes))
        if not self.base_version:
            object.__setattr__(self, "base_version", self.version)
        if not self.base_source:
            object.__setattr__(self, "base_source", self.source)

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def all_splits(self) -> tuple[str, ...]:
        return self.splits + self.extra_splits

    @property
    def folder_name(self) -> str:
        """Folder under ``data_root``.

        Generated data depends on its options: the name plus the version hash when they change.
        Staged real data depends only on where it came from: read-time options (shots, mixup,
        seeds) change the version, hence the store key, but never the staged folder.
        """
        if self.synthetic:
            return self.name if self.version == self.base_version else f"{self.name}-{self.version}"
        if self.source == self.base_source:
            return self.name
        return f"{self.name}-{hashlib.sha256(self.source.encode()).hexdigest()[:8]}"

    def native_split(self, split: str) -> str:
        """The source's own name for ``split`` (e.g. BirdSet's ``test_5s`` for ``test``)."""
        return dict(self.native_splits).get(split, split)

    def with_options(self, source: str | None = None, **options: Any) -> DatasetSpec:
        """A copy with a source override and/or options; the version records both."""
        merged = {**self.opts, **{k: v for k, v in options.items() if v is not None}}
        new_source = source or self.source
        unknown = sorted(set(options) - set(self.opts) - set(GENERIC_OPTIONS))
        if unknown:
            raise DatasetError(
                f"dataset {self.name!r}: unknown option(s) {unknown}. Valid options: "
                f"{sorted(set(self.opts) | set(GENERIC_OPTIONS))}."
            )
        defaults = {**GENERIC_DEFAULTS, **self.opts}
        changed = {k: v for k, v in merged.items() if defaults.get(k, None) != v}
        if new_source != self.source:
            changed["source"] = new_source
        version = self.base_version
        if changed:
            blob = json.dumps(changed, sort_keys=True, default=str).encode()
            version = f"{self.base_version}+{hashlib.sha256(blob).hexdigest()[:8]}"
        return replace(
            self,
            source=new_source,
            options=tuple(sorted(merged.items())),
            version=version,
            base_version=self.base_version,
            base_source=self.base_source,
        )

    def class_index(self, classes: tuple[str, ...] | None = None) -> dict[str, int]:
        return {c: i for i, c in enumerate(classes or self.classes)}

    def summary(self) -> str:
        return (
            f"{self.name}: {self.task}, {self.num_classes} classes, {self.metric}, "
            f"{self.clip_seconds:g} s @ {self.sample_rate} Hz, source {self.source}"
        )
