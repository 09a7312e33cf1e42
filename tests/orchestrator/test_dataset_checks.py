"""Metadata problems are all found before any task: ``orchestrator.data --check`` and the
sweep's pre-flight list each with file and row, and exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import ray

from orchestrator.data import main as data_main
from orchestrator.datasets import get_dataset
from orchestrator.datasets.audio import write_audio
from orchestrator.datasets.checks import check_dataset
from orchestrator.datasets.synth import EVENT_CLASSES

ROWS = [
    {"id": f"{split}-{i}", "split": split, "path": f"audio/{split}-{i}.wav", "labels": "tone"}
    for split in ("train", "valid", "test")
    for i in range(3)
]


def make_folder(root: Path, rows=ROWS, classes=EVENT_CLASSES) -> Path:
    root.mkdir(parents=True)
    (root / "audio").mkdir()
    for r in rows:
        if r.get("path"):
            write_audio(root / r["path"], np.zeros(800, dtype=np.float32), 16000, fmt="WAV")
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    fields = [c for c in ("id", "split", "path", "labels", "start", "end") if any(c in r for r in rows)]
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return root


def edit(i: int, **changes):
    rows = [dict(r) for r in ROWS]
    rows[i].update(changes)
    return rows


def delete_files(root: Path, split: str) -> None:
    for p in (root / "audio").glob(f"{split}-*.wav"):
        p.unlink()


# (id, dataset, rows, post-edit of the folder, substrings every listed problem set must contain)
CASES = [
    ("missing-column", "synth_control", [{k: v for k, v in r.items() if k != "labels"} for r in ROWS],
     None, ["row 1", "missing column(s) ['labels']"]),
    ("unknown-split", "synth_control", edit(4, split="holdout"), None, ["row 6", "'holdout'"]),
    ("unknown-label", "synth_control", edit(1, labels="tonee"), None,
     ["row 3", "unknown label 'tonee'", "Did you mean 'tone'"]),
    ("label-index", "synth_control", edit(2, labels="99"), None, ["row 4", "index 99 outside 0..9"]),
    ("duplicate-id", "synth_control", edit(1, id="train-0"), None,
     ["row 3", "duplicate id 'train-0', first at row 2"]),
    ("duplicate-across", "synth_control", edit(7, id="train-0"), None,
     ["row 9", "duplicate id 'train-0'", "shared between splits"]),
    ("missing-file", "synth_control", ROWS, lambda r: (r / "audio/valid-1.wav").unlink(),
     ["row 6", "'audio/valid-1.wav' does not exist"]),
    ("all-test-missing", "synth_control", ROWS, lambda r: delete_files(r, "test"),
     ["row 8", "row 9", "row 10", "audio/test-0.wav"]),
    ("empty-path", "synth_control", edit(0, path=""), None, ["row 2", "empty path"]),
    ("multilabel-empty", "synth_events", edit(3, labels=""), None,
     ["row 5", "no labels on a multi-label dataset"]),
    ("multiclass-0", "synth_control", edit(5, labels=""), None,
     ["row 7", "0 labels on a multi-class dataset"]),
    ("multiclass-2", "synth_control", edit(6, labels="tone;pluck"), None,
     ["row 8", "2 labels on a multi-class dataset"]),
    ("classes-count", "synth_control", ROWS,
     lambda r: (r / "classes.txt").write_text("tone\npluck\n"),
     ["classes.txt", "lists 2 classes but 'synth_control' has 10"]),
    ("start-abc", "synth_control", edit(2, start="abc", end="1"), None,
     ["row 4", "column 'start'", "start='abc' is not a number"]),
    ("end-before-start", "synth_control", edit(2, start="2", end="1"), None,
     ["row 4", "end=1 is not after start=2"]),
    ("no-test-rows", "synth_control", [r for r in ROWS if r["split"] != "test"], None,
     ["no rows for the 'test' split"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "rows", "post", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_data_check_lists_the_problem_with_file_and_row(name, rows, post, needles, tmp_path, capsys):
    folder = make_folder(tmp_path / "ds", rows)
    if post:
        post(folder)
    code = data_main([name, "--check", "--source", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "metadata.csv" in err or "classes.txt" in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"


def test_every_problem_is_listed_at_once(tmp_path):
    rows = edit(1, labels="tonee")
    rows[4]["split"] = "holdout"
    rows[7]["id"] = "train-0"
    rows[2].update(start="x")
    folder = make_folder(tmp_path / "ds", rows)
    (folder / "audio/valid-2.wav").unlink()
    problems = check_dataset(get_dataset("synth_control", source=str(folder)), str(folder))
    assert {p.kind for p in problems} == {
        "unknown label", "unknown split", "duplicate id", "bad window", "missing file"
    }  # fmt: skip
    assert sorted(p.row for p in problems) == [3, 4, 6, 7, 9]


def test_a_clean_folder_has_no_problems(tmp_path, capsys):
    folder = make_folder(tmp_path / "ds")
    assert check_dataset(get_dataset("synth_control", source=str(folder)), str(folder)) == []
    assert data_main(["synth_control", "--check", "--source", str(folder), "--no-progress"]) == 0


def test_sweep_preflight_refuses_bad_metadata_before_ray(tmp_path, capsys, monkeypatch):
    from orchestrator.sweep import main

    def refuse(*a, **k):
        raise AssertionError("ray.init called")

    monkeypatch.setattr(ray, "init", refuse)
    folder = make_folder(tmp_path / "ds", edit(6, labels="tone;pluck"))
    code = main(["quickstart", "dataset=[synth_control]",
                 f"+dataset.synth_control.source={folder}", "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"{folder}/metadata.csv row 8" in err and "2 labels on a multi-class" in err
