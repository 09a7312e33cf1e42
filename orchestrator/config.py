"""Sweep configuration: Hydra compose on the driver, then frozen dataclasses, validated.

This is the only module that touches Hydra/OmegaConf objects. Everything downstream (plan,
extraction, trials) receives plain frozen dataclasses, so no DictConfig ever crosses into a Ray
worker, and every bad name or value is refused here, before any Ray work starts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.registry import did_you_mean

GROUPS = ("encoder", "dataset", "probe")
TIE_RULES = ("opponent", "own", "max", "pooled")


class ConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the value and the fix."""


def sweeps_dir() -> Path:
    """The folder of Hydra configs: ``$UNMUTE_SWEEPS`` or the repository's ``sweeps/``."""
    env = os.environ.get("UNMUTE_SWEEPS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "sweeps"


def list_sweeps() -> list[str]:
    return sorted(p.stem for p in sweeps_dir().glob("*.yaml") if p.stem != "base")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (sweeps_dir() / group).glob("*.yaml"))


@dataclass(frozen=True)
class EncoderChoice:
    name: str
    checkpoint: str | None
    overrides: dict[str, Any]


@dataclass(frozen=True)
class DatasetChoice:
    name: str
    source: str | None
    options: dict[str, Any]


@dataclass(frozen=True)
class ProbeChoice:
    name: str
    search: str
    hparams: dict[str, Any]


@dataclass(frozen=True)
class RayConfig:
    address: str
    storage_path: str
    max_concurrent_trials: int
    max_concurrent_studies: int
    cpus_per_trial: float
    gpus_per_trial: float
    cpus_per_extraction: float
    gpus_per_extraction: float
    max_failures: int


@dataclass(frozen=True)
class SearchConfig:
    trials: int
    startup_trials: int
    grace_epochs: int
    reduction_factor: int
    top_k: int
    reproducible: bool = True  # batches and rung decisions in a fixed order (see schedule.py)
    batch_size: int = 4  # reproducible mode: search trials per batch after the Sobol ones


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    warmup_epochs: int
    device: str


@dataclass(frozen=True)
class SweepConfig:
    name: str
    out_dir: Path
    data_root: str
    store_url: str
    tracking_uri: str
    experiment: str
    encoders: tuple[EncoderChoice, ...]
    datasets: tuple[DatasetChoice, ...]
    probes: tuple[ProbeChoice, ...]
    ray: RayConfig
    search: SearchConfig
    seeds: tuple[int, ...]
    train: TrainSettings
    extract_batch_size: int
    extract_device: str
    tie_rule: str
    overrides: tuple[str, ...] = field(default=())

    @property
    def tune_storage(self) -> str:
        return self.ray.storage_path or str((self.out_dir / "tune").resolve())


_GROUP_OVERRIDE = re.compile(r"^\+?(encoder|dataset|probe)=\[?([^\]]*)\]?$")


def _check_group_overrides(overrides: list[str]) -> None:
    for item in overrides:
        match = _GROUP_OVERRIDE.match(item.strip())
        if not match:
            continue
        group, values = match.groups()
        valid = group_options(group)
        for value in filter(None, (v.strip() for v in values.split(","))):
            if value not in valid:
                raise ConfigError(
                    f"unknown {group} {value!r} in override {item!r}.{did_you_mean(value, valid)} "
                    f"Valid {group}s: {', '.join(valid)}. Add sweeps/{group}/{value}.yaml and "
                    f"register it to make it selectable."
                )


def compose(name: str, overrides: list[str] | tuple[str, ...] = (), out_dir: str | None = None):
    """Compose ``sweeps/<name>.yaml`` with Hydra overrides; return a resolved plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    sweeps = list_sweeps()
    if name not in sweeps:
        raise ConfigError(
            f"unknown sweep {name!r}.{did_you_mean(name, sweeps)} Valid sweeps: "
            f"{', '.join(sweeps)} (files in {sweeps_dir()})."
        )
    overrides = list(overrides)
    _check_group_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=str(sweeps_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
        if out_dir is not None:
            cfg.out_dir = out_dir
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_explain_hydra_error(err, overrides)) from None


def _explain_hydra_error(err: Exception, overrides: list[str]) -> str:
    text = str(err).strip().splitlines()[0]
    match = re.search(r"Could not override '([^']+)'", text) or re.search(
        r"Key '([^']+)' is not in struct", text
    )
    if match:
        key = match.group(1)
        top = _top_level_keys()
        head = key.split(".")[0]
        hint = did_you_mean(head, top) if head not in top else ""
        return (
            f"unknown override key {key!r}.{hint} Valid top-level keys: {', '.join(top)}. "
            f"Prefix with '+' only to add a key that the sweep does not define."
        )
    return f"{text} (overrides: {' '.join(overrides) or 'none'})"


def _top_level_keys() -> list[str]:
    from omegaconf import OmegaConf

    base = OmegaConf.load(sweeps_dir() / "base.yaml")
    return sorted([*base.keys(), *GROUPS])


def _absolute(location: str) -> str:
    """Local paths become absolute (trial workers do not share the driver's cwd); URLs stay."""
    return location if "://" in location else str(Path(location).resolve())


def _as_float(section: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{section}.{key}={value!r}: expected a number >= 0.")
    return float(value)


def _as_int(section: str, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{section}.{key}={value!r}: expected an integer >= {minimum}.")
    return value


def _as_bool(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{key}={value!r}: expected true or false.")
    return value


def build(raw: dict[str, Any], overrides: tuple[str, ...] = ()) -> SweepConfig:
    """Turn a composed config into a validated :class:`SweepConfig`."""
    for group in GROUPS:
        if not raw.get(group):
            raise ConfigError(
                f"the sweep selects no {group}; add '- {group}: [...]' to its defaults or pass "
                f"{group}=[{','.join(group_options(group)[:3])}]."
            )
    defaults = raw.get("encoder_defaults") or {}
    encoders = tuple(
        EncoderChoice(
            name=name,
            checkpoint=(body or {}).get("checkpoint") or defaults.get("checkpoint"),
            overrides={
                **(defaults.get("overrides") or {}),
                **((body or {}).get("overrides") or {}),
            },
        )
        for name, body in raw["encoder"].items()
    )
    datasets = tuple(
        DatasetChoice(name, (b or {}).get("source"), dict((b or {}).get("options") or {}))
        for name, b in raw["dataset"].items()
    )
    probes = tuple(
        ProbeChoice(name, (b or {}).get("search", "default"), dict((b or {}).get("hparams") or {}))
        for name, b in raw["probe"].items()
    )
    r, s, t, e = raw["ray"], raw["search"], raw["train"], raw["extract"]
    search = SearchConfig(
        trials=_as_int("search", "trials", s["trials"], 1),
        startup_trials=_as_int("search", "startup_trials", s["startup_trials"], 0),
        grace_epochs=_as_int("search", "grace_epochs", s["grace_epochs"], 1),
        reduction_factor=_as_int("search", "reduction_factor", s["reduction_factor"], 2),
        top_k=_as_int("search", "top_k", s["top_k"], 1),
        reproducible=_as_bool("search", "reproducible", s.get("reproducible", True)),
        batch_size=_as_int("search", "batch_size", s.get("batch_size", 4), 1),
    )
    if search.top_k > search.trials:
        raise ConfigError(
            f"search.top_k={search.top_k} exceeds search.trials={search.trials}; lower top_k."
        )
    seeds = raw["final"]["seeds"]
    if not isinstance(seeds, list) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in seeds
    ):
        raise ConfigError(f"final.seeds={seeds!r}: give a list of integers, e.g. [0,1,2].")
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"final.seeds={list(seeds)!r}: give one or more distinct integers.")
    tie_rule = raw.get("tie_rule", "opponent")
    if tie_rule not in TIE_RULES:
        raise ConfigError(
            f"tie_rule={tie_rule!r} is not a tie rule.{did_you_mean(tie_rule, TIE_RULES)} "
            f"Valid: {', '.join(TIE_RULES)}."
        )
    if t["warmup_epochs"] > t["epochs"]:
        raise ConfigError(
            f"train.warmup_epochs={t['warmup_epochs']} exceeds train.epochs={t['epochs']}."
        )
    out_dir = Path(raw["out_dir"]).resolve()
    return SweepConfig(
        name=raw["name"],
        out_dir=out_dir,
        data_root=_absolute(str(raw["data_root"])),
        store_url=_absolute(str(raw["store_url"])),
        tracking_uri=raw.get("tracking_uri") or f"sqlite:///{(out_dir / 'mlflow.db').resolve()}",
        experiment=str(raw.get("experiment") or raw["name"]),
        encoders=encoders,
        datasets=datasets,
        probes=probes,
        ray=RayConfig(
            address=r.get("address") or "",
            storage_path=_absolute(r["storage_path"]) if r.get("storage_path") else "",
            max_concurrent_trials=_as_int(
                "ray", "max_concurrent_trials", r["max_concurrent_trials"]
            ),
            max_concurrent_studies=_as_int(
                "ray", "max_concurrent_studies", r["max_concurrent_studies"]
            ),
            cpus_per_trial=_as_float("ray", "cpus_per_trial", r["cpus_per_trial"]),
            gpus_per_trial=_as_float("ray", "gpus_per_trial", r["gpus_per_trial"]),
            cpus_per_extraction=_as_float("ray", "cpus_per_extraction", r["cpus_per_extraction"]),
            gpus_per_extraction=_as_float("ray", "gpus_per_extraction", r["gpus_per_extraction"]),
            max_failures=_as_int("ray", "max_failures", r["max_failures"]),
        ),
        search=search,
        seeds=seeds,
        train=TrainSettings(
            epochs=_as_int("train", "epochs", t["epochs"], 1),
            batch_size=_as_int("train", "batch_size", t["batch_size"], 1),
            warmup_epochs=_as_int("train", "warmup_epochs", t["warmup_epochs"]),
            device=str(t["device"]),
        ),
        extract_batch_size=_as_int("extract", "batch_size", e["batch_size"], 1),
        extract_device=str(e["device"]),
        tie_rule=tie_rule,
        overrides=tuple(overrides),
    )


def load(name: str, overrides: list[str] | tuple[str, ...] = (), out_dir: str | None = None):
    """Compose, convert and validate a sweep (names checked against the registries)."""
    cfg = build(compose(name, overrides, out_dir), tuple(overrides))
    validate_names(cfg)
    return cfg


def validate_names(cfg: SweepConfig) -> None:
    """Check every encoder, dataset, probe and search space before any Ray work."""
    from backbones import BACKBONES
    from orchestrator.datasets import DATASETS
    from orchestrator.search import load_space
    from probes import PROBES
    from probes.registry import RegistryError

    try:
        for enc in cfg.encoders:
            BACKBONES.check(enc.name)
        for ds in cfg.datasets:
            DATASETS.check(ds.name)
        for probe in cfg.probes:
            PROBES.check(probe.name)
    except RegistryError as err:
        raise ConfigError(str(err)) from None
    for probe in cfg.probes:
        _check_probe(probe, load_space(probe.search, probe.name))


def _check_probe(probe: ProbeChoice, space) -> None:
    """Build the probe once, tiny, with its fixed and searched hyperparameters."""
    from probes import create_probe

    from orchestrator.trial import TRAIN_FIELDS

    searched = {
        p.name: (p.choices[0] if p.choices else p.low) for p in space if p.name not in TRAIN_FIELDS
    }
    try:
        create_probe(probe.name, embed_dim=8, num_classes=2, **probe.hparams, **searched)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"probe {probe.name!r} (sweeps/probe/{probe.name}.yaml, search space "
            f"{probe.search!r}): {err}"
        ) from None
