"""Search spaces as plain data: ``sweeps/search/<name>.yaml`` read and validated.

Split from :mod:`orchestrator.search` (which turns these specs into Optuna and Ray Tune
objects) so that planning, ``--dry-run`` and config validation read a space without importing
optuna or scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.config import ConfigError, sweeps_dir
from probes.registry import did_you_mean

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

PARAM_TYPES = ("loguniform", "uniform", "int", "categorical")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

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
