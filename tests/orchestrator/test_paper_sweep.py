"""The ``paper`` sweep and per-dataset probe settings (``probe_overrides``)."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.config import ConfigError, ProbeChoice, build, compose, load, validate_names
from orchestrator.plan import make_plan
from orchestrator.search import load_space


def _by_cell(plan):
    return {(s.encoder.name, s.dataset.name, s.probe.name): s for s in plan.studies}


def test_paper_fixes_j_per_dataset_and_searches_only_lr_and_weight_decay(tmp_path):
    cfg = load("paper", ["encoder=[eat]", "dataset=[as20k,esc50,hsn]"], out_dir=str(tmp_path))
    assert cfg.search.reproducible is True
    studies = _by_cell(make_plan(cfg))
    for probe in ("proto", "protobin"):
        assert studies[("eat", "as20k", probe)].probe.hparams == {"prototypes_per_class": 10}
        for ds in ("esc50", "hsn"):
            assert studies[("eat", ds, probe)].probe.hparams == {"prototypes_per_class": 20}
    for study in studies.values():
        assert [p.name for p in load_space(study.probe.search)] == ["lr", "weight_decay"]
    # the fixed J is part of the study id: as20k and esc50 differ in it, not only in the name
    assert studies[("eat", "as20k", "protobin")].study_id != studies[("eat", "esc50", "protobin")]


def test_paper_is_full_benchmark_but_for_j_and_reproducible_mode(tmp_path):
    paper = build(compose("paper", out_dir=str(tmp_path)))
    full = build(compose("full_benchmark", out_dir=str(tmp_path)))
    same = ("encoders", "datasets", "ray", "seeds", "train", "extract_batch_size", "tie_rule")
    for name in same:
        assert getattr(paper, name) == getattr(full, name), name
    assert paper.search.reproducible is True
    assert dataclasses.replace(paper.search, reproducible=full.search.reproducible) == full.search
    for p, f in zip(paper.probes, full.probes, strict=True):
        assert p == f  # the probe files are untouched; the overrides change proto/protobin
    assert full.probe_overrides == {} and paper.name == "paper"


def test_full_scale_plan_of_the_paper_sweep(tmp_path):
    plan = make_plan(load("paper", out_dir=str(tmp_path)))
    assert len(plan.studies) == 9 * 14 * 11 and plan.search_trials == 1386 * 50
    assert len({s.study_id for s in plan.studies}) == 1386
    js = {
        (s.dataset.name, s.probe.hparams.get("prototypes_per_class"))
        for s in plan.studies
        if s.probe.name in ("proto", "protobin")
    }
    assert {j for ds, j in js if ds == "as20k"} == {10}
    assert {j for ds, j in js if ds != "as20k"} == {20}


def _quickstart(tmp_path, overrides: dict):
    raw = compose("quickstart", out_dir=str(tmp_path))
    raw["probe_overrides"] = overrides
    cfg = build(raw)
    validate_names(cfg)
    return cfg


def test_overrides_apply_star_then_dataset_and_leave_other_cells_alone(tmp_path):
    cfg = _quickstart(
        tmp_path,
        {
            "*": {"protobin": {"search": "default", "hparams": {"prototypes_per_class": 4}}},
            "synth_events": {"protobin": {"hparams": {"prototypes_per_class": 2, "dropout": 0.1}}},
        },
    )
    base = next(p for p in cfg.probes if p.name == "protobin")
    assert cfg.probe_for("synth_events", base) == ProbeChoice(
        "protobin", "default", {"prototypes_per_class": 2, "dropout": 0.1}
    )
    assert cfg.probe_for("synth_control", base).hparams == {"prototypes_per_class": 4}
    linear = next(p for p in cfg.probes if p.name == "linear")
    assert cfg.probe_for("synth_events", linear) is linear
    plain = make_plan(_quickstart(tmp_path, {}))
    changed = make_plan(cfg)
    ids = lambda plan, probe: {s.study_id for s in plan.studies if s.probe.name == probe}
    assert ids(plain, "linear") == ids(changed, "linear")
    assert not ids(plain, "protobin") & ids(changed, "protobin")


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"as2ok": {"protobin": {"hparams": {}}}}, "unknown dataset 'as2ok'. Did you mean 'as20k'"),
        (
            {"as20k": {"protobn": {"hparams": {}}}},
            "unknown probe 'protobn'. Did you mean 'protobin'",
        ),
        (
            {"as20k": {"protobin": {"hparams": {"prototypes_per_clas": 10}}}},
            "no hyperparameter 'prototypes_per_clas'. Did you mean 'prototypes_per_class'",
        ),
        ({"as20k": {"protobin": {"hparam": {}}}}, "unknown key 'hparam'. Did you mean 'hparams'"),
        ({"*": {"protobin": {"search": "defualt"}}}, "Did you mean 'default'"),
        (
            {"synth_events": {"protobin": {"hparams": {"prototypes_per_class": 5}}}},
            "also searched by search space 'prototypes'",
        ),
        (
            {"*": {"protobin": {"search": "default", "hparams": {"prototypes_per_class": 0}}}},
            "positive int",
        ),
        ({"as20k": ["protobin"]}, "expected probe -> settings"),
    ],
)
def test_bad_probe_overrides_are_refused_before_ray(overrides, needle, tmp_path):
    with pytest.raises(ConfigError) as err:
        _quickstart(tmp_path, overrides)
    assert needle in str(err.value)


def test_reproducible_must_be_a_boolean(tmp_path):
    with pytest.raises(ConfigError, match="search.reproducible"):
        build(compose("quickstart", ["search.reproducible=3"], out_dir=str(tmp_path)))


def test_a_changed_data_protocol_makes_new_studies(tmp_path, monkeypatch):
    import dataclasses as dc

    from orchestrator.datasets import DATASETS

    cfg = load("paper", ["encoder=[eat]", "dataset=[esc50]", "probe=[linear]"], str(tmp_path))
    before = make_plan(cfg).studies[0].study_id
    old = dc.replace(DATASETS.get("esc50"), version="esc50-master")
    monkeypatch.setitem(DATASETS._entries, "esc50", old)
    assert make_plan(cfg).studies[0].study_id != before
