"""Search spaces as data: YAML -> Optuna distributions, the Sobol-then-TPE sampler."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from scipy.stats import qmc
from optuna.distributions import FloatDistribution, IntDistribution

from orchestrator.config import ConfigError, sweeps_dir
from orchestrator.search import SobolThenTPE, load_space, optuna_space


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
    (tmp_path / "base.yaml").write_text((sweeps_dir() / "base.yaml").read_text())
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "bad.yaml").write_text("lr: {type: logunifrom, low: 1, high: 2}\n")
    monkeypatch.setenv("UNMUTE_SWEEPS", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_space("bad")
    assert "'logunifrom'" in str(err.value) and "loguniform" in str(err.value)


def _run(sampler, n, study=None):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = study or optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-5, 1e-2, log=True)
        wd = trial.suggest_float("weight_decay", 1e-5, 5e-4, log=True)
        return -abs(lr - 1e-3) - wd

    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


def test_first_trials_are_sobol_points_then_tpe():
    space = optuna_space(load_space("default"))
    params = _run(SobolThenTPE(space, startup_trials=4, seed=0), 8)
    unit = qmc.Sobol(d=2, scramble=True, seed=0).random_base2(2)
    lows, highs = np.log([1e-5, 1e-5]), np.log([1e-2, 5e-4])
    expected = np.exp(lows + unit * (highs - lows))
    got = np.array([[p["lr"], p["weight_decay"]] for p in params[:4]])
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert params == _run(SobolThenTPE(space, startup_trials=4, seed=0), 8)  # seeded
    more = qmc.Sobol(d=2, scramble=True, seed=0).random_base2(3)[4:]
    continued = np.exp(lows + more * (highs - lows))
    tpe = np.array([[p["lr"], p["weight_decay"]] for p in params[4:]])
    assert not np.allclose(tpe, continued)  # after the start-up trials, TPE proposes


def test_a_resumed_search_continues_the_sobol_sequence():
    """Two attempts (2 trials, then the rest) propose the same points as one uninterrupted run."""
    space = optuna_space(load_space("default"))
    whole = _run(SobolThenTPE(space, startup_trials=4, seed=0), 4)
    first = _run(SobolThenTPE(space, startup_trials=4, seed=0), 2)
    study = optuna.create_study(
        direction="maximize", sampler=SobolThenTPE(space, startup_trials=4, seed=0, offset=0)
    )
    for p in first:
        study.add_trial(optuna.trial.create_trial(params=p, distributions=space, value=0.0))
    second = _run(None, 2, study)[2:]
    assert first + second == whole
    assert not any(p in first for p in second)
