"""Composing and validating sweeps: the refusals a user sees before any Ray work."""

from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, build, compose, list_sweeps
from orchestrator.plan import make_plan


def test_quickstart_composes_to_frozen_config(tmp_path):
    cfg = build(compose("quickstart", ["search.trials=3"], out_dir=str(tmp_path)))
    assert cfg.name == "quickstart"
    assert cfg.out_dir == tmp_path.resolve()
    assert cfg.search.trials == 3
    assert [p.name for p in cfg.probes] == ["linear", "mhca", "protobin"]
    assert cfg.tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    # encoder_defaults are applied to every encoder: the quickstart runs tiny random encoders
    assert all(e.checkpoint == "random" and e.overrides["size"] == "tiny" for e in cfg.encoders)
    with pytest.raises(AttributeError):
        cfg.name = "other"


def test_group_override_selects_a_subset(tmp_path):
    cfg = build(
        compose("quickstart", ["probe=[protobin]", "dataset=[synth_events]"], str(tmp_path))
    )
    assert [p.name for p in cfg.probes] == ["protobin"]
    assert cfg.probes[0].search == "prototypes"
    plan = make_plan(cfg)
    assert len(plan.studies) == len(cfg.encoders)
    assert plan.search_trials == len(cfg.encoders) * cfg.search.trials
    assert len({s.study_id for s in plan.studies}) == len(plan.studies)


def test_unknown_sweep_names_valid_choices():
    with pytest.raises(ConfigError) as err:
        compose("quikstart")
    assert "'quikstart'" in str(err.value) and "Did you mean 'quickstart'" in str(err.value)
    for name in list_sweeps():
        assert name in str(err.value)


def test_unknown_probe_in_override_is_refused_with_did_you_mean():
    with pytest.raises(ConfigError) as err:
        compose("quickstart", ["probe=[linear,protobni]"])
    assert "'protobni'" in str(err.value) and "Did you mean 'protobin'" in str(err.value)


def test_unknown_override_key_names_valid_keys():
    with pytest.raises(ConfigError) as err:
        compose("quickstart", ["serch.trials=3"])
    message = str(err.value)
    assert "'serch.trials'" in message and "Did you mean 'search'" in message


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("search.top_k=20", "top_k"),
        ("final.seeds=[]", "final.seeds"),
        ("tie_rule=opponnent", "Did you mean 'opponent'"),
        ("train.epochs=0", "train.epochs=0"),
        ("ray.cpus_per_trial=abc", "ray.cpus_per_trial='abc'"),
        ("final.seeds=3", "give a list of integers"),
        ("final.seeds=[a,b]", "give a list of integers"),
        ("train.warmup_epochs=50", "exceeds train.epochs"),
    ],
)
def test_bad_values_are_refused(override, needle, tmp_path):
    with pytest.raises(ConfigError) as err:
        build(compose("quickstart", [override], str(tmp_path)))
    assert needle in str(err.value)


def test_study_id_changes_with_what_shapes_the_study(tmp_path):
    a = make_plan(build(compose("quickstart", [], str(tmp_path)))).studies[0]
    b = make_plan(
        build(compose("quickstart", ["encoder_defaults.overrides.seed=1"], str(tmp_path)))
    ).studies[0]
    assert a.study_id != b.study_id
    assert a.backbone == "beats@random-tiny" or a.backbone == "eat@random-tiny"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("+probe.linear.hparams.foo=1", "no hyperparameter 'foo'"),
        ("probe.linear.search=prototypes", "no hyperparameter 'prototypes_per_class'"),
    ],
)
def test_probe_settings_are_checked_by_building_the_probe(override, needle, tmp_path):
    from orchestrator.config import load

    with pytest.raises(ConfigError) as err:
        load("quickstart", [override], out_dir=str(tmp_path))
    assert needle in str(err.value) and "sweeps/probe/linear.yaml" in str(err.value)


def test_relative_tune_storage_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build(compose("quickstart", ["ray.storage_path=tune-state"], str(tmp_path)))
    assert cfg.tune_storage == str(tmp_path.resolve() / "tune-state")
