"""The trial function without Ray: per-epoch reports, the final test score, a NaN refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.study import top_configs
from orchestrator.trial import TrialError, TrialSpec, resolve_params, run_trial, split_params

CLIPS = {"train_clips": 8, "valid_clips": 4, "test_clips": 4, "clip_seconds": 2.0}


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """synth_events (tiny) extracted by the tiny random eat into a local store."""
    from backbones import create_backbone

    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split
    from orchestrator.store import EmbeddingStore

    root = tmp_path_factory.mktemp("trial")
    spec = get_dataset("synth_events", **CLIPS)
    backbone = create_backbone("eat", checkpoint="random", size="tiny")
    store = EmbeddingStore(str(root / "store"))
    keys = {
        split: extract_split(backbone, spec, split, store, str(root / "data"), progress=False)
        for split in ("train", "valid", "test")
    }
    return spec, str(root / "store"), keys


def _spec(stored, stage, **kw):
    spec, url, keys = stored
    base = dict(
        study_id="s",
        stage=stage,
        probe="protobin",
        probe_hparams={},
        task=spec.task,
        num_classes=spec.num_classes,
        store_url=url,
        keys=keys,
        epochs=3,
        batch_size=4,
        warmup_epochs=0,
        device="cpu",
    )
    return TrialSpec(**{**base, **kw})


def test_final_trial_reports_every_epoch_and_scores_test_once(stored, monkeypatch):
    reports = []
    monkeypatch.setattr("ray.tune.report", lambda metrics: reports.append(dict(metrics)))
    spec = _spec(
        stored, "final", configs=({"lr": 1e-3, "prototypes_per_class": 2},), cells=((0, 1),)
    )
    run_trial({"cell": 0}, spec)
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    assert all(0.0 <= r["val_score"] <= 100.0 for r in reports)
    assert all("test_score" not in r for r in reports[:-1])
    assert 0.0 <= reports[-1]["test_score"] <= 100.0 and reports[-1]["seed"] == 1


def test_same_seed_same_result(stored, monkeypatch):
    runs = []
    for _ in range(2):
        reports = []
        monkeypatch.setattr("ray.tune.report", lambda metrics, r=reports: r.append(dict(metrics)))
        run_trial(
            {"lr": 3e-3, "weight_decay": 1e-4, "prototypes_per_class": 2}, _spec(stored, "search")
        )
        runs.append([r["val_score"] for r in reports])
    assert runs[0] == runs[1]


def test_a_diverging_trial_fails_with_a_clear_error(stored, monkeypatch):
    reports = []
    monkeypatch.setattr("ray.tune.report", lambda metrics: reports.append(metrics))

    def diverging_fit(probe, train, val, config, on_epoch=None):
        on_epoch(1, {"loss": 0.7, "val_score": 0.5})
        on_epoch(2, {"loss": float("nan"), "val_score": 0.5})

    monkeypatch.setattr("probes.fit", diverging_fit)
    with pytest.raises(TrialError, match="training loss is nan at epoch 2"):
        run_trial({"lr": 1e-3, "prototypes_per_class": 2}, _spec(stored, "search"))
    assert len(reports) == 1  # the finite epoch was reported; the NaN one never is


def test_params_split_between_training_and_probe():
    spec = TrialSpec(
        "s",
        "final",
        "protobin",
        {},
        "multilabel",
        2,
        "u",
        {},
        1,
        1,
        0,
        configs=({"lr": 1.0}, {"lr": 2.0, "prototypes_per_class": 3}),
        cells=((0, 0), (1, 4)),
    )
    params, seed = resolve_params({"cell": 1}, spec)
    assert seed == 4
    assert split_params(params) == ({"lr": 2.0}, {"prototypes_per_class": 3})


def test_top_configs_prefer_full_runs_then_score_and_skip_nan():
    import polars as pl

    search = pl.DataFrame(
        {
            "trial_id": ["a", "b", "c", "d", "e"],
            "status": ["ok", "ok", "error", "ok", "ok"],
            "epochs": [3, 1, 0, 3, 3],
            "val_score": [50.0, 90.0, None, 60.0, float("nan")],
            "param.lr": [1e-3, 1e-2, 1e-4, 3e-3, 5e-3],
        }
    )
    assert top_configs(search, k=2, epochs=3) == [{"lr": 3e-3}, {"lr": 1e-3}]
    assert top_configs(search, k=5, epochs=3)[-1] == {"lr": 1e-2}  # pruned trials rank last
    assert top_configs(search.filter(pl.col("status") == "error"), k=1, epochs=3) == []


def test_final_trial_from_the_schedule_saves_its_probe(stored, monkeypatch, tmp_path):
    """A final trial (as the schedule hands it out) leaves its trained probe in probe_dir,
    in the probes/checkpoint.py format, from which the probe is rebuilt and predicts."""
    import torch

    from probes import create_probe, predict

    monkeypatch.setattr("ray.tune.report", lambda metrics: None)
    spec = _spec(
        stored,
        "search",
        probe="linear",
        probe_dir=str(tmp_path / "probes"),
        meta={"backbone": "eat@random-tiny"},
    )
    config = {
        "key": "s/final/0-3",
        "study": "s",
        "stage": "final",
        "params": {"lr": 1e-3},
        "seed": 3,
        "config_index": 0,
    }
    run_trial(config, spec)
    record = torch.load(tmp_path / "probes" / "config-0-seed-3.pt", weights_only=True)
    assert record["format"] == 1 and record["probe"] == "linear"
    assert record["meta"]["seed"] == 3 and record["meta"]["config"] == {"lr": 1e-3}
    assert record["meta"]["backbone"] == "eat@random-tiny"
    init = dict(record["init"])
    probe = create_probe(
        "linear", embed_dim=init.pop("embed_dim"), num_classes=init.pop("num_classes"), **init
    )
    probe.load_state_dict(record["state_dict"])
    from orchestrator.trial import _probe_data

    out = predict(probe.eval(), _probe_data(spec, "test")[0], 4, "cpu")
    assert out.shape[0] == 4 and torch.isfinite(torch.as_tensor(out)).all()


def _own_store(stored, tmp_path):
    """A copy of the module's store, so this test may damage it."""
    import shutil

    spec, url, keys = stored
    shutil.copytree(url, tmp_path / "store")
    return spec, str(tmp_path / "store"), keys


def test_rotted_entry_is_lost_not_a_failed_trial(stored, tmp_path, monkeypatch):
    """Bit rot in an entry a worker already cached: the next trial re-hashes it, the store
    sets it aside, and the trial raises StoreEntryLost (the driver recomputes and reruns)."""
    from orchestrator.store import EmbeddingStore
    from orchestrator.trial import StoreEntryLost
    from tests.orchestrator.test_store_heal import flip_in_place

    monkeypatch.setattr("ray.tune.report", lambda metrics: None)
    mine = _own_store(stored, tmp_path)
    spec = _spec(mine, "search", probe="linear")
    run_trial({"params": {"lr": 1e-3}, "seed": 0}, spec)  # this worker caches the splits
    store = EmbeddingStore(spec.store_url)
    flip_in_place(Path(store.entry(spec.keys["train"])) / "tokens.npy")
    with pytest.raises(StoreEntryLost, match="train"):
        run_trial({"params": {"lr": 1e-3}, "seed": 0}, spec)
    assert not store.complete(spec.keys["train"])  # set aside: the next extraction redoes it


def test_rot_while_training_stops_the_trial_before_its_next_report(stored, tmp_path, monkeypatch):
    from orchestrator.store import EmbeddingStore
    from orchestrator.trial import StoreEntryLost
    from tests.orchestrator.test_store_heal import flip_in_place

    mine = _own_store(stored, tmp_path)
    spec = _spec(mine, "search", probe="linear")
    entry = Path(EmbeddingStore(spec.store_url).entry(spec.keys["valid"]))
    reports = []

    def report(metrics):
        reports.append(metrics["epoch"])
        if metrics["epoch"] == 1:
            flip_in_place(entry / "tokens.npy")

    monkeypatch.setattr("ray.tune.report", report)
    with pytest.raises(StoreEntryLost, match="changed on disk"):
        run_trial({"params": {"lr": 1e-3}, "seed": 0}, spec)
    assert reports == [1]  # epoch 2 read the changed map: never reported


def test_a_pack_runs_its_trials_in_order_prunes_at_cutoffs_and_isolates_a_failure(stored):
    """One Tune trial, three trials: the first stops itself at its rung's cutoff, the second
    cannot build its probe (only it fails), the third (final) scores test; one report at the
    end."""
    import math

    from orchestrator.trial import run_pack

    spec = _spec(stored, "search", probe="linear")
    items = [
        {"key": "s/search/0", "study": "s", "stage": "search", "params": {"lr": 1e-3},
         "seed": 0, "config_index": -1, "rungs": [[1, 1000.0]]},  # no score reaches it
        {"key": "s/search/1", "study": "s", "stage": "search", "params": {"bogus_knob": 1},
         "seed": 0, "config_index": -1, "rungs": []},
        {"key": "s/final/0-0", "study": "s", "stage": "final", "params": {"lr": 1e-3},
         "seed": 0, "config_index": 0, "rungs": []},
    ]  # fmt: skip
    reports = []
    run_pack(items, {"s": spec}, report=reports.append)
    assert len(reports) == 1  # short trials: no report before the pack ends
    events = reports[0]["events"]
    by_key = {i["key"]: [e for e in events if e["key"] == i["key"]] for i in items}
    epochs = {k: [e["epoch"] for e in v if e["event"] == "epoch"] for k, v in by_key.items()}
    done = {k: v[-1] for k, v in by_key.items()}
    assert epochs["s/search/0"] == [1]  # pruned by its own cutoff after epoch 1
    assert done["s/search/0"]["status"] == "ok"
    assert done["s/search/1"]["status"] == "error" and "bogus_knob" in done["s/search/1"]["error"]
    assert epochs["s/final/0-0"] == [1, 2, 3] and done["s/final/0-0"]["status"] == "ok"
    last = [e for e in by_key["s/final/0-0"] if e["event"] == "epoch"][-1]
    assert 0.0 <= last["test_score"] <= 100.0
    assert next(e["event"] for e in events if e["key"] == "s/final/0-0") == "start"
    assert all(d["seconds"] > 0 for d in done.values()) and math.isfinite(reports[0]["val_score"])


def test_a_pack_that_loses_its_entry_reports_what_ran_then_raises(stored, tmp_path):
    from orchestrator.store import EmbeddingStore
    from orchestrator.trial import StoreEntryLost, run_pack
    from tests.orchestrator.test_store_heal import flip_in_place

    mine = _own_store(stored, tmp_path)
    spec = _spec(mine, "search", probe="linear")
    entry = Path(EmbeddingStore(spec.store_url).entry(spec.keys["train"]))
    items = [
        {"key": f"s/search/{n}", "study": "s", "stage": "search", "params": {"lr": 1e-3},
         "seed": 0, "config_index": -1, "rungs": []}
        for n in range(3)
    ]  # fmt: skip
    reports = []

    def report(metrics):
        reports.append(metrics)

    run_pack(items[:1], {"s": spec}, report=report)  # this worker caches the splits
    flip_in_place(entry / "tokens.npy")
    reports.clear()
    with pytest.raises(StoreEntryLost):
        run_pack(items, {"s": spec}, report=report)
    events = [e for r in reports for e in r["events"]]
    assert events == [{"event": "start", "key": "s/search/0", "time": events[0]["time"]}]


def _reports(spec, config, monkeypatch) -> list[dict]:
    reports: list[dict] = []
    monkeypatch.setattr("ray.tune.report", lambda metrics: reports.append(dict(metrics)))
    run_trial(dict(config), spec)
    return reports


FINAL = {"configs": ({"lr": 1e-3, "prototypes_per_class": 2},), "cells": ((0, 1),)}


def test_fp32_trial_reports_are_identical_on_every_placement(stored, monkeypatch):
    """A final trial's every reported score (val per epoch, test) is the same, bit for bit,
    whether its splits are memory-mapped (the path before #17), resident or streamed."""
    from orchestrator import trial

    def scores(placement: str) -> list[dict]:
        trial._CACHE.clear()
        spec = _spec(stored, "final", placement=placement, precision="fp32", **FINAL)
        keep = ("val_", "test_", "train_loss", "train_lr")
        return [
            {k: v for k, v in r.items() if k.startswith(keep) and k != "train_seconds"}
            for r in _reports(spec, {"cell": 0}, monkeypatch)
        ]

    old = scores("memmap")
    assert old[-1]["test_score"] > 0
    for placement in ("auto", "fp16", "fp32", "stream"):
        assert scores(placement) == old, placement


def test_a_worker_loads_each_split_once_and_streams_over_its_budget(stored, monkeypatch):
    """Trials on the same splits reuse the worker's placed copy (3 loads, not 3 per trial);
    a budget of 1 byte (``UNMUTE_RESIDENT_BYTES``) streams the split instead."""
    from orchestrator import trial

    trial._CACHE.clear()
    before = trial.split_loads()
    spec = _spec(stored, "search")
    for lr in (1e-3, 2e-3, 3e-3, 4e-3):
        reports = _reports(spec, {"lr": lr, "prototypes_per_class": 2}, monkeypatch)
        assert reports[-1]["placement"] == "stream"  # CPU auto: the fastest measured
        assert reports[-1]["precision"] == "fp32" and ":" in reports[-1]["worker"]
    assert trial.split_loads() - before == 3  # train, valid, test: once for the four trials
    assert reports[-1]["split_loads"] == trial.split_loads()
    trial._CACHE.clear()
    resident = _spec(stored, "search", placement="fp16")
    reports = _reports(resident, {"lr": 1e-3, "prototypes_per_class": 2}, monkeypatch)
    assert reports[-1]["placement"] == "fp16"
    trial._CACHE.clear()
    monkeypatch.setenv("UNMUTE_RESIDENT_BYTES", "1")  # the worker's budget: 1 byte
    reports = _reports(resident, {"lr": 1e-3, "prototypes_per_class": 2}, monkeypatch)
    assert reports[-1]["placement"] == "stream"
