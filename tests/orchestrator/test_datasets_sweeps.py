"""Every registered dataset has its Hydra option file, in the agreed format."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.datasets import DATASETS, get_dataset

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps" / "dataset"


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_has_sweep_option_file(name: str) -> None:
    path = SWEEPS / f"{name}.yaml"
    assert path.exists(), f"add sweeps/dataset/{name}.yaml (copy sweeps/dataset/esc50.yaml)"
    text = path.read_text()
    assert text.splitlines()[0] == "# @package _group_._name_"
    assert yaml.safe_load(text) == {"source": None, "options": {}}


def test_no_option_file_without_a_dataset() -> None:
    assert {p.stem for p in SWEEPS.glob("*.yaml")} == set(DATASETS.names())


def test_bare_hf_id_source_means_the_hub() -> None:
    assert get_dataset("desed", source="lrauch/desed").source == "hf://datasets/lrauch/desed"
