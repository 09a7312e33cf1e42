"""The record layer's writer: what a trial's end must persist, written off the Tune loop.

Ray Tune calls the driver's callbacks on the thread that schedules trials, so every
millisecond spent there is a millisecond a freed worker slot waits for its next trial.
Measured with ``benchmarks/scale.py`` (64 studies of tiny trials, a local sqlite MLflow store),
MLflow's ``create_run``/``log_batch``/status writes took 56 % of the driver's busy time. The
:class:`Recorder` runs those writes (MLflow, the study ledgers, the trained-probe copies and a
finished study's ``final.parquet``) on one background thread, strictly in the order they were
submitted, so the crash-safety orders of the callers still hold: a trial's MLflow close before
its ledger row, a study's MLflow selection before its ``final.parquet``. A kill loses at most
the writes still queued, which a re-run redoes (the ledgers are the truth; the tracker reuses
runs by key and ``close_stale`` closes what was left RUNNING).

A write that raises stops the recorder: the error is raised again on the caller's thread at
its next ``submit`` or at ``drain``, so a broken MLflow server fails the sweep as it did when
the writes were synchronous, instead of being lost in a thread.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class RecorderError(RuntimeError):
    """A background write failed (its cause is chained)."""


class Recorder:
    """One writer thread; ``submit`` queues a call, ``drain`` waits until all ran.

    ``limit`` bounds the queue: when the writer falls that far behind (a slow server), the
    submitting thread waits instead of growing the queue without end. ``background=False`` runs
    every call at once on the caller's thread (tests, tools).
    """

    def __init__(self, limit: int = 10000, background: bool = True) -> None:
        self.background = background
        self._queue: queue.Queue[tuple[Callable[..., Any], tuple, dict] | None] = queue.Queue(
            maxsize=limit
        )
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
            self._thread.start()

    def __reduce__(self):
        # Tune pickles its callbacks into its (never restored) experiment state: a copy is a
        # foreground recorder, without the thread and the queue
        return (Recorder, (1, False))

    def _loop(self) -> None:
        while True:
            task = self._queue.get()
            try:
                if task is None:
                    return
                if self._error is None:  # after a failure, later writes are skipped
                    fn, args, kwargs = task
                    fn(*args, **kwargs)
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                log.error("a background write failed: %s", err)
                self._error = err
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise RecorderError(f"recording a result failed: {err}") from err

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._raise()
        if not self.background:
            fn(*args, **kwargs)
            return
        self._queue.put((fn, args, kwargs))

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def drain(self) -> None:
        """Wait until every submitted write ran; raise the first failure."""
        if self.background:
            self._queue.join()
        self._raise()

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join()
