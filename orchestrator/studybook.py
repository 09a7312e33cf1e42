"""The book of studies: every study of a sweep as one stream of trials, in a fixed priority.

``orchestrator.schedule.StudyState`` is one study (its Optuna study, batches and rungs); the
:class:`StudyBook` decides which study's trial runs next, opens studies lazily, closes finished
ones, and pauses the studies whose store entries are being recomputed. No Ray here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.schedule import Item, StudyState


class StudyBook:
    """All studies of a sweep as one stream of work, in a deterministic priority.

    Studies start in plan order; a new one starts only when no started study has a runnable
    trial (and fewer than ``max_active`` are open), so a few studies are in flight at a time
    and each worker's data cache stays warm. Runnable trials are handed out round-robin over
    the open studies, lowest trial number first. A finished study is handed to ``on_done``
    and dropped from memory.
    """

    FINISHED = "FINISHED"

    def __init__(
        self,
        study_ids: list[str],
        open_study: Callable[[str], StudyState],
        on_done: Callable[[StudyState], None],
        max_active: int = 0,
    ) -> None:
        self._waiting = list(study_ids)
        self._open_study = open_study
        self._on_done = on_done
        self.max_active = max_active
        self.active: dict[str, StudyState] = {}
        self.held: dict[str, StudyState] = {}  # waiting for lost store entries: no new trials
        self.blocked: Callable[[str], bool] = lambda study_id: False
        self._cursor = 0
        self.finished = 0
        self.total = len(study_ids)
        self.running: set[str] = set()

    def _activate(self) -> StudyState | None:
        while self._waiting and (not self.max_active or len(self.active) < self.max_active):
            study = self._open_study(self._waiting.pop(0))
            if study.done:  # everything was in the ledger
                self._close(study)
                continue
            if self.blocked(study.study_id):
                self.held[study.study_id] = study
                continue
            self.active[study.study_id] = study
            return study
        return None

    def _close(self, study: StudyState) -> None:
        self.active.pop(study.study_id, None)
        self.held.pop(study.study_id, None)
        self.finished += 1
        self._on_done(study)

    def hold(self, study_id: str) -> None:
        """Give ``study_id`` no new trial until :meth:`release` (its running ones finish)."""
        if study_id in self.active:
            self.held[study_id] = self.active.pop(study_id)

    def lost(self, key: str) -> StudyState | None:
        """A running trial whose data was lost: back to pending, its study held."""
        self.running.discard(key)
        study = self.study_of(key)
        if study is not None:
            study.requeue(key)
            self.hold(study.study_id)
        return study

    def requeue(self, key: str) -> None:
        """A trial handed out but never run (its pack ended first): back to pending."""
        self.running.discard(key)
        study = self.study_of(key)
        if study is not None:
            study.requeue(key)

    def runnable(self) -> int | None:
        """Trials that could be handed out now, or None when unopened studies could add more."""
        if self._waiting and (not self.max_active or len(self.active) < self.max_active):
            return None
        return sum(
            study.counts().get(f"{stage}.pending", 0)
            for study in self.active.values()
            for stage in ("search", "final")
        )

    def rung_plan(self, key: str) -> list[list[float]] | None:
        study = self.study_of(key)
        return study.rung_plan(key) if study is not None else []

    def release(self, study_ids=None, error: str = "") -> None:
        """Held studies run again (their data is back), or, with ``error``, fail with it."""
        for study_id in list(self.held if study_ids is None else study_ids):
            study = self.held.pop(study_id, None)
            if study is None:
                continue
            if error:
                study.error = error
                self.finished += 1
                self._on_done(study)
            else:
                self.active[study_id] = study

    def next_item(self) -> Item | str | None:
        """The next trial to run, None while every open study waits on running trials,
        ``FINISHED`` when all studies are done."""
        ids = list(self.active)
        for step in range(len(ids)):
            study = self.active[ids[(self._cursor + step) % len(ids)]]
            item = study.next_item()
            if item is not None:
                self._cursor = (self._cursor + step + 1) % max(len(ids), 1)
                self.running.add(item.key)
                return item
        while True:
            study = self._activate()
            if study is None:
                break
            item = study.next_item()
            if item is not None:
                self.running.add(item.key)
                return item
        if not self.active and not self._waiting:
            return self.FINISHED
        if not self.running:
            raise RuntimeError(
                f"schedule stalled: nothing running and nothing runnable in {sorted(self.active)}"
            )
        return None

    def study_of(self, key: str) -> StudyState | None:
        study_id = key.split("/", 1)[0]
        return self.active.get(study_id) or self.held.get(study_id)

    def should_stop(self, key: str, epoch: int, score: float) -> bool:
        study = self.study_of(key)
        return bool(study and study.should_stop(key, epoch, score))

    def finish(
        self, key: str, status: str, metrics: dict[str, Any], error: str = ""
    ) -> tuple[StudyState | None, dict[str, Any] | None]:
        """Record a finished trial; returns its study and ledger row (None if unknown)."""
        self.running.discard(key)
        study = self.study_of(key)
        if study is None:
            return None, None
        row = study.finish(key, status, metrics, error)
        if study.done:
            self._close(study)
        return study, row

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for study in [*self.active.values(), *self.held.values()]:
            for k, v in study.counts().items():
                out[k] = out.get(k, 0) + v
        return out
