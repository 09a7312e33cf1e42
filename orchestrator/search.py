"""Search spaces: YAML data in ``sweeps/search/`` turned into Optuna and Ray Tune objects.

This is the one module that knows how a searched hyperparameter becomes an Optuna distribution,
how the paper's "quasi-random first, then TPE" sampler is built, and how successive-halving
pruning (ASHA) is configured. Everything else treats a search space as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, QMCSampler, TPESampler
from optuna.trial import FrozenTrial

from orchestrator.config import ConfigError, sweeps_dir
from probes.registry import did_you_mean

PARAM_TYPES = ("loguniform", "uniform", "int", "categorical")
METRIC = "val_score"
MODE = "max"


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def distribution(self) -> BaseDistribution:
        if self.type == "loguniform":
            return FloatDistribution(float(self.low), float(self.high), log=True)
        if self.type == "uniform":
            return FloatDistribution(float(self.low), float(self.high))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high))
        return CategoricalDistribution(list(self.choices or ()))


def load_space(name: str, probe: str = "") -> tuple[ParamSpec, ...]:
    """Read ``sweeps/search/<name>.yaml`` and validate every entry."""
    from omegaconf import OmegaConf

    folder = sweeps_dir() / "search"
    valid = sorted(p.stem for p in folder.glob("*.yaml"))
    if name not in valid:
        who = f" (probe {probe!r})" if probe else ""
        raise ConfigError(
            f"unknown search space {name!r}{who}.{did_you_mean(name, valid)} "
            f"Valid search spaces: {', '.join(valid)} (files in {folder})."
        )
    raw = OmegaConf.to_container(OmegaConf.load(folder / f"{name}.yaml"), resolve=True)
    specs = []
    for param, body in (raw or {}).items():
        kind = (body or {}).get("type")
        if kind not in PARAM_TYPES:
            raise ConfigError(
                f"search space {name!r}: parameter {param!r} has type {kind!r}."
                f"{did_you_mean(str(kind), PARAM_TYPES)} Valid types: {', '.join(PARAM_TYPES)}."
            )
        if kind == "categorical":
            spec = ParamSpec(param, kind, choices=tuple(body.get("choices") or ()))
            if not spec.choices:
                raise ConfigError(f"search space {name!r}: {param!r} needs a non-empty 'choices'.")
        else:
            low, high = body.get("low"), body.get("high")
            if low is None or high is None or not float(low) < float(high):
                raise ConfigError(
                    f"search space {name!r}: {param!r} needs low < high, got low={low!r}, "
                    f"high={high!r}."
                )
            if kind == "loguniform" and float(low) <= 0:
                raise ConfigError(
                    f"search space {name!r}: {param!r} is loguniform, low must be > 0."
                )
            spec = ParamSpec(param, kind, low=low, high=high)
        specs.append(spec)
    if not specs:
        raise ConfigError(f"search space {name!r} is empty; list at least one parameter.")
    return tuple(specs)


def optuna_space(specs: tuple[ParamSpec, ...]) -> dict[str, BaseDistribution]:
    return {spec.name: spec.distribution() for spec in specs}


class SobolThenTPE(BaseSampler):
    """The paper's search: the first ``startup_trials`` trials quasi-random (scrambled Sobol),
    then TPE conditioned on everything seen so far."""

    def __init__(self, startup_trials: int, seed: int = 0) -> None:
        self.startup_trials = startup_trials
        self._qmc = QMCSampler(
            qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False
        )
        self._tpe = TPESampler(n_startup_trials=0, seed=seed, multivariate=True)

    def _pick(self, trial: FrozenTrial) -> BaseSampler:
        return self._qmc if trial.number < self.startup_trials else self._tpe

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial):
        return self._pick(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._pick(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._pick(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._pick(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._pick(trial).after_trial(study, trial, state, values)


def make_searcher(
    specs: tuple[ParamSpec, ...],
    startup_trials: int,
    seed: int = 0,
    points: list[dict[str, Any]] | None = None,
    rewards: list[float] | None = None,
):
    """A Ray Tune OptunaSearch over ``specs`` maximizing the validation score.

    ``points``/``rewards`` are trials already evaluated (by an earlier, interrupted attempt):
    Optuna learns from them and counts them towards the Sobol start-up trials.
    """
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(
        space=optuna_space(specs),
        metric=METRIC,
        mode=MODE,
        sampler=SobolThenTPE(startup_trials, seed=seed),
        points_to_evaluate=points or None,
        evaluated_rewards=rewards or None,
    )


def make_scheduler(max_epochs: int, grace_epochs: int, reduction_factor: int):
    """Successive halving (ASHA) on the per-epoch validation score."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=min(grace_epochs, max_epochs),
        reduction_factor=reduction_factor,
    )
