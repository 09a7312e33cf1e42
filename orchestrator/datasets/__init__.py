"""Datasets of the benchmark: registry, specs, readers and the generated defaults.

``DATASETS`` maps the paper's keys (and ``synth_events`` / ``synth_control``) to frozen
:class:`DatasetSpec`; ``open_split`` returns a lazy sequence of decoded :class:`Example`.
"""

from __future__ import annotations

from orchestrator.datasets.api import dataset_root, get_dataset, open_split
from orchestrator.datasets.audio import AudioError
from orchestrator.datasets.catalog import DATASETS
from orchestrator.datasets.spec import DatasetError, DatasetSpec, Example
from orchestrator.datasets.splits import Record, Split

__all__ = [
    "DATASETS",
    "AudioError",
    "DatasetError",
    "DatasetSpec",
    "Example",
    "Record",
    "Split",
    "dataset_root",
    "get_dataset",
    "open_split",
]
