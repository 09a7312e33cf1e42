"""The schedule on Ray Tune: one Tune run drives every study of the sweep from the driver.

:class:`BookSearcher` hands out the :class:`~orchestrator.schedule.StudyBook`'s trials,
:class:`RungScheduler` asks it whether a search trial reporting an epoch goes on, and
:class:`ScheduleCallback` records what each finished trial proves (the study's ledger, the
trained probe, MLflow) and logs progress. Tune's own experiment state is never read back:
the ledgers are the source of truth for resume.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from orchestrator.studybook import StudyBook

log = logging.getLogger(__name__)

LOST = "StoreEntryLost"  # orchestrator.trial.StoreEntryLost, as it appears in a trial's error


class BookSearcher(Searcher):
    """A Tune searcher over every study: ``suggest`` is the book's next trial.

    After ``budget`` trials it reports FINISHED (the Tune run ends once they finish; the
    driver starts another over the same book): Tune keeps every trial of a run in memory.
    """

    def __init__(self, book: StudyBook, metric: str, mode: str, budget: int = 0) -> None:
        super().__init__(metric=metric, mode=mode)
        self.book = book
        self.budget = budget
        self.handed_out = 0
        self.exhausted = False  # the book has nothing left at all

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.budget and self.handed_out >= self.budget:
            return Searcher.FINISHED
        item = self.book.next_item()
        if item is None:
            return None
        if item == StudyBook.FINISHED:
            self.exhausted = True
            return Searcher.FINISHED
        self.handed_out += 1
        return item.config()

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        """Recorded by :class:`ScheduleCallback`, which also sees the error and the trial."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a re-run replays the ledgers, never Tune's searcher state."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""


class RungScheduler(FIFOScheduler):
    """Successive halving decided by the book (per study; deterministic in reproducible mode)."""

    def __init__(self, book: StudyBook, metric: str) -> None:
        super().__init__()
        self.book = book
        self.score_key = metric

    @property
    def supports_buffered_results(self) -> bool:
        return False  # one decision per epoch, in epoch order

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        key = trial.config.get("key")
        epoch = int(result.get("epoch", 0) or 0)
        if key is None or epoch < 1:
            return TrialScheduler.CONTINUE
        score = result.get(self.score_key)
        score = float(score) if isinstance(score, (int, float)) else math.nan
        if self.book.should_stop(key, epoch, score):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def _error_text(trial) -> str:
    error = trial.get_error() if hasattr(trial, "get_error") else None
    text = str(error or "")
    if not text and trial.error_file:
        try:
            with open(trial.error_file) as handle:
                text = handle.read()
        except OSError:
            text = ""
    return text[-4000:] or "unknown error (see the Ray worker logs)"


def first_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    for line in reversed(lines):  # the exception line of a traceback
        if "Error" in line or "Exception" in line:
            return line.strip()[:300]
    return (lines[-1] if lines else "?").strip()[:300]


class ScheduleCallback(Callback):
    """Driver-side record of every trial: ledger row, probe file, MLflow runs, progress."""

    def __init__(
        self,
        book: StudyBook,
        on_finished: Callable[[Any, dict[str, Any], Any], None],
        tracker,
        trial_tags: Callable[[str], dict[str, Any]],
        progress_seconds: float = 30.0,
    ) -> None:
        self.book = book
        self.on_finished = on_finished
        self.tracker = tracker
        self.trial_tags = trial_tags
        self.progress_seconds = progress_seconds
        self._last_progress = time.monotonic()
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []
        self.collect: Callable[[dict[str, Any]], None] = lambda config: None
        # runs a write (MLflow, files) for the callbacks; the driver passes its Recorder's
        # submit so that no write blocks the Tune loop (orchestrator/recorder.py)
        self.record: Callable[..., None] = lambda fn, *args, **kw: fn(*args, **kw)
        self.on_lost: Callable[[Any, str], None] = lambda study, error: None
        self.lost = 0

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = trial.config
        if self.tracker is not None:
            self.record(
                self.tracker.trial_started,
                config["study"],
                config["key"],
                config["stage"],
                {**config["params"], "seed": config["seed"]},
                {**self.trial_tags(config["study"]), "seed": config["seed"]},
            )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.tracker is None:
            return
        metrics = {
            k: v
            for k, v in result.items()
            if k.startswith(("val_", "test_", "train_")) and isinstance(v, (int, float))
        }
        self.record(
            self.tracker.trial_result,
            trial.config["key"],
            metrics,
            int(result.get("epoch", 0) or 0),
        )

    def _finish(self, trial, status: str, error: str = "") -> None:
        key = trial.config["key"]
        metrics = dict(trial.last_result or {})
        if status == "ok":  # before the book may close the study and log its files
            self.record(self.collect, dict(trial.config))
        # MLflow first, the ledger second (the record keeps the order): a kill in between
        # reruns the trial (its run is reused by key); the other order would leave a ledger
        # trial whose run stays KILLED.
        if self.tracker is not None:
            self.record(
                self.tracker.trial_finished,
                key,
                "FAILED" if status == "error" else "FINISHED",
                error,
            )
        study, row = self.book.finish(key, status, metrics, error)
        if row is None:
            return
        self.counts[f"{row['stage']}.{row['status']}"] = (
            self.counts.get(f"{row['stage']}.{row['status']}", 0) + 1
        )
        self.on_finished(study, row, trial)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finish(trial, "ok")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = _error_text(trial)
        where = trial.error_file or "the Ray worker logs"
        if LOST in error:  # its data failed a checksum: recomputed, then the trial reruns
            key = trial.config["key"]
            line = next((x for x in error.splitlines() if LOST + ":" in x), first_line(error))
            log.warning("trial %s: %s; it will rerun", key, line.strip()[:400])
            if self.tracker is not None:
                self.record(self.tracker.trial_finished, key, "KILLED", error)
            self.lost += 1
            study = self.book.lost(key)
            if study is not None:
                self.on_lost(study, error)
            return
        log.warning(
            "trial %s failed: %s (full error: %s)", trial.config["key"], first_line(error), where
        )
        self.failed.append(trial.config["key"])
        self._finish(trial, "error", error)

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self.progress_seconds:
            self._last_progress = now
            self.log_progress()

    def log_progress(self) -> None:
        live = self.book.counts()
        for stage in ("search", "final"):
            done = {s: self.counts.get(f"{stage}.{s}", 0) for s in ("ok", "pruned", "error")}
            log.info(
                "%s trials: %d done (%d pruned, %d failed), %d running, %d waiting",
                stage,
                sum(done.values()),
                done["pruned"],
                done["error"],
                live.get(f"{stage}.running", 0),
                live.get(f"{stage}.pending", 0),
            )
        held = (
            f", {len(self.book.held)} paused for recomputed store entries" if self.book.held else ""
        )
        log.info(
            "studies: %d of %d finished, %d open%s",
            self.book.finished,
            self.book.total,
            len(self.book.active),
            held,
        )
