"""Extraction progress as the job log shows it: clips/s and ETA per (encoder, dataset) pair."""

from __future__ import annotations

from orchestrator.extract_jobs import ProgressBoard, _Rates


def test_progress_lines_give_rate_and_eta_per_pair():
    board, rates = ProgressBoard(), _Rates()
    board.report("eat / as20k", "train", 0, 1000, 0, 3)
    board.report("beats / as20k", "test", 0, 10, 2, 3)
    assert len(rates.lines(board.snapshot(), now=0.0)) == 2
    board.report("eat / as20k", "train", 500, 1000, 0, 3)
    lines = rates.lines(board.snapshot(), now=10.0)
    assert lines == [
        "extract eat / as20k: split train (1/3) 500/1000 clips, 50.0 clips/s, ETA 10 s"
    ]  # beats did not move: not repeated
    board.report("eat / as20k", "train", 1000, 1000, 0, 3)
    assert rates.lines(board.snapshot(), now=20.0)[0].endswith("done")
