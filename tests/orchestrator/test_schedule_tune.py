"""The schedule's Tune adapter without Ray: trials packed into Tune trials, each recorded as it
ends; a failed trial fails alone; a dead worker's trials rerun one at a time; a pack that
lost a store entry holds its study; rung cutoffs handed out equal the driver's decisions."""

from __future__ import annotations

import itertools
import math
import random

import optuna

from orchestrator.packing import Packing
from orchestrator.schedule import StudyState
from orchestrator.schedule_tune import BookSearcher, RungScheduler, ScheduleCallback
from orchestrator.studybook import StudyBook
from tests.orchestrator.test_schedule import SETTINGS, SPACE, curve

optuna.logging.set_verbosity(optuna.logging.WARNING)

IDS = itertools.count()


class FakeTrial:
    """What the callback reads of a Tune trial."""

    def __init__(self, config: dict, error: str = "") -> None:
        self.trial_id = f"t{next(IDS)}"
        self.config = config
        self.error_file = None
        self._error = error

    def get_error(self):
        return self._error


def make(n_studies: int = 3, pack_seconds: float = 1.0, slots: int = 2):
    done = []
    book = StudyBook(
        [f"s{i}" for i in range(n_studies)],
        lambda sid: StudyState(sid, SPACE, SETTINGS),
        done.append,
    )
    packing = Packing(pack_seconds, slots)
    rows = []
    callback = ScheduleCallback(
        book, lambda study, row: rows.append(row), None, lambda sid: {}, packing=packing
    )
    searcher = BookSearcher(book, "val_score", "max", packing=packing)
    return book, packing, callback, searcher, rows, done


def events_for(config: dict, stop_at: int | None = None, status: str = "ok") -> list[dict]:
    """What the worker sends for one trial: start, its epochs (to ``stop_at``), done."""
    epochs = SETTINGS.epochs if stop_at is None else stop_at
    scores = curve(config["params"], config["seed"], SETTINGS.epochs)
    out = [{"event": "start", "key": config["key"]}]
    for epoch in range(1, epochs + 1):
        out.append({"event": "epoch", "key": config["key"], "epoch": epoch,
                    "val_score": scores[epoch - 1]})  # fmt: skip
    out.append({"event": "done", "key": config["key"], "status": status,
                "error": "TrialError: boom" if status == "error" else "", "seconds": 0.05})  # fmt: skip
    return out


def local_stop(config: dict) -> int | None:
    """The epoch at which the worker stops the trial itself (its handed-out rung plan)."""
    cutoffs = {int(r): c for r, c in config["rungs"] or []}
    scores = curve(config["params"], config["seed"], SETTINGS.epochs)
    for epoch in range(1, SETTINGS.epochs + 1):
        if epoch in cutoffs and not (scores[epoch - 1] >= cutoffs[epoch]):
            return epoch
    return None


def test_rung_plans_handed_out_equal_the_drivers_decisions():
    """Reproducible mode: the cutoffs a trial gets when handed out stop it exactly where the
    driver's per-epoch decision would, in any completion order."""
    for order in range(4):
        study = StudyState("s", SPACE, SETTINGS)
        rng = random.Random(order)
        running = {}
        while not study.done:
            while len(running) < 3:
                item = study.next_item()
                if item is None:
                    break
                running[item.key] = (item, study.rung_plan(item.key))
            key = rng.choice(sorted(running))
            item, plan = running.pop(key)
            config = {**item.config(), "rungs": plan}
            expected = local_stop(config) if item.stage == "search" else None
            scores = curve(item.params, item.seed, SETTINGS.epochs)
            stopped = None
            for epoch, score in enumerate(scores, start=1):
                if study.should_stop(key, epoch, score):
                    stopped = epoch
                    break
            assert stopped == expected, (key, plan, scores)
            study.finish(key, "ok", {"val_score": scores[(stopped or SETTINGS.epochs) - 1]})


def test_trials_are_packed_by_measured_cost_and_fair_share():
    _, packing, _, searcher, _, _ = make(n_studies=1, pack_seconds=1.0, slots=2)
    first = searcher.suggest("a")["pack"]
    assert len(first) == 1  # nothing measured yet: it runs alone
    packing.observe("s0", "search", 0.1)  # now ~10 fit in a pack
    second = searcher.suggest("b")["pack"]
    # 3 more start-up trials are runnable; one of the 2 slots is free (the first pack holds
    # the other), so this pack may take them all
    assert [c["key"] for c in second] == ["s0/search/1", "s0/search/2", "s0/search/3"]
    assert all(c["rungs"] == [] for c in second)  # batch 0: no earlier rung scores, no cutoffs


def test_fair_share_leaves_work_for_free_slots():
    _, packing, _, searcher, _, _ = make(n_studies=1, pack_seconds=1.0, slots=2)
    packing.observe("s0", "search", 0.1)
    sizes = [len(searcher.suggest(str(i))["pack"]) for i in range(2)]
    assert sizes == [2, 2]  # 4 runnable start-up trials, 2 free slots: 2 each


def test_packing_off_hands_out_one_trial_per_tune_trial():
    _, packing, _, searcher, _, _ = make(n_studies=2, pack_seconds=0.0)
    packing.observe("s0", "search", 0.001)
    assert all(len(searcher.suggest(str(i))["pack"]) == 1 for i in range(4))


def run_pack(callback, scheduler, trial, stops=None, fail=()):
    stops = stops or {}
    events = []
    for config in trial.config["pack"]:
        status = "error" if config["key"] in fail else "ok"
        events += events_for(config, stops.get(config["key"]), status)
    decision = scheduler.on_trial_result(None, trial, {"events": events, "done": False})
    callback.on_trial_complete(0, [], trial)
    return decision


def test_a_pack_records_each_trial_and_a_failed_trial_fails_alone():
    book, packing, callback, searcher, rows, _ = make(n_studies=1, slots=1)
    packing.observe("s0", "search", 0.01)
    scheduler = RungScheduler(callback)
    trial = FakeTrial(searcher.suggest("a"))
    callback.on_trial_start(0, [], trial)
    keys = [c["key"] for c in trial.config["pack"]]
    assert len(keys) == 4
    assert run_pack(callback, scheduler, trial, fail={keys[1]}) == "CONTINUE"
    assert [r["key"] for r in rows] == keys
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "ok"]
    assert rows[0]["scores"] == curve(trial.config["pack"][0]["params"], 0, SETTINGS.epochs)
    assert callback.failed == [keys[1]] and packing.live == 0
    assert book.next_item() is not None  # batch 0 closed: batch 1 opened


def test_a_dead_worker_reruns_its_unfinished_trials_one_at_a_time():
    _, packing, callback, searcher, rows, _ = make(n_studies=1, slots=1)
    packing.observe("s0", "search", 0.01)
    scheduler = RungScheduler(callback)
    died = "ray.exceptions.ActorDiedError: The actor died unexpectedly"
    trial = FakeTrial(searcher.suggest("a"), error=died)
    callback.on_trial_start(0, [], trial)
    first, *rest = trial.config["pack"]
    scheduler.on_trial_result(None, trial, {"events": events_for(first), "done": False})
    callback.on_trial_error(0, [], trial)
    assert [r["key"] for r in rows] == [first["key"]]  # what finished stays finished
    assert callback.failed == []  # nobody knows which trial killed the worker
    again = [searcher.suggest(str(i)) for i in range(len(rest))]
    assert [[c["key"] for c in p["pack"]] for p in again] == [[c["key"]] for c in rest]
    # alone, the trial whose worker keeps dying reruns once more, then fails
    culprit = again[0]
    for attempt in range(2):
        lone = FakeTrial(culprit, error=f"{died} (attempt {attempt})")
        callback.on_trial_start(0, [], lone)
        callback.on_trial_error(0, [], lone)
        if attempt == 0:
            assert callback.failed == []
            culprit = searcher.suggest("again")
            assert [c["key"] for c in culprit["pack"]] == [rest[0]["key"]]
    assert callback.failed == [rest[0]["key"]]
    assert rows[-1]["status"] == "error" and "died 3 times" in rows[-1]["error"]


def test_an_error_that_is_not_a_dead_worker_fails_a_lone_trial_at_once():
    _, _, callback, searcher, rows, _ = make(n_studies=1, slots=1)
    trial = FakeTrial(
        searcher.suggest("a"),
        error="RuntimeError: The actor with name ImplicitFunc failed to import on the worker",
    )
    assert len(trial.config["pack"]) == 1
    callback.on_trial_start(0, [], trial)
    callback.on_trial_error(0, [], trial)
    assert callback.failed == [trial.config["pack"][0]["key"]] and rows[-1]["status"] == "error"


def test_a_pack_that_lost_its_store_entry_holds_the_study_and_requeues_the_rest():
    book, packing, callback, searcher, rows, _ = make(n_studies=2, slots=1)
    packing.observe("s0", "search", 0.01)
    packing.observe("s1", "search", 0.01)
    held = []
    callback.on_lost = lambda study, error: held.append(study.study_id)
    trial = FakeTrial(searcher.suggest("a"), error="orchestrator.trial.StoreEntryLost: gone")
    callback.on_trial_start(0, [], trial)
    pack = trial.config["pack"]
    lost = pack[1]
    events = events_for(pack[0]) + [{"event": "start", "key": lost["key"]}]
    RungScheduler(callback).on_trial_result(None, trial, {"events": events, "done": False})
    callback.on_trial_error(0, [], trial)
    assert [r["key"] for r in rows] == [pack[0]["key"]]
    assert callback.lost == 1 and held == [lost["study"]] and lost["study"] in book.held
    assert callback.failed == []
    book.release()
    keys = []
    while (item := book.next_item()) not in (None, StudyBook.FINISHED):
        keys.append(item.key)
    assert {c["key"] for c in pack[1:]} <= set(keys)  # every unfinished one runs again


def test_async_rungs_are_decided_by_the_driver_and_run_alone():
    from dataclasses import replace

    settings = replace(SETTINGS, reproducible=False)
    book = StudyBook(["s0"], lambda sid: StudyState(sid, SPACE, settings), lambda s: None)
    packing = Packing(1.0, 1)
    packing.observe("s0", "search", 0.001)
    rows = []
    callback = ScheduleCallback(
        book, lambda study, row: rows.append(row), None, lambda sid: {}, packing=packing
    )
    searcher = BookSearcher(book, "val_score", "max", packing=packing)
    scheduler = RungScheduler(callback)
    decisions = []
    for i in range(SETTINGS.trials):
        config = searcher.suggest(str(i))
        assert len(config["pack"]) == 1 and config["pack"][0]["rungs"] is None
        trial = FakeTrial(config)
        callback.on_trial_start(0, [], trial)
        item = config["pack"][0]
        stop = None
        for event in events_for(item)[:-1]:  # epoch by epoch, as the worker flushes them
            if scheduler.on_trial_result(None, trial, {"events": [event]}) == "STOP":
                stop = event["epoch"]
                break
        if stop is None:
            scheduler.on_trial_result(None, trial, {"events": events_for(item)[-1:]})
        decisions.append(stop)
        callback.on_trial_complete(0, [], trial)
    assert any(d is not None for d in decisions)  # the driver pruned some
    assert len(rows) == SETTINGS.trials
    assert all(
        (r["status"] == "pruned") == (d is not None) for r, d in zip(rows, decisions, strict=True)
    )
    assert all(math.isfinite(r["val_score"]) for r in rows)
