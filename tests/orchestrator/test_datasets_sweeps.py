"""Every registered dataset has its Hydra option file, in the agreed format, and it composes."""

from __future__ import annotations

import shutil
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
    # Hydra 1.3 has no `_name_` in @package (it would become a literal key): name it explicitly.
    assert text.splitlines()[0] == f"# @package dataset.{name}"
    body = yaml.safe_load(text)
    assert set(body) == {"source", "options"} and body["source"] is None
    spec = get_dataset(name, source=body["source"], **(body["options"] or {}))
    assert spec.version == DATASETS.get(name).version, "the file's options are the defaults"


def test_no_option_file_without_a_dataset() -> None:
    assert {p.stem for p in SWEEPS.glob("*.yaml")} == set(DATASETS.names())


def test_option_files_compose_under_dataset_name(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    shutil.copytree(SWEEPS, tmp_path / "dataset")
    names = DATASETS.names()
    (tmp_path / "top.yaml").write_text(f"defaults:\n  - dataset: [{', '.join(names)}]\n")
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("top"))
    assert sorted(cfg["dataset"]) == names


def test_bare_hf_id_source_means_the_hub() -> None:
    assert get_dataset("desed", source="lrauch/desed").source == "hf://datasets/lrauch/desed"
