"""The schedule without Ray: deterministic batches and rungs, pruned trials told as pruned,
a replayed ledger proposes exactly the undisturbed points, ties broken by the stable key."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.schedule import ScheduleSettings, StudyState, rank_search
from orchestrator.search import load_space, optuna_space
from orchestrator.studybook import StudyBook

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = optuna_space(load_space("default"))
SETTINGS = ScheduleSettings(
    trials=10,
    startup_trials=4,
    batch_size=3,
    grace_epochs=1,
    reduction_factor=2,
    epochs=4,
    top_k=2,
    seeds=(0, 1),
)


def curve(params: dict, seed: int, epochs: int) -> list[float]:
    """A deterministic learning curve: best near lr=1e-3, rising with epochs."""
    quality = -abs(math.log10(params["lr"]) + 3.0) - 1e3 * params["weight_decay"]
    return [50 + 10 * quality + 2 * e + 0.1 * seed for e in range(1, epochs + 1)]


def drive(book_or_study, *, slots: int, order: int, stop_after: int | None = None):
    """Run items ``slots`` at a time, advancing a randomly chosen running trial each step;
    return the finished rows in completion order (at most ``stop_after`` finishes)."""
    rng = random.Random(order)
    running: dict[str, tuple] = {}
    finished = []
    while True:
        while len(running) < slots:
            item = book_or_study.next_item()
            if item is None or item == StudyBook.FINISHED:
                break
            running[item.key] = (item, 0)
        if not running:
            return finished
        key = rng.choice(sorted(running))
        item, epoch = running[key]
        epoch += 1
        score = curve(item.params, item.seed, SETTINGS.epochs)[epoch - 1]
        stop = book_or_study.should_stop(key, epoch, score)
        if stop or epoch == SETTINGS.epochs:
            del running[key]
            metrics = {"val_score": score}
            if item.stage == "final":
                metrics["test_score"] = score - 1
            out = book_or_study.finish(key, "ok", metrics)
            finished.append(out[1] if isinstance(out, tuple) else out)
            if stop_after is not None and len(finished) >= stop_after:
                return finished
        else:
            running[key] = (item, epoch)


def _strip(rows):
    return [{k: v for k, v in r.items()} for r in rows]


def test_batches_and_rungs_are_deterministic():
    assert [SETTINGS.batch_of(n) for n in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert SETTINGS.rungs() == (1, 2)
    a = StudyState("s", SPACE, SETTINGS)
    drive(a, slots=1, order=0)
    b = StudyState("s", SPACE, SETTINGS)
    drive(b, slots=5, order=7)
    assert a.done and b.done
    assert _strip(a.rows()) == _strip(b.rows())
    assert {r["status"] for r in a.rows()} >= {"ok", "pruned"}
    # batch 0 (the Sobol start-up trials) is never pruned: nothing earlier to compare with
    assert all(r["status"] == "ok" for r in a.rows() if r["batch"] == 0)


def test_pruned_trials_reach_optuna_as_pruned_with_their_values():
    study = StudyState("s", SPACE, SETTINGS)
    drive(study, slots=3, order=1)
    rows = {r["number"]: r for r in study.search_rows()}
    pruned = [n for n, r in rows.items() if r["status"] == "pruned"]
    assert pruned
    for trial in study.optuna.trials:
        row = rows[trial.number]
        if row["status"] == "pruned":
            assert trial.state == TrialState.PRUNED
            assert trial.intermediate_values == dict(enumerate(row["scores"], start=1))
            assert len(row["scores"]) < SETTINGS.epochs
        else:
            assert trial.state == TrialState.COMPLETE
            assert trial.value == row["scores"][-1]


def test_batches_wait_for_earlier_batches():
    study = StudyState("s", SPACE, SETTINGS)
    first = [study.next_item() for _ in range(5)]
    assert [i.number for i in first[:4]] == [0, 1, 2, 3] and first[4] is None
    for item in first[:3]:
        for epoch in range(1, SETTINGS.epochs + 1):
            study.should_stop(item.key, epoch, curve(item.params, 0, 4)[epoch - 1])
        study.finish(item.key, "ok", {"val_score": 1.0})
    assert study.next_item() is None  # trial 3 of batch 0 still running
    item = first[3]
    for epoch in range(1, SETTINGS.epochs + 1):
        study.should_stop(item.key, epoch, 0.0)
    study.finish(item.key, "ok", {})
    assert study.next_item().number == 4


@pytest.mark.parametrize("stop_after", [2, 5, 9, 12])
def test_replayed_ledger_proposes_the_undisturbed_points(stop_after):
    whole = StudyState("s", SPACE, SETTINGS)
    drive(whole, slots=2, order=3)
    first = StudyState("s", SPACE, SETTINGS)
    drive(first, slots=4, order=5, stop_after=stop_after)
    ledger = first.rows()  # what the killed run had written
    resumed = StudyState("s", SPACE, SETTINGS, ledger=ledger)
    assert resumed.replaced == 0
    rerun = drive(resumed, slots=3, order=9)
    assert not {r["key"] for r in rerun} & {r["key"] for r in ledger}  # nothing finished reran
    assert resumed.rows() == whole.rows()


def test_failed_final_cells_are_retried_on_replay_and_search_errors_are_kept():
    study = StudyState("s", SPACE, SETTINGS)
    rows = []
    while (item := study.next_item()) is not None:
        status = (
            "error" if item.number in (1,) or item.stage == "final" and item.seed == 1 else "ok"
        )
        for epoch in range(1, SETTINGS.epochs + 1):
            study.should_stop(item.key, epoch, curve(item.params, item.seed, 4)[epoch - 1])
        rows.append(
            study.finish(item.key, status, {"val_score": 1.0}, "boom" * (status == "error"))
        )
        if study.done:
            break
    assert study.done
    again = StudyState("s", SPACE, SETTINGS, ledger=study.rows())
    todo = []
    while (item := again.next_item()) is not None:
        todo.append(item.key)
    assert todo == ["s/final/0-1", "s/final/1-1"]


def test_async_mode_runs_everything_and_replays():
    settings = ScheduleSettings(**{**SETTINGS.__dict__, "reproducible": False})
    study = StudyState("s", SPACE, settings)
    drive(study, slots=3, order=2)
    assert study.done and len(study.search_rows()) == 10
    first = StudyState("s", SPACE, settings)
    drive(first, slots=3, order=2, stop_after=5)
    resumed = StudyState("s", SPACE, settings, ledger=first.rows())
    rerun = drive(resumed, slots=3, order=4)
    assert resumed.done
    assert not {r["key"] for r in rerun} & {r["key"] for r in first.rows()}
    # unfinished start-up trials are rerun with their own Sobol point
    sobol = {r["number"]: r["param.lr"] for r in whole_sobol(settings)}
    for r in resumed.search_rows():
        if r["number"] < settings.startup_trials:
            assert r["param.lr"] == sobol[r["number"]]


def whole_sobol(settings):
    study = StudyState("s", SPACE, settings)
    drive(study, slots=1, order=0)
    return study.search_rows()


def test_ties_are_broken_by_the_stable_key():
    rows = [
        {"number": n, "status": "ok", "epochs": 4, "val_score": 13.75, "param.lr": lr}
        for n, lr in [(3, 3.3e-4), (1, 1.46e-5), (2, 5e-3)]
    ] + [{"number": 0, "status": "pruned", "epochs": 1, "val_score": 90.0, "param.lr": 1e-2}]
    assert rank_search(rows, 2, 4) == [{"lr": 1.46e-5}, {"lr": 5e-3}]
    assert rank_search(list(reversed(rows)), 4, 4)[-1] == {"lr": 1e-2}  # pruned rank last


def test_book_round_robins_studies_and_finishes():
    done = []
    settings = ScheduleSettings(**{**SETTINGS.__dict__, "trials": 4, "top_k": 1, "seeds": (0,)})
    book = StudyBook(
        ["a", "b", "c"], lambda sid: StudyState(sid, SPACE, settings), done.append, max_active=2
    )
    items = [book.next_item() for _ in range(6)]
    # a's batch 0 is handed out first, then b opens because a waits on its batch
    assert [i.key for i in items[:5]] == [
        "a/search/0",
        "a/search/1",
        "a/search/2",
        "a/search/3",
        "b/search/0",
    ]
    assert {s for s in book.active} == {"a", "b"}
    rows = drive_book_rest(book, items)
    assert {s.study_id for s in done} == {"a", "b", "c"} and book.next_item() == book.FINISHED
    assert len(rows) == 3 * (4 + 1)


def drive_book_rest(book, started):
    rows = []
    pending = [i for i in started if i is not None]
    while True:
        while pending:
            item = pending.pop(0)
            for epoch in range(1, SETTINGS.epochs + 1):
                score = curve(item.params, item.seed, SETTINGS.epochs)[epoch - 1]
                if book.should_stop(item.key, epoch, score):
                    break
            rows.append(book.finish(item.key, "ok", {"val_score": score, "test_score": 1.0})[1])
        item = book.next_item()
        if item == book.FINISHED:
            return rows
        assert item is not None
        pending.append(item)


def test_lost_trial_holds_its_pair_and_reruns_with_its_own_point_after_release():
    """A trial whose store entry failed its checksum is not a failed trial: its study (and
    every study of the same encoder/dataset pair, open or not yet opened) gets no new trial
    until the driver recomputed the entry; then the trial reruns with its own point and the
    results equal an undisturbed run's."""
    settings = ScheduleSettings(**{**SETTINGS.__dict__, "trials": 4, "top_k": 1, "seeds": (0,)})
    pair = {"a": "P", "b": "Q", "c": "P"}

    def book_of(done):
        return StudyBook(
            list(pair), lambda sid: StudyState(sid, SPACE, settings), done.append, max_active=2
        )

    want = drive_book_rest(book_of([]), [])
    done: list = []
    book = book_of(done)
    lost: set[str] = set()
    book.blocked = lambda sid: pair[sid] in lost
    first = book.next_item()
    assert first.key == "a/search/0"
    lost.add("P")
    assert book.lost(first.key).study_id == "a" and set(book.held) == {"a"}
    rows = drive_book_rest(book, [])  # runs until only held studies are left
    assert {r["key"].split("/")[0] for r in rows} == {"b"}
    assert set(book.held) == {"a", "c"} and {s.study_id for s in done} == {"b"}
    assert book.counts()["search.pending"] >= 4  # a's lost trial waits again, unrecorded
    lost.clear()
    book.release()
    rows += drive_book_rest(book, [])
    assert {s.study_id for s in done} == {"a", "b", "c"} and not book.held
    assert sorted(rows, key=lambda r: r["key"]) == sorted(want, key=lambda r: r["key"])


def test_released_with_an_error_the_held_studies_fail():
    settings = ScheduleSettings(**{**SETTINGS.__dict__, "trials": 4, "top_k": 1, "seeds": (0,)})
    done: list = []
    book = StudyBook(["a"], lambda sid: StudyState(sid, SPACE, settings), done.append)
    book.lost(book.next_item().key)
    book.release(error="entries keep failing their checksums")
    assert done[0].error == "entries keep failing their checksums"
    assert book.next_item() == book.FINISHED
