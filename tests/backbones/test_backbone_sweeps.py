"""Every registered encoder is selectable in sweeps: sweeps/encoder/<key>.yaml exists and has
the agreed shape (checkpoint + overrides), and no YAML names an unregistered encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backbones import BACKBONES

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps" / "encoder"


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_encoder_has_a_sweep_option(name: str) -> None:
    path = SWEEPS / f"{name}.yaml"
    assert path.is_file(), f"add {path} for encoder {name!r}"
    text = path.read_text()
    assert text.splitlines()[0] == f"# @package encoder.{name}"  # Hydra 1.3: no _group_ expansion
    data = yaml.safe_load(text)
    assert set(data) == {"checkpoint", "overrides"} and isinstance(data["overrides"], dict)


def test_no_sweep_option_without_encoder() -> None:
    assert {p.stem for p in SWEEPS.glob("*.yaml")} == set(BACKBONES.names())
