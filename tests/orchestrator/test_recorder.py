"""The recorder thread: writes run in submission order, off the caller's thread; a failed write
fails the caller (at its next submit or at drain), never silently."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

from orchestrator.recorder import Recorder, RecorderError


def test_writes_run_in_order_on_one_other_thread():
    seen: list[tuple[int, str]] = []
    recorder = Recorder()
    for i in range(200):
        recorder.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    recorder.close()
    assert [i for i, _ in seen] == list(range(200))
    assert {name for _, name in seen} == {"recorder"}


def test_submit_does_not_wait_for_a_slow_write():
    gate = threading.Event()
    recorder = Recorder()
    started = time.monotonic()
    recorder.submit(gate.wait)
    recorder.submit(lambda: None)
    assert time.monotonic() - started < 1.0 and recorder.pending() == 2
    gate.set()
    recorder.close()
    assert recorder.pending() == 0


def test_a_failed_write_fails_the_caller_and_skips_later_writes():
    later: list[int] = []
    recorder = Recorder()

    def broken():
        raise ConnectionError("MLflow server at http://mlflow:5000 refused the connection")

    recorder.submit(broken)
    recorder.submit(later.append, 1)
    with pytest.raises(RecorderError, match="refused the connection") as err:
        recorder.drain()
    assert isinstance(err.value.__cause__, ConnectionError)
    assert later == []  # nothing written after the failure (the order guarantee holds)
    recorder.close()


def test_a_pickled_recorder_writes_in_the_foreground():
    """Tune pickles its callbacks (and so the submit they hold) into its experiment state."""
    copy = pickle.loads(pickle.dumps(Recorder()))
    out: list[int] = []
    copy.submit(out.append, 7)
    assert out == [7]
