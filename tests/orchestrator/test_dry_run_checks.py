"""``--dry-run`` refuses (exit 2) what the real run refuses before Ray: every bad metadata case of
``orchestrator.data --check`` and every bad probe value, and names what it could not check."""

from __future__ import annotations

import pytest
import ray

from orchestrator.sweep import main
from tests.orchestrator.test_dataset_checks import CASES, make_folder


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("ray.init called by a dry run")

    monkeypatch.setattr(ray, "init", refuse)


def _dry(tmp_path, *overrides: str) -> int:
    base = ["quickstart", "encoder=[eat]", "probe=[linear,mhca]"]
    return main([*base, *overrides, "--out", str(tmp_path / "out"), "--dry-run"])


@pytest.mark.parametrize(
    ("name", "rows", "post", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_dry_run_refuses_every_bad_metadata_case(name, rows, post, needles, tmp_path, capsys):
    folder = make_folder(tmp_path / "ds", rows)
    if post:
        post(folder)
    code = _dry(tmp_path, f"dataset=[{name}]", f"+dataset.{name}.source={folder}")
    out = capsys.readouterr().out
    assert code == 2, out[-3000:]
    assert "nothing was started" in out and "pre-flight: OK" not in out
    for needle in needles:
        assert needle in out, f"{needle!r} not in: {out[-3000:]}"


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("+probe.mhca.hparams.num_heads=-3", "num_heads=-3 must be a positive integer"),
        ("+probe.mhca.hparams.num_heads=5", "at the width"),  # 5 heads do not divide the width
        ("+probe.mhca.hparams.bogus=1", "no hyperparameter 'bogus'"),
    ],
    ids=["negative-count", "heads-width", "unknown-name"],
)
def test_dry_run_refuses_bad_probe_values(override, needle, tmp_path, capsys):
    code = _dry(tmp_path, "dataset=[synth_control]", override)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text[-3000:]
    assert needle in text and "probe 'mhca'" in text


def test_dry_run_of_a_good_sweep_says_what_it_checked_and_what_it_could_not(tmp_path, capsys):
    folder = make_folder(tmp_path / "ds")
    code = _dry(
        tmp_path,
        "dataset=[synth_control]",
        f"+dataset.synth_control.source={folder}",
        "ray.address=ray://head:10001",
    )
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "pre-flight: OK: probe values at every encoder width and search corner" in out
    assert "datasets' metadata" in out
    assert "NOT CHECKED: resources: checked against the cluster" in out
    assert "ray://head:10001" in out
