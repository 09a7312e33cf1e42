"""Search spaces as data: YAML -> Optuna distributions, the Sobol-then-TPE sampler, ASHA."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from orchestrator.config import ConfigError
from orchestrator.search import SobolThenTPE, load_space, make_scheduler, optuna_space


def test_prototype_space_searches_lr_wd_and_j():
    space = optuna_space(load_space("prototypes"))
    assert space["lr"] == FloatDistribution(1e-5, 1e-2, log=True)
    assert space["weight_decay"] == FloatDistribution(1e-5, 5e-4, log=True)
    assert isinstance(space["prototypes_per_class"], IntDistribution)


def test_unknown_space_is_refused_with_choices():
    with pytest.raises(ConfigError) as err:
        load_space("prototype", probe="protobin")
    assert "Did you mean 'prototypes'" in str(err.value) and "default" in str(err.value)


def test_bad_param_type_is_refused(tmp_path, monkeypatch):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "bad.yaml").write_text("lr: {type: logunifrom, low: 1, high: 2}\n")
    monkeypatch.setenv("UNMUTE_SWEEPS", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_space("bad")
    assert "'logunifrom'" in str(err.value) and "loguniform" in str(err.value)


def _run(sampler, n):
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = optuna_space(load_space("default"))

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
        wd = trial.suggest_float("weight_decay", 1e-5, 5e-4, log=True)
        return -abs(lr - 1e-3) - wd

    assert set(space) == {"lr", "weight_decay"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


def test_first_trials_are_sobol_then_tpe():
    qmc_only = _run(optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=0), 4)
    mixed = _run(SobolThenTPE(startup_trials=4, seed=0), 8)
    assert mixed[:4] == qmc_only  # the startup trials are exactly the scrambled Sobol points
    assert _run(SobolThenTPE(startup_trials=4, seed=0), 8) == mixed  # seeded: reproducible


def test_asha_never_stops_before_grace_and_caps_at_epochs():
    sched = make_scheduler(max_epochs=12, grace_epochs=2, reduction_factor=3)
    assert sched._max_t == 12
    assert make_scheduler(max_epochs=1, grace_epochs=3, reduction_factor=3)._max_t == 1


def test_searcher_learns_from_trials_of_an_earlier_attempt():
    """A resumed search seeds Optuna with the finished trials instead of rerunning them."""
    from orchestrator.search import make_searcher

    points = [{"lr": 1e-3, "weight_decay": 1e-4}, {"lr": 1e-2, "weight_decay": 2e-4}]
    searcher = make_searcher(
        load_space("default"), startup_trials=2, points=points, rewards=[10.0, 12.0]
    )
    searcher.set_search_properties("val_score", "max", config={})
    searcher.suggest("new")  # the study is created lazily, with the evaluated points
    done = [t for t in searcher._ot_study.trials if t.value is not None]
    assert sorted(t.value for t in done) == [10.0, 12.0]
    assert sorted(t.params["lr"] for t in done) == [1e-3, 1e-2]
