"""The schedule: every study's search and final trials as one deterministic stream of work.

``orchestrator.studybook.StudyBook`` multiplexes all studies of a sweep for a single Ray Tune
run on the driver (``orchestrator.schedule_tune`` adapts it to Tune). Each study is a :class:`StudyState`:
an in-memory Optuna study, its trials under stable keys (``<study_id>/search/<n>``,
``<study_id>/final/<config>-<seed>``), its successive-halving rungs and its ledger rows.

Reproducible mode (``search.reproducible``): search trial ``n`` belongs to batch ``b`` (batch 0
is the Sobol start-up trials, then ``search.batch_size`` trials each). A batch's points are
asked from Optuna only when every earlier batch finished, and Optuna is told the results in
trial-number order, pruned trials as ``PRUNED`` with their per-epoch values. A trial at rung
epoch ``r`` is stopped when its score is below the top ``1/eta`` of the rung-``r`` scores of
the study's earlier batches, so no decision depends on timing. A re-run replays the ledger
(the same asks and tells in the same order) and reruns only missing trials, each with its own
point. Async mode: points asked on demand, results told as they come, plain ASHA per study.

No Ray here: the logic is tested without it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from orchestrator.search import SobolThenTPE

log = logging.getLogger(__name__)

DONE_STATUSES = ("ok", "pruned", "error")


@dataclass(frozen=True)
class ScheduleSettings:
    """The search and final-stage settings of one study (plain data)."""

    trials: int
    startup_trials: int
    batch_size: int
    grace_epochs: int
    reduction_factor: int
    epochs: int
    top_k: int
    seeds: tuple[int, ...]
    reproducible: bool = True
    sampler_seed: int = 0

    def batch_of(self, number: int) -> int:
        """The batch of search trial ``number`` (batch 0: the Sobol start-up trials)."""
        first = min(self.startup_trials or self.batch_size, self.trials)
        if number < first:
            return 0
        return 1 + (number - first) // self.batch_size

    def batch_range(self, batch: int) -> range:
        first = min(self.startup_trials or self.batch_size, self.trials)
        if batch == 0:
            return range(first)
        start = first + (batch - 1) * self.batch_size
        return range(min(start, self.trials), min(start + self.batch_size, self.trials))

    def rungs(self) -> tuple[int, ...]:
        """Epochs at which a search trial may be stopped (``grace * eta^k`` below ``epochs``)."""
        out, epoch = [], self.grace_epochs
        while epoch < self.epochs:
            out.append(epoch)
            epoch *= self.reduction_factor
        return tuple(out)


@dataclass(frozen=True)
class Item:
    """One trial to run: what the trainable needs besides the study's spec."""

    key: str
    study_id: str
    stage: str  # "search" | "final"
    number: int  # search trial number, or final cell index
    params: dict[str, Any]
    seed: int
    config_index: int = -1

    def config(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "study": self.study_id,
            "stage": self.stage,
            "params": dict(self.params),
            "seed": self.seed,
            "config_index": self.config_index,
        }


@dataclass
class TrialRecord:
    item: Item
    batch: int = 0
    status: str = "pending"  # pending | running | ok | pruned | error
    scores: list[float] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    ot_trial: Any = None

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def row(self) -> dict[str, Any]:
        """The ledger row of a finished trial."""
        item = self.item
        return {
            "trial_id": item.key,
            "key": item.key,
            "stage": item.stage,
            "number": item.number,
            "batch": self.batch,
            "status": self.status,
            "error": self.error,
            "epochs": len(self.scores),
            "scores": [float(s) for s in self.scores],
            "device": str(self.metrics.get("device", "")),
            "precision": str(self.metrics.get("precision", "")),
            **{
                k: float(v)
                for k, v in sorted(self.metrics.items())
                if k.startswith(("val_", "test_")) and isinstance(v, (int, float))
            },
            # the score at the trial's last epoch, as the schedule saw it (not a later report)
            "val_score": float(self.scores[-1]) if self.scores else float("nan"),
            "seed": item.seed,
            "config_index": item.config_index,
            **{f"param.{k}": v for k, v in sorted(item.params.items())},
        }


def search_key(study_id: str, number: int) -> str:
    return f"{study_id}/search/{number}"


def final_key(study_id: str, config_index: int, seed: int) -> str:
    return f"{study_id}/final/{config_index}-{seed}"


def _params_match(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, float) or isinstance(w, float):
            if not math.isclose(float(v), float(w), rel_tol=1e-9, abs_tol=0.0):
                return False
        elif v != w:
            return False
    return True


def rank_search(rows: list[dict[str, Any]], k: int, epochs: int) -> list[dict[str, Any]]:
    """The ``k`` best search configurations: full-length trials first, then the last
    validation score, ties broken by trial number (the stable key), never by timing."""
    scored = [
        r
        for r in rows
        if r["status"] in ("ok", "pruned")
        and isinstance(r.get("val_score"), float)
        and math.isfinite(r["val_score"])
    ]
    scored.sort(key=lambda r: (r["epochs"] != epochs, -r["val_score"], r["number"]))
    return [
        {
            c.removeprefix("param."): v
            for c, v in r.items()
            if c.startswith("param.") and v is not None
        }
        for r in scored[:k]
    ]


class StudyState:
    """One study: its Optuna study, trials, rungs and ledger, replayed from ``ledger`` rows."""

    def __init__(
        self,
        study_id: str,
        space: dict[str, Any],
        settings: ScheduleSettings,
        ledger: list[dict[str, Any]] = (),
    ) -> None:
        self.study_id = study_id
        self.space = dict(space)
        self.s = settings
        self.optuna = optuna.create_study(
            direction="maximize",
            sampler=SobolThenTPE(self.space, settings.startup_trials, seed=settings.sampler_seed),
        )
        self.search: dict[int, TrialRecord] = {}
        self.final: dict[int, TrialRecord] = {}
        self.configs: list[dict[str, Any]] = []
        self.rung_scores: dict[int, list[tuple[int, float]]] = {}  # rung -> (batch, score)
        self.search_done = False
        self.error = ""
        self.replaced = 0  # finished trials whose ledger point differed from the replayed one
        self._ledger = {
            row["key"]: row
            for row in ledger
            if row.get("status") in DONE_STATUSES
            and not (row.get("stage") == "final" and row.get("status") == "error")
        }
        self._told = 0
        if settings.reproducible:
            self._open_batch(0)
        else:
            self._replay_async()
        self._ledger = {k: v for k, v in self._ledger.items() if "/final/" in k}
        self._maybe_finish_search()

    # ----- search: points, batches, rungs -----------------------------------------------------

    def _ask(self, number: int, fixed: dict[str, Any] | None = None) -> TrialRecord:
        if fixed is not None:
            self.optuna.enqueue_trial(fixed, skip_if_exists=False)
        trial = self.optuna.ask(fixed_distributions=self.space)
        assert trial.number == number, (trial.number, number)
        item = Item(
            search_key(self.study_id, number),
            self.study_id,
            "search",
            number,
            dict(trial.params),
            0,
        )
        record = TrialRecord(item, batch=self.s.batch_of(number), ot_trial=trial)
        self.search[number] = record
        return record

    def _adopt(self, record: TrialRecord, row: dict[str, Any]) -> None:
        """Mark ``record`` finished with a ledger row (a trial of an earlier run)."""
        params = {k[6:]: v for k, v in row.items() if k.startswith("param.") and v is not None}
        if not _params_match(params, record.item.params):
            self.replaced += 1
            log.warning(
                "%s: the replayed point %s differs from the ledger's %s; keeping the ledger's",
                record.item.key,
                record.item.params,
                params,
            )
            record.item = Item(
                record.item.key, self.study_id, "search", record.item.number, params, 0
            )
        record.status = row["status"]
        record.scores = [float(x) for x in (row.get("scores") or [])]
        record.error = row.get("error") or ""
        record.metrics = {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}
        record.metrics["device"] = row.get("device", "")
        record.metrics["precision"] = row.get("precision") or ""

    def _open_batch(self, batch: int) -> None:
        numbers = self.s.batch_range(batch)
        if not numbers:
            return
        for n in numbers:
            record = self._ask(n)
            row = self._ledger.get(record.item.key)
            if row is not None:
                self._adopt(record, row)
        self._maybe_close_batch(batch)

    def _maybe_close_batch(self, batch: int) -> None:
        numbers = self.s.batch_range(batch)
        if not all(self.search[n].done for n in numbers):
            return
        for n in numbers:
            self._tell(self.search[n])
            self._record_rungs(self.search[n])
        self._open_batch(batch + 1)

    def _tell(self, record: TrialRecord) -> None:
        trial = record.ot_trial
        for epoch, score in enumerate(record.scores, start=1):
            if math.isfinite(score):
                trial.report(score, epoch)
        last = record.scores[-1] if record.scores else float("nan")
        if record.status == "ok" and math.isfinite(last) and len(record.scores) == self.s.epochs:
            self.optuna.tell(trial, last)
        elif record.status in ("ok", "pruned") and record.scores:
            self.optuna.tell(trial, state=TrialState.PRUNED)
        else:
            self.optuna.tell(trial, state=TrialState.FAIL)
        self._told += 1

    def _record_rungs(self, record: TrialRecord) -> None:
        for rung in self.s.rungs():
            if len(record.scores) >= rung:
                self.rung_scores.setdefault(rung, []).append(
                    (record.batch, record.scores[rung - 1])
                )

    def _replay_async(self) -> None:
        done = sorted(
            (row["number"], row) for row in self._ledger.values() if row.get("stage") == "search"
        )
        last = done[-1][0] if done else -1
        by_number = dict(done)
        for n in range(last + 1):
            row = by_number.get(n)
            if row is None:
                self._ask(n)  # a trial an earlier run left unfinished: rerun (own Sobol point)
                continue
            params = {k[6:]: v for k, v in row.items() if k.startswith("param.") and v is not None}
            record = self._ask(n, fixed=params)
            self._adopt(record, row)
            self._tell(record)
            self._record_rungs(record)

    def rung_plan(self, key: str) -> list[list[float]] | None:
        """How a trial handed out now is pruned: ``[[rung, cutoff], ...]`` when its cutoffs are
        fixed already (reproducible mode: the rungs of the study's earlier batches, all closed
        before this trial's batch opened), so the trial applies them itself; ``[]`` for a trial
        never pruned (final stage, no rungs); None when the driver decides at each rung epoch
        (async mode: the cutoff moves with every score that comes in)."""
        record = self._record(key)
        if record is None or record.item.stage != "search" or not self.s.rungs():
            return []
        if not self.s.reproducible:
            return None
        plan = []
        for rung in self.s.rungs():
            seen = [s for b, s in self.rung_scores.get(rung, []) if b < record.batch]
            if seen:
                plan.append([rung, self._cutoff(seen)])
        return plan

    def _cutoff(self, seen: list[float]) -> float:
        return float(np.nanpercentile(seen, (1 - 1 / self.s.reduction_factor) * 100))

    def should_stop(self, key: str, epoch: int, score: float) -> bool:
        """Record a search trial's epoch score; True when it falls below its rung's cutoff."""
        record = self._record(key)
        if record is None or record.done:
            return False
        del record.scores[epoch - 1 :]  # a retried trial reports from epoch 1 again
        record.scores.append(float(score))
        if record.item.stage != "search" or epoch not in self.s.rungs():
            return False
        if self.s.reproducible:
            seen = [s for b, s in self.rung_scores.get(epoch, []) if b < record.batch]
        else:
            seen = [s for _, s in self.rung_scores.get(epoch, [])]
            self.rung_scores.setdefault(epoch, []).append((record.batch, float(score)))
        if not seen:
            return False
        cutoff = self._cutoff(seen)
        stop = not (score >= cutoff)  # a NaN score is below every cutoff
        if stop:
            record.status = "pruning"
        return stop

    # ----- work items and results -------------------------------------------------------------

    def _record(self, key: str) -> TrialRecord | None:
        _, stage, rest = key.split("/", 2)
        if stage == "search":
            return self.search.get(int(rest))
        return self.final.get(self._cell_index(rest))

    def _cell_index(self, rest: str) -> int:
        config, seed = (int(x) for x in rest.split("-"))
        return config * len(self.s.seeds) + self.s.seeds.index(seed)

    def next_item(self) -> Item | None:
        """The lowest-numbered runnable trial (marked running), or None."""
        if not self.s.reproducible and not self.search_done:
            pending = [r for r in self.search.values() if r.status == "pending"]
            if not pending and len(self.search) < self.s.trials:
                pending = [self._ask(len(self.search))]
            if pending:
                record = min(pending, key=lambda r: r.item.number)
                record.status = "running"
                return record.item
        pool = self.search if not self.search_done else self.final
        for number in sorted(pool):
            record = pool[number]
            if record.status == "pending":
                record.status = "running"
                return record.item
        return None

    def finish(
        self, key: str, status: str, metrics: dict[str, Any], error: str = ""
    ) -> dict[str, Any] | None:
        """A trial ended (``ok`` or ``error``; a stopped one becomes ``pruned``): its ledger row."""
        record = self._record(key)
        if record is None or record.done:
            return None
        if status == "ok" and record.status == "pruning":
            status = "pruned"
        if status == "ok" and record.item.stage == "search" and len(record.scores) < self.s.epochs:
            status = "pruned"
        record.status = status
        record.metrics = dict(metrics)
        record.error = error
        if record.item.stage == "search":
            if self.s.reproducible:
                self._maybe_close_batch(record.batch)
            else:
                self._tell(record)  # its rung scores were recorded as they came
            self._maybe_finish_search()
        return record.row()

    def requeue(self, key: str) -> bool:
        """A running trial that must run again with its own point: its data was lost before
        it trained (a trial loads its splits before its first epoch, so it reported no
        score and no rung saw it)."""
        record = self._record(key)
        if record is None or record.done:
            return False
        record.status = "pending"
        record.scores.clear()
        return True

    def _maybe_finish_search(self) -> None:
        if self.search_done or len(self.search) < self.s.trials:
            return
        if not all(r.done for r in self.search.values()) or self._told < self.s.trials:
            return
        self.search_done = True
        self.configs = rank_search(self.search_rows(), self.s.top_k, self.s.epochs)
        if not self.configs:
            self.error = "every search trial failed"
            return
        for index, config in enumerate(self.configs):
            for seed in self.s.seeds:
                key = final_key(self.study_id, index, seed)
                cell = self._cell_index(f"{index}-{seed}")
                record = TrialRecord(Item(key, self.study_id, "final", cell, config, seed, index))
                row = self._ledger.get(key)
                if row is not None and row.get("status") == "ok":
                    record.status = "ok"
                    record.scores = [float(x) for x in (row.get("scores") or [])]
                    record.metrics = {
                        k: v for k, v in row.items() if k.startswith(("val_", "test_"))
                    } | {"device": row.get("device", ""), "precision": row.get("precision") or ""}
                self.final[cell] = record

    def search_rows(self) -> list[dict[str, Any]]:
        return [self.search[n].row() for n in sorted(self.search) if self.search[n].done]

    def rows(self) -> list[dict[str, Any]]:
        """Every finished trial's ledger row, search then final, by number."""
        final = [self.final[n].row() for n in sorted(self.final) if self.final[n].done]
        return self.search_rows() + final

    @property
    def done(self) -> bool:
        if self.error:
            return True
        return self.search_done and all(r.done for r in self.final.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in [*self.search.values(), *self.final.values()]:
            status = "running" if record.status == "pruning" else record.status
            out[f"{record.item.stage}.{status}"] = out.get(f"{record.item.stage}.{status}", 0) + 1
        return out
