"""``python -m orchestrator.data``: prepare from an archive, check, and a clear offline error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.data import main
from orchestrator.datasets import get_dataset, open_split
from orchestrator.datasets.prepare import is_staged, write_birdset_classes
from tests.orchestrator.test_datasets_readers import esc50_archive


def test_prepare_from_archive_then_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    archive = shutil.make_archive(str(tmp_path / "master"), "zip", esc50_archive(tmp_path / "e"))
    data = tmp_path / "data"
    args = ["esc50", "--data-root", str(data), "--source", archive, "--no-progress"]
    assert main([*args, "--prepare"]) == 0
    spec = get_dataset("esc50", source=archive)
    assert is_staged(spec, data) and len(open_split(spec, "test", data)) == 2
    capsys.readouterr()
    assert main([*args, "--check"]) == 0
    out = capsys.readouterr().out
    assert "esc50: multiclass, 50 classes, accuracy" in out
    assert out.splitlines()[3].split()[:2] == ["train", "7"]  # folds 1-4 minus the carved valid
    # a clip that became unreadable is listed and the exit code says so
    wav = next((data / spec.folder_name).rglob("5-*.wav"))
    wav.write_bytes(b"not audio at all")
    assert main([*args, "--check"]) == 1
    assert f"unreadable test: {wav.name}" in capsys.readouterr().out


def test_prepare_without_network_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(
        [
            "esc50",
            "--prepare",
            "--data-root",
            str(tmp_path),
            "--no-progress",
            "--source",
            "http://127.0.0.1:9/ESC-50-master.zip",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "cannot download http://127.0.0.1:9/ESC-50-master.zip" in err
    assert "orchestrator.data esc50 --prepare --source /path/to/it" in err
    assert not list(tmp_path.iterdir()) or all(
        p.name.startswith(".") and p.suffix == ".lock" for p in tmp_path.iterdir()
    )


def test_unknown_dataset_exit_code_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["desd", "--check"]) == 2
    assert "Did you mean 'desed'" in capsys.readouterr().err


def test_check_synth_generates_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "synth_control",
            "--check",
            "--data-root",
            str(tmp_path),
            "--no-progress",
            "--option",
            "train_clips=3",
            "--option",
            "valid_clips=1",
            "--option",
            "test_clips=1",
            "--option",
            "clip_seconds=0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "synth_control: multiclass, 10 classes" in out


def test_birdset_class_list_parsed_without_executing(tmp_path: Path) -> None:
    py = tmp_path / "classes.py"
    py.write_text(
        "import os\nBIRD_NAMES_HIGH_SIERRAS = ['amepip', 'amerob']\n"
        "BIRD_NAMES_HAWAII = ['apapan']\n"
    )
    assert write_birdset_classes(py, "HSN", tmp_path / "c.txt") == ("amepip", "amerob")
    assert (tmp_path / "c.txt").read_text() == "amepip\namerob\n"
