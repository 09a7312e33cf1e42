"""Packs: several short trials run back to back in one Ray Tune trial.

A Tune trial costs the driver a fixed ~20-40 ms (an actor reset, a few steps of Tune's loop,
its callbacks) while its slot idles; against a 50 ms probe trial that is a third of the slot.
:class:`Packing` sizes packs from measured trial times; ``orchestrator.schedule_tune`` hands
them out and records their trials one by one; ``orchestrator.trial.run_pack`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.schedule import Item


class Packing:
    """How trials are packed into Tune trials (shared by the searcher and the callback).

    A Tune trial costs the driver a fixed ~20-40 ms (an actor reset, a few loop steps, its
    callbacks) and its slot is idle meanwhile: against a 50 ms trial that is a third of the
    slot. So the searcher hands out *packs*: trials run back to back in one Tune trial until
    their estimated time reaches ``seconds``. Estimates are the measured seconds of earlier
    trials of the same kind (``cost_key`` of the study, and the stage); a kind not measured
    yet runs alone. A pack never takes more than its share of the runnable trials (the other
    free slots get theirs), and a trial whose rungs the driver decides (async mode) or whose
    pack's worker died runs alone. ``seconds=0`` turns packing off. A pack holds trials of one
    ``data_key`` (encoder, dataset) only, so its worker reads one pair of splits, which it keeps
    placed for the next packs (data affinity, ``probes/resident.py``).
    """

    def __init__(
        self,
        seconds: float,
        slots: int,
        cost_key: Callable[[str], Any] = lambda study_id: study_id,
        max_items: int = 256,
        data_key: Callable[[str], Any] = lambda study_id: None,
    ) -> None:
        self.seconds = seconds
        self.data_key = data_key  # the (encoder, dataset) a study's trials read (#17)
        self.slots = max(1, slots)
        self.cost_key = cost_key
        self.max_items = max_items
        self.measured: dict[tuple, float] = {}  # (cost key, stage) -> seconds (moving average)
        self.solo: set[str] = set()  # trial keys that run alone from now on
        self.deaths: dict[str, int] = {}  # trial key -> times its worker died while it ran
        self.live = 0  # packs handed out and not ended
        self.sizes: list[int] = []

    def summary(self) -> str:
        """How trials were packed so far (for the progress log)."""
        if not self.sizes:
            return "no Tune trial yet"
        trials = sum(self.sizes)
        return (
            f"{trials} trials in {len(self.sizes)} Tune trials "
            f"(up to {max(self.sizes)} in one; ray.pack_seconds={self.seconds:g})"
        )

    def kind(self, study_id: str, stage: str) -> tuple:
        return (self.cost_key(study_id), stage)

    def observe(self, study_id: str, stage: str, seconds: float) -> None:
        kind = self.kind(study_id, stage)
        old = self.measured.get(kind)
        self.measured[kind] = seconds if old is None else 0.8 * old + 0.2 * seconds

    def estimate(self, item: Item) -> float:
        return self.measured.get(self.kind(item.study_id, item.stage), self.seconds)
