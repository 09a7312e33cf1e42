"""Every option file in sweeps/ composes: package headers match file names and registry keys."""

from __future__ import annotations

import pytest

from orchestrator.config import GROUPS, build, compose, group_options, list_sweeps, sweeps_dir


@pytest.mark.parametrize("group", GROUPS)
def test_option_file_headers_place_the_option_under_its_key(group):
    for path in sorted((sweeps_dir() / group).glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == f"# @package {group}.{path.stem}", (
            f"{path}: the first line must be '# @package {group}.{path.stem}' (Hydra 1.3 does not "
            f"expand _group_/_name_ in headers), got {first!r}"
        )


def test_every_registered_name_has_an_option_file():
    from backbones import BACKBONES
    from probes import PROBES

    from orchestrator.datasets import DATASETS

    for group, registry in (("encoder", BACKBONES), ("probe", PROBES), ("dataset", DATASETS)):
        assert set(group_options(group)) >= set(registry.names()), group
        assert set(group_options(group)) <= set(registry.names()), group


@pytest.mark.parametrize("name", list_sweeps())
def test_every_sweep_composes_and_validates(name, tmp_path):
    from orchestrator.config import validate_names

    cfg = build(compose(name, [], out_dir=str(tmp_path)))
    validate_names(cfg)
    assert cfg.encoders and cfg.datasets and cfg.probes


def test_all_options_of_a_group_compose_together(tmp_path):
    probes = ",".join(group_options("probe"))
    cfg = build(compose("quickstart", [f"probe=[{probes}]"], out_dir=str(tmp_path)))
    assert [p.name for p in cfg.probes] == group_options("probe")
