"""The sweep command as a user meets it: --list, --dry-run and refusals (no Ray started)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.sweep import main


def test_list_prints_every_kind_under_a_heading(capsys):
    from backbones import BACKBONES
    from probes import PROBES

    from orchestrator.datasets import DATASETS

    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    sections = {}
    current = None
    for line in out.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
            sections[current] = []
        else:
            sections[current].append(line.split()[0])
    assert list(sections) == ["Encoders", "Datasets", "Probes", "Sweeps"]
    assert sections["Encoders"] == BACKBONES.names()
    assert sections["Datasets"] == DATASETS.names()
    assert sections["Probes"] == PROBES.names()
    assert "quickstart" in sections["Sweeps"]


def test_dry_run_prints_the_plan(capsys, tmp_path):
    code = main(["quickstart", "search.trials=5", "final.seeds=[0,1]", "--out", str(tmp_path), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "studies:         12" in out
    assert "search trials:   60" in out
    assert "final trials:    24" in out
    assert "extraction jobs: 12" in out
    import ray

    assert not ray.is_initialized()  # a dry run starts no Ray ...
    assert not tmp_path.joinpath("sweep.json").exists()  # ... and writes nothing


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["quickstrat"], "Did you mean 'quickstart'"),
        (["quickstart", "probe=[linaer]"], "Did you mean 'linear'"),
        (["quickstart", "encoder=[eta]"], "Did you mean 'eat'"),
        (["quickstart", "dataset=[synth_event]"], "Did you mean 'synth_events'"),
        (["quickstart", "serch.trials=2"], "Did you mean 'search'"),
    ],
)
def test_bad_names_exit_2_before_any_ray_work(args, needle):
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", *args, "--dry-run"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Valid" in proc.stderr


def test_resume_without_a_previous_run_is_refused(tmp_path):
    from orchestrator.config import load
    from orchestrator.sweep import run

    cfg = load("quickstart", [], out_dir=str(tmp_path / "fresh"))
    assert run(cfg, resume=True) == 2
