"""``orchestrator.explain`` on a quickstart-like tiny run: a protobin probe trained with
probes.fit on a tiny random EAT's token maps of generated clips, saved with save_probe into a
study folder, then drawn for a clip shorter than the dataset's clip length (padded tokens)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
import torch

from backbones import create_backbone
from orchestrator.datasets import get_dataset, open_split
from orchestrator.explain import ExplainError, explain, main, pick_probe_file
from probes import ProbeData, TrainConfig, create_probe, fit, save_probe

ENCODER = {"name": "eat", "checkpoint": "random", "overrides": {"size": "tiny", "seed": 0}}
SIZES = {"train_clips": 16, "valid_clips": 8, "test_clips": 4}


def _embed(backbone, split):
    waves = torch.from_numpy(np.stack([e.waveform for e in split]).astype(np.float32))
    tm = backbone.embed(waves, split[0].sample_rate)
    labels = np.zeros((len(split), len(split.classes)), dtype=np.float32)
    for i, e in enumerate(split):
        labels[i, list(e.labels)] = 1
    data = ProbeData(tm.tokens.numpy(), labels, "multilabel", padding_mask=tm.padding_mask.numpy())
    return data, tm.grid


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """<out>/studies/<id>/ with two saved configurations (1 selected) and a 6 s clip."""
    root = tmp_path_factory.mktemp("explain")
    torch.set_num_threads(1)
    spec = get_dataset("synth_events", **SIZES)
    splits = {s: open_split(spec, s, root / "data") for s in ("train", "valid", "test")}
    backbone = create_backbone(ENCODER["name"], ENCODER["checkpoint"], **ENCODER["overrides"])
    train, grid = _embed(backbone, splits["train"])
    valid, _ = _embed(backbone, splits["valid"])
    study = root / "out" / "studies" / "eat-random-tiny__synth_events__protobin__0000"
    for config, lr in enumerate((1e-3, 3e-3)):
        probe = create_probe("protobin", embed_dim=64, num_classes=10, prototypes_per_class=2)
        fit(probe, train, valid, TrainConfig(lr=lr, epochs=3, batch_size=8, seed=0))
        meta = {
            "study_id": study.name,
            "backbone": "eat@random-tiny",
            "encoder": ENCODER,
            "dataset": "synth_events",
            "seed": 0,
            "config": {"lr": lr},
            "classes": list(splits["train"].classes),
        }
        save_probe(study / "probes" / f"config-{config}-seed-0.pt", probe, meta)
    pl.DataFrame({"config_index": [1, 1], "seed": [0, 1]}).write_parquet(study / "final.parquet")
    clip = root / "clip.wav"
    ex = splits["test"][0]
    sf.write(clip, ex.waveform[: 6 * ex.sample_rate], ex.sample_rate)
    return study, clip, grid


def test_explain_draws_each_top_class_with_its_prototypes(tiny_study, tmp_path, capsys):
    study, clip, grid = tiny_study
    out = tmp_path / "fig4.png"
    assert main(["--study", str(study), "--clip", str(clip), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "config-1-seed-0.pt" in printed  # the selected configuration (final.parquet)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000

    ex = explain(study / "probes" / "config-1-seed-0.pt", clip, top_classes=2, top_prototypes=4)
    assert ex.grid == grid == (64, 8) and len(ex.classes) == 2
    assert ex.classes[0].probability >= ex.classes[1].probability
    t_real = 6 * 100 // 16  # 6 s of 10 ms frames in rows of 16 frames: 37 real rows
    for cls in ex.classes:
        assert (
            cls.name
            in open_split(
                get_dataset("synth_events", **SIZES), "test", study.parents[2] / "data"
            ).classes
        )
        shares = [p.contribution for p in cls.prototypes]
        assert shares == sorted(shares, reverse=True) and len(shares) == 4
        for pm in cls.prototypes:
            assert pm.grid.shape == (64, 8)
            assert np.isnan(pm.grid[t_real + 1 :]).all()  # padding: no activation drawn
            assert np.isfinite(pm.grid[:t_real]).all()
            assert pm.peak[0] <= t_real and pm.max_cosine == pytest.approx(
                np.nanmax(pm.grid), abs=1e-4
            )


def test_explain_refuses_what_it_cannot_draw(tiny_study, tmp_path, capsys):
    study, clip, _ = tiny_study
    linear = create_probe("linear", embed_dim=64, num_classes=10)
    save_probe(tmp_path / "lin.pt", linear, {"encoder": ENCODER, "dataset": "synth_events"})
    assert main(["--probe", str(tmp_path / "lin.pt"), "--clip", str(clip)]) == 2
    assert "has no prototypes" in capsys.readouterr().err
    assert main(["--study", str(tmp_path), "--clip", str(clip)]) == 2
    assert "holds no saved probe" in capsys.readouterr().err
    assert main(["--study", str(study), "--clip", str(tmp_path / "none.wav")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(ExplainError, match="selected one is unknown"):
        pick_probe_file([Path("config-0-seed-0.pt"), Path("config-1-seed-0.pt")], None, None)
    assert (
        pick_probe_file([Path("config-2-seed-3.pt"), Path("config-2-seed-1.pt")], None, None).name
        == "config-2-seed-1.pt"
    )


def test_explain_from_an_mlflow_run(tiny_study, tmp_path, capsys):
    import mlflow
    from mlflow.tracking import MlflowClient

    study, clip, _ = tiny_study
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("explain", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp, tags={"kind": "study"}).info.run_id
    for config, selected in ((0, "false"), (1, "true")):
        child = client.create_run(
            exp, tags={"mlflow.parentRunId": parent, "selected": selected}
        ).info.run_id
        client.log_artifact(child, str(study / "probes" / f"config-{config}-seed-0.pt"), "probes")
    out = tmp_path / "run.png"
    assert mlflow is not None
    assert (
        main(["--run", parent, "--tracking-uri", uri, "--clip", str(clip), "--out", str(out)]) == 0
    )
    assert "config-1-seed-0.pt" in capsys.readouterr().out and out.stat().st_size > 20_000


def test_meta_as_the_final_trials_write_it(tiny_study, tmp_path):
    """Encoder name + checkpoint string beside it, no overrides: the size comes from the
    backbone label, a "None" checkpoint means the official one."""
    from orchestrator.explain import encoder_from_meta
    from probes import load_probe

    study, clip, _ = tiny_study
    probe, meta = load_probe(study / "probes" / "config-1-seed-0.pt")
    flat = {
        "backbone": "eat@random-tiny",
        "encoder": "eat",
        "checkpoint": "random",
        "dataset": "synth_events",
        "study_id": meta["study_id"],
        "seed": 0,
    }
    save_probe(tmp_path / "flat.pt", probe, flat)
    ex = explain(tmp_path / "flat.pt", clip, top_classes=1, top_prototypes=1)
    ref = explain(study / "probes" / "config-1-seed-0.pt", clip, top_classes=1, top_prototypes=1)
    np.testing.assert_allclose(ex.classes[0].prototypes[0].grid, ref.classes[0].prototypes[0].grid)
    backbone = encoder_from_meta({"encoder": "eat", "checkpoint": "random"}, embed_dim=64)
    assert backbone.encoder.embed_dim == 64
