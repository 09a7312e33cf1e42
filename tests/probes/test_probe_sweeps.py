"""Every registered probe is selectable from sweeps: its YAML exists and names valid things."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import yaml

from probes import PROBES, TrainConfig, create_probe, probe_hparams

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
TYPES = {"loguniform", "uniform", "int", "categorical"}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _load(path: Path) -> dict:
    assert path.is_file(), f"missing {path}"
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("name", PROBES.names())
def test_probe_has_a_sweep_file_with_an_existing_search_space(name):
    path = SWEEPS / "probe" / f"{name}.yaml"
    # Hydra 1.3 no longer expands _group_/_name_ in package headers: the absolute package puts
    # each selected probe at cfg.probe.<key> even when a sweep selects several.
    assert path.read_text().startswith(f"# @package probe.{name}\n")
    entry = _load(path)
    assert set(entry) == {"search", "hparams"}
    hparams = entry["hparams"] or {}
    create_probe(name, embed_dim=8, num_classes=2, **hparams)  # fixed hparams are valid
    space = _load(SWEEPS / "search" / f"{entry['search']}.yaml")
    assert {"lr", "weight_decay"} <= set(space)
    valid = TRAIN_FIELDS | set(probe_hparams(name))
    for key, spec in space.items():
        assert key in valid, f"{name}: searched {key!r} is neither a TrainConfig field nor a hparam"
        assert spec["type"] in TYPES
        if spec["type"] == "categorical":
            assert spec["choices"]
        else:
            assert spec["low"] < spec["high"]
    if name in ("proto", "protobin"):
        assert space["prototypes_per_class"]["type"] == "int"


def test_every_sweep_file_is_a_registered_probe():
    assert sorted(p.stem for p in (SWEEPS / "probe").glob("*.yaml")) == PROBES.names()


def test_hydra_composes_all_probes_side_by_side(tmp_path):
    hydra = pytest.importorskip("hydra")
    shutil.copytree(SWEEPS / "probe", tmp_path / "probe")
    names = PROBES.names()
    (tmp_path / "all_probes.yaml").write_text(
        "defaults:\n  - probe:\n" + "".join(f"      - {n}\n" for n in names)
    )
    with hydra.initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        cfg = hydra.compose(config_name="all_probes")
    assert sorted(cfg.probe) == names
    assert cfg.probe.protobin.search == "prototypes" and cfg.probe.linear.search == "default"
