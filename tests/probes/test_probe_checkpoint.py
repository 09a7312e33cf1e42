"""Saved probes (probes/checkpoint.py), generated from the registry: every probe round-trips."""

from __future__ import annotations

import io

import pytest
import torch

from probes import PROBES, CheckpointError, create_probe, load_probe, save_probe
from probes.checkpoint import FORMAT, read_record

D, C, T, F = 16, 3, 4, 3
META = {"study_id": "eat__esc50__x", "encoder": "eat", "seed": 2, "classes": ["a", "b", "c"]}


def _trained(name: str, **hparams):
    torch.manual_seed(1)
    probe = create_probe(name, embed_dim=D, num_classes=C, **hparams)
    with torch.no_grad():  # move every parameter away from its init, as training would
        for p in probe.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return probe.eval()


@pytest.mark.parametrize("name", PROBES.names())
def test_every_probe_round_trips_with_identical_outputs(name, tmp_path):
    probe = _trained(name)
    path = tmp_path / "studies" / "s" / "probes" / "config-0-seed-2.pt"
    save_probe(path, probe, META)
    loaded, meta = load_probe(path)
    assert meta == META and type(loaded) is type(probe) and not loaded.training
    tokens = torch.randn(2, T * F, D)
    cls = torch.randn(2, D)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(tokens, cls=cls, grid=(T, F)), probe(tokens, cls=cls, grid=(T, F))
        )


def test_the_file_is_the_agreed_plain_dict(tmp_path):
    probe = _trained("protobin", prototypes_per_class=2, dropout=0.1)
    save_probe(tmp_path / "p.pt", probe, META)
    record = torch.load(tmp_path / "p.pt", weights_only=True)
    assert set(record) == {"format", "probe", "init", "state_dict", "meta"}
    assert record["format"] == FORMAT and record["probe"] == "protobin"
    assert record["init"] == {
        "embed_dim": D,
        "num_classes": C,
        "prototypes_per_class": 2,
        "dropout": 0.1,
    }
    assert record["state_dict"]["prototypes"].shape == (C * 2, D)


def test_a_file_object_works_and_no_temporary_file_is_left(tmp_path):
    buf = io.BytesIO()
    save_probe(buf, _trained("linear"), {"seed": 0})
    probe, meta = load_probe(buf.getvalue())
    assert meta == {"seed": 0} and probe.probe_name == "linear"
    save_probe(tmp_path / "a.pt", _trained("mhca"), {})
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_bad_inputs_are_refused_with_the_fix(tmp_path):
    from probes.heads.vector import LinearProbe

    with pytest.raises(CheckpointError, match="create_probe"):
        save_probe(tmp_path / "x.pt", LinearProbe(embed_dim=D, num_classes=C), {})
    with pytest.raises(CheckpointError, match="JSON"):
        save_probe(tmp_path / "x.pt", _trained("linear"), {"path": tmp_path})
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a saved probe"):
        load_probe(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a saved probe"):
        read_record(tmp_path / "text.pt")
    record = read_record(_saved(tmp_path))
    torch.save({**record, "format": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_probe(tmp_path / "future.pt")


def _saved(tmp_path):
    path = tmp_path / "ok.pt"
    save_probe(path, _trained("linear"), {})
    return path
