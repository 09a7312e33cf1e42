"""Search spaces: YAML data in ``sweeps/search/`` turned into Optuna and Ray Tune objects.

This is the one module that knows how a searched hyperparameter becomes an Optuna distribution
and how the paper's "quasi-random first, then TPE" sampler is built. Everything else treats a
search space as plain data; ``orchestrator.schedule`` drives the sampler and the
successive-halving rungs.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial
from scipy.stats import qmc

from orchestrator.space import PARAM_TYPES, ParamSpec, load_space

__all__ = ["PARAM_TYPES", "ParamSpec", "load_space"]  # re-exported: read without optuna

METRIC = "val_score"
MODE = "max"


def optuna_space(specs: tuple[ParamSpec, ...]) -> dict[str, BaseDistribution]:
    return {spec.name: spec.distribution() for spec in specs}


def _from_unit(u: float, dist: BaseDistribution) -> Any:
    """Map a point of [0, 1) onto a distribution (log-uniform where the distribution is log)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
    low, high = float(dist.low), float(dist.high)
    if isinstance(dist, IntDistribution):
        return int(min(int(low) + math.floor(u * (high - low + 1)), int(high)))
    if dist.log:
        return float(math.exp(math.log(low) + u * (math.log(high) - math.log(low))))
    return low + u * (high - low)


class SobolThenTPE(BaseSampler):
    """The paper's search: the first ``startup_trials`` trials quasi-random (scrambled Sobol),
    then multivariate TPE conditioned on everything seen so far.

    Sobol point ``i`` goes to the study's ``i``-th started trial, counting ``offset`` trials
    started by earlier attempts, so a resumed search never proposes a point it already ran.
    """

    def __init__(
        self,
        space: dict[str, BaseDistribution],
        startup_trials: int,
        seed: int = 0,
        offset: int = 0,
    ) -> None:
        self.space = dict(space)
        self.startup_trials = startup_trials
        self.offset = offset
        m = max(1, math.ceil(math.log2(max(startup_trials, 1))))
        self._points = qmc.Sobol(d=len(self.space), scramble=True, seed=seed).random_base2(m)
        self._tpe = TPESampler(n_startup_trials=0, seed=seed, multivariate=True)
        self._random = RandomSampler(seed=seed)

    def _sobol_index(self, trial: FrozenTrial) -> int | None:
        index = trial.number + self.offset
        return index if index < self.startup_trials else None

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial):
        if self._sobol_index(trial) is not None:
            return dict(self.space)
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        index = self._sobol_index(trial)
        if index is None:
            return self._tpe.sample_relative(study, trial, search_space)
        point = self._points[index]
        names = list(self.space)
        return {
            name: _from_unit(float(point[names.index(name)]), dist)
            for name, dist in search_space.items()
            if name in names
        }

    def sample_independent(self, study, trial, param_name, param_distribution):
        if self._sobol_index(trial) is None:
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._tpe.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)
