"""The schedule on Ray Tune: one Tune run drives every study of the sweep from the driver.

:class:`BookSearcher` hands out the :class:`~orchestrator.studybook.StudyBook`'s trials in
packs (``orchestrator.packing``: short trials back to back in one Tune trial),
:class:`RungScheduler` passes every report to the callback first and stops a trial whose rung
the driver decides, and :class:`ScheduleCallback` applies a pack's events (each trial's start,
epochs and end) and records what each finished trial proves (the study's ledger, the trained
probe, MLflow) and logs progress. Tune's own experiment state is never read back: the ledgers
are the source of truth for resume.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

from orchestrator.packing import Packing
from orchestrator.schedule import Item
from orchestrator.search import METRIC
from orchestrator.studybook import StudyBook

log = logging.getLogger(__name__)

LOST = "StoreEntryLost"  # orchestrator.trial.StoreEntryLost, as it appears in a trial's error
# a trial's worker process died (Ray's words for it), unless it never started (an import error)
DIED = ("ActorDiedError", "ActorUnavailableError", "worker process has died")
NOT_A_DEATH = ("failed to import on the worker",)
MAX_DEATHS = 2  # a trial whose worker died this often reruns; once more, it fails


class BookSearcher(Searcher):
    """A Tune searcher over every study: ``suggest`` is the book's next pack of trials.

    After ``budget`` packs it reports FINISHED (the Tune run ends once they finish; the driver
    starts another over the same book): Tune keeps every trial of a run in memory.
    """

    def __init__(
        self,
        book: StudyBook,
        metric: str,
        mode: str,
        budget: int = 0,
        packing: Packing | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.book = book
        self.budget = budget
        self.packing = packing or Packing(0.0, 1)
        self.handed_out = 0
        self.exhausted = False  # the book has nothing left at all
        self._next: tuple[Item, Any] | None = None  # taken from the book, for the next pack

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def _take(self) -> tuple[Item, Any] | None | str:
        if self._next is not None:
            taken, self._next = self._next, None
            return taken
        item = self.book.next_item()
        if item is None or item == StudyBook.FINISHED:
            return item
        return item, self.book.rung_plan(item.key)

    def _alone(self, item: Item, plan) -> bool:
        return plan is None or item.key in self.packing.solo

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.budget and self.handed_out >= self.budget:
            return Searcher.FINISHED
        taken = self._take()
        if taken is None:
            return None
        if taken == StudyBook.FINISHED:
            self.exhausted = True
            return Searcher.FINISHED
        packing = self.packing
        pack = [taken]
        if packing.seconds > 0 and not self._alone(*taken):
            runnable = self.book.runnable()
            free = max(1, packing.slots - packing.live)
            limit = packing.max_items
            if runnable is not None:  # leave the other free slots their share
                limit = min(limit, max(1, math.ceil((runnable + 1) / free)))
            left = packing.seconds - packing.estimate(taken[0])
            data = packing.data_key(taken[0].study_id)
            while len(pack) < limit and left > 0:
                taken = self._take()
                if taken is None or taken == StudyBook.FINISHED:
                    break
                if self._alone(*taken) or packing.data_key(taken[0].study_id) != data:
                    self._next = taken  # runs alone, or reads other splits: the next pack
                    break
                pack.append(taken)
                left -= packing.estimate(taken[0])
        self.handed_out += 1
        packing.live += 1
        packing.sizes.append(len(pack))
        return {"pack": [{**item.config(), "rungs": plan} for item, plan in pack]}

    def give_back(self) -> None:
        """The Tune run ended: a trial taken for the next pack goes back to the book."""
        if self._next is not None:
            self.book.requeue(self._next[0].key)
            self._next = None

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        """Recorded by :class:`ScheduleCallback`, which also sees the error and the trial."""

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a re-run replays the ledgers, never Tune's searcher state."""

    def restore(self, checkpoint_path: str) -> None:
        """See :meth:`save`."""


class RungScheduler(FIFOScheduler):
    """Tune's first look at every report: the callback applies its events to the book, and a
    trial whose rung the driver decides (async mode) stops here when it falls below it.
    Reproducible-mode trials got their cutoffs when handed out and stop themselves."""

    def __init__(self, callback: ScheduleCallback) -> None:
        super().__init__()
        self.callback = callback

    @property
    def supports_buffered_results(self) -> bool:
        return False  # one decision per report, in order

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.callback.process(trial, result):
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


@dataclass
class _Pack:
    """The driver's view of one Tune trial: its trials, in the order the worker runs them."""

    configs: dict[str, dict[str, Any]]  # key -> the trial's config (insertion order = run order)
    started: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> last epoch report

    def unfinished(self) -> list[dict[str, Any]]:
        return [c for k, c in self.configs.items() if k not in self.done]


class ScheduleCallback(Callback):
    """Driver-side record of every trial: ledger row, probe file, MLflow runs, progress.

    A Tune trial is a pack of trials (:class:`Packing`); its reports carry events (``start``,
    ``epoch``, ``done``) that :meth:`process` applies in order, so each trial of a pack is
    recorded as it ends, exactly as a trial of its own would be.
    """

    def __init__(
        self,
        book: StudyBook,
        on_finished: Callable[[Any, dict[str, Any]], None],
        tracker,
        trial_tags: Callable[[str], dict[str, Any]],
        progress_seconds: float = 30.0,
        packing: Packing | None = None,
    ) -> None:
        self.book = book
        self.on_finished = on_finished
        self.tracker = tracker
        self.trial_tags = trial_tags
        self.progress_seconds = progress_seconds
        self.packing = packing or Packing(0.0, 1)
        self._last_progress = time.monotonic()
        self.counts: dict[str, int] = {}
        self.failed: list[str] = []
        self.collect: Callable[[dict[str, Any]], None] = lambda config: None
        # runs a write (MLflow, files) for the callbacks; the driver passes its Recorder's
        # submit so that no write blocks the Tune loop (orchestrator/recorder.py)
        self.record: Callable[..., None] = lambda fn, *args, **kw: fn(*args, **kw)
        self.on_lost: Callable[[Any, str], None] = lambda study, error: None
        self.lost = 0
        self.packs: dict[str, _Pack] = {}  # by Tune trial id
        self.loads: dict[str, int] = {}  # worker -> splits it loaded (data affinity, #17)

    def _pack(self, trial) -> _Pack:
        pack = self.packs.get(trial.trial_id)
        if pack is None:
            configs = trial.config.get("pack") or [trial.config]
            pack = self.packs[trial.trial_id] = _Pack({c["key"]: c for c in configs})
        return pack

    def _end(self, trial) -> _Pack:
        pack = self._pack(trial)
        del self.packs[trial.trial_id]
        self.packing.live = max(0, self.packing.live - 1)
        return pack

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._pack(trial)

    def _start(self, pack: _Pack, config: dict[str, Any], when: float | None = None) -> None:
        pack.started.add(config["key"])
        if self.tracker is not None:
            self.record(
                self.tracker.trial_started,
                config["study"],
                config["key"],
                config["stage"],
                {**config["params"], "seed": config["seed"]},
                {**self.trial_tags(config["study"]), "seed": config["seed"]},
                when,
            )

    def process(self, trial, result: dict) -> bool:
        """Apply a report's events; True when a rung the driver decides stops the trial."""
        if result.get("done"):  # Tune repeats the last report when the function returns
            return False
        pack, stop = self._pack(trial), False
        for event in result.get("events") or ():
            key = event.get("key")
            config = pack.configs.get(key)
            if config is None or key in pack.done:  # a retried pack runs its done trials again
                continue
            kind = event.get("event")
            if kind == "start" or key not in pack.started:
                self._start(pack, config, event.get("time"))
            if kind == "epoch":
                pack.last[key] = event
                if "worker" in event:
                    worker = str(event["worker"])
                    loads = int(event.get("split_loads", 0))
                    self.loads[worker] = max(self.loads.get(worker, 0), loads)
                epoch = int(event.get("epoch", 0) or 0)
                score = event.get(METRIC)
                score = float(score) if isinstance(score, (int, float)) else math.nan
                if epoch >= 1 and self.book.should_stop(key, epoch, score):
                    stop = stop or config.get("rungs", []) is None  # else it stopped itself
                if self.tracker is not None:
                    metrics = {
                        k: v
                        for k, v in event.items()
                        if k.startswith(("val_", "test_", "train_")) and isinstance(v, (int, float))
                    }
                    self.record(self.tracker.trial_result, key, metrics, epoch)
            elif kind == "done":
                pack.done.add(key)
                self.packing.observe(config["study"], config["stage"], float(event["seconds"]))
                error = event.get("error") or ""
                if event.get("status") == "error":
                    log.warning("trial %s failed: %s", key, first_line(error))
                    self.failed.append(key)
                    self._finish(pack, config, "error", error, event.get("time"))
                else:
                    self._finish(pack, config, "ok", when=event.get("time"))
        return stop

    def _finish(
        self,
        pack: _Pack,
        config: dict[str, Any],
        status: str,
        error: str = "",
        when: float | None = None,
    ) -> None:
        key = config["key"]
        pack.done.add(key)
        if key not in pack.started:
            self._start(pack, config)
        metrics = {k: v for k, v in pack.last.get(key, {}).items() if k not in ("event", "key")}
        if status == "ok":  # before the book may close the study and log its files
            self.record(self.collect, dict(config))
        # MLflow first, the ledger second (the record keeps the order): a kill in between
        # reruns the trial (its run is reused by key); the other order would leave a ledger
        # trial whose run stays KILLED.
        if self.tracker is not None:
            self.record(
                self.tracker.trial_finished,
                key,
                "FAILED" if status == "error" else "FINISHED",
                error,
                when,
            )
        study, row = self.book.finish(key, status, metrics, error)
        if row is None:
            return
        if row["status"] == "pruned" and self.tracker is not None:  # MLflow: says so (#23)
            state = {"state": "pruned", "pruned_epoch": row["epochs"]}
            self.record(self.tracker.tag_trial, key, state)
        self.counts[f"{row['stage']}.{row['status']}"] = (
            self.counts.get(f"{row['stage']}.{row['status']}", 0) + 1
        )
        self.on_finished(study, row)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        pack = self._end(trial)
        for config in pack.unfinished():
            if config["key"] in pack.started:  # stopped at a rung by the driver (async mode)
                self._finish(pack, config, "ok")
            else:  # never reached (the pack was stopped early): runs in a later pack
                self.book.requeue(config["key"])

    def _rerun(self, pack: _Pack, config: dict[str, Any], error: str) -> None:
        """An unfinished trial goes back to pending; a started one's run is closed KILLED
        (reopened with a ``restarts`` tag when it reruns)."""
        key = config["key"]
        if key in pack.started and self.tracker is not None:
            self.record(self.tracker.trial_finished, key, "KILLED", error)
        self.book.requeue(key)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        pack = self._end(trial)
        error = _error_text(trial)
        where = trial.error_file or "the Ray worker logs"
        left = pack.unfinished()
        if not left:
            return
        if LOST in error:  # its data failed a checksum: recomputed, then the trial reruns
            first = left[0]
            key = first["key"]
            line = next((x for x in error.splitlines() if LOST + ":" in x), first_line(error))
            log.warning("trial %s: %s; it will rerun", key, line.strip()[:400])
            if key in pack.started and self.tracker is not None:
                self.record(self.tracker.trial_finished, key, "KILLED", error)
            self.lost += 1
            for config in left[1:]:
                self._rerun(pack, config, error)
            study = self.book.lost(key)
            if study is not None:
                self.on_lost(study, error)
            return
        died = any(m in error for m in DIED) and not any(m in error for m in NOT_A_DEATH)
        if died:  # the worker process died (killed, OOM, segfault, its node lost)
            for config in left:
                self.packing.deaths[config["key"]] = self.packing.deaths.get(config["key"], 0) + 1
            again = [c for c in left if self.packing.deaths[c["key"]] <= MAX_DEATHS]
            if again:  # which trial killed it is not known: each reruns alone
                log.warning(
                    "a worker died running %d trial(s) (%s; full error: %s); %s rerun one at a time",
                    len(left),
                    first_line(error),
                    where,
                    ", ".join(c["key"] for c in again),
                )
            for config in again:
                self.packing.solo.add(config["key"])
                self._rerun(pack, config, error)
            left = [c for c in left if c not in again]
            for config in left:  # its worker died each time it ran: it fails
                error_text = (
                    f"its worker died {self.packing.deaths[config['key']]} times while it ran "
                    f"(out of memory? a crash?); the last error:\n{error}"
                )
                log.warning("trial %s failed: %s (full error: %s)", config["key"],
                            first_line(error), where)  # fmt: skip
                self.failed.append(config["key"])
                self._finish(pack, config, "error", error_text)
            return
        if len(left) > 1:  # an error outside the trials' own code: each reruns alone
            log.warning(
                "a Tune trial running %d trials failed (%s; full error: %s); they rerun one "
                "at a time",
                len(left),
                first_line(error),
                where,
            )
            for config in left:
                self.packing.solo.add(config["key"])
                self._rerun(pack, config, error)
            return
        log.warning(
            "trial %s failed: %s (full error: %s)", left[0]["key"], first_line(error), where
        )
        self.failed.append(left[0]["key"])
        self._finish(pack, left[0], "error", error)

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
                "%s trials: %d done (%d pruned, %d failed), %d on workers (running or next "
                "in a pack), %d waiting",
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
            "studies: %d of %d finished, %d open%s; %s; %s",
            self.book.finished,
            self.book.total,
            len(self.book.active),
            held,
            self.packing.summary(),
            self.loads_summary(),
        )

    def split_loads(self) -> int:
        """Splits loaded from the store by all trial workers so far (each worker keeps its
        splits placed and reuses them: about one load per split and worker, not per trial)."""
        return sum(self.loads.values())

    def loads_summary(self) -> str:
        return f"splits loaded {self.split_loads()} times by {len(self.loads)} trial workers"
