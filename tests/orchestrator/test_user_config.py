"""User encoders and dataset folders in sweep configs: own names, defaults, clear errors."""

from __future__ import annotations

import pytest

from orchestrator import config
from orchestrator.config import ConfigError
from tests.orchestrator.user_folder import write_project


@pytest.fixture()
def project(tmp_path, monkeypatch):
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_user_choices_keep_their_names_next_to_built_ins(project):
    cfg = config.load(
        "quickstart",
        ["encoder=[eat,my_encoder.py:TinyBands,hear:hear_tiny]", "dataset=[./tones,synth_control]"],
        build_probes=False,
    )
    encs = {e.name: e for e in cfg.encoders}
    assert set(encs) == {"eat", "tinybands", "hear_tiny"}
    assert encs["tinybands"].source == "my_encoder.py:TinyBands"
    assert encs["tinybands"].checkpoint is None and encs["tinybands"].overrides == {}
    assert encs["eat"].checkpoint == "random"  # encoder_defaults still apply to built-ins
    ds = {d.name: d for d in cfg.datasets}
    assert set(ds) == {"tones", "synth_control"} and ds["tones"].source == str(project / "tones")
    only = config.load("quickstart", ["encoder=my_encoder.py:TinyBands"], build_probes=False)
    assert [e.name for e in only.encoders] == ["tinybands"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("encoder=missing.py:Enc", "no file 'missing.py'"),
        ("encoder=my_encoder.py:Tiny", "Did you mean 'TinyBands'"),
        ("encoder=eatt", "Or your own: encoder=path/to/file.py:Name"),
        ("dataset=./nowhere", "dataset './nowhere': no such folder"),
        ("dataset=synth_contrl", "Or your own folder: dataset=path/to/folder"),
    ],
)
def test_bad_user_choices_name_the_fix(project, override, message):
    with pytest.raises(ConfigError) as err:
        config.load("quickstart", [override], build_probes=False)
    assert message in str(err.value)


def test_a_config_dir_without_base_adds_to_the_packaged_sweeps(project, monkeypatch):
    mine = project / "conf"
    (mine / "encoder").mkdir(parents=True)
    (mine / "encoder" / "mine.yaml").write_text(
        "# @package encoder.mine\nref: my_encoder.py:TinyBands\n"
    )
    (mine / "mysweep.yaml").write_text(
        "defaults:\n  - base\n  - encoder: [mine, eat]\n  - dataset: [synth_control]\n"
        "  - probe: [linear]\n  - _self_\nname: mysweep\n"
        "encoder_defaults: {checkpoint: random, overrides: {size: tiny}}\n"
    )
    monkeypatch.setenv("UNMUTE_SWEEPS", str(mine))
    assert {"mysweep", "quickstart", "paper"} <= set(config.list_sweeps())
    assert {"mine", "eat", "beats"} <= set(config.group_options("encoder"))
    cfg = config.load("mysweep", [], build_probes=False)
    assert {(e.name, e.source) for e in cfg.encoders} == {
        ("tinybands", "my_encoder.py:TinyBands"),
        ("eat", "eat"),
    }
    packaged = config.load("quickstart", ["encoder=[mine,beats]"], build_probes=False)
    assert {e.name for e in packaged.encoders} == {"tinybands", "beats"}
