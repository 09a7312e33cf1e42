"""The plan: which token maps to extract and which studies to tune, derived from a sweep config.

A plan is pure data, computed without Ray, so ``--dry-run`` can show exactly the work a sweep
will do (and a resumed sweep can tell which parts are already finished).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from orchestrator.config import DatasetChoice, EncoderChoice, ProbeChoice, SweepConfig

SPLITS = ("train", "valid", "test")


def encoder_label(enc: EncoderChoice) -> str:
    """How an encoder appears in results: random weights are always labelled as such."""
    if enc.checkpoint == "random":
        size = enc.overrides.get("size", "base")
        return f"{enc.name}@random-{size}"
    return enc.name


@dataclass(frozen=True)
class ExtractionJob:
    encoder: EncoderChoice
    dataset: DatasetChoice
    split: str


@dataclass(frozen=True)
class Study:
    encoder: EncoderChoice
    dataset: DatasetChoice
    probe: ProbeChoice
    settings: str = ""  # fingerprint of the training, search and seed settings
    dataset_version: str = ""  # the catalog's version: a changed data protocol is a new study

    @property
    def backbone(self) -> str:
        return encoder_label(self.encoder)

    @property
    def study_id(self) -> str:
        """Stable, filesystem-safe id; changes when anything that shapes the study changes."""
        payload = json.dumps(
            [
                self.encoder.name,
                self.encoder.checkpoint,
                self.encoder.overrides,
                self.dataset.name,
                self.dataset.source,
                self.dataset.options,
                self.dataset_version,
                self.probe.name,
                self.probe.search,
                self.probe.hparams,
                self.settings,
            ],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha1(payload.encode()).hexdigest()[:8]
        safe = self.backbone.replace("@", "-")
        return f"{safe}__{self.dataset.name}__{self.probe.name}__{digest}"


@dataclass(frozen=True)
class Plan:
    extractions: tuple[ExtractionJob, ...]
    studies: tuple[Study, ...]
    search_trials: int
    final_trials: int

    def describe(self, cfg: SweepConfig, verbose: bool = False) -> str:
        """Counts per stage and per encoder / dataset; every job only when ``verbose``."""
        lines = [
            f"sweep {cfg.name}: {len(cfg.encoders)} encoders x {len(cfg.datasets)} datasets x "
            f"{len(cfg.probes)} probes",
            f"  extraction jobs: {len(self.extractions)} (encoder x dataset x split)",
            f"  studies:         {len(self.studies)}",
            f"  search trials:   {self.search_trials} ({cfg.search.trials} per study, "
            f"{cfg.search.startup_trials} Sobol then TPE, ASHA grace {cfg.search.grace_epochs} "
            f"epochs, reduction {cfg.search.reduction_factor})",
            f"  final trials:    {self.final_trials} (top {cfg.search.top_k} x "
            f"{len(cfg.seeds)} seeds per study)",
            f"  training:        {cfg.train.epochs} epochs, batch {cfg.train.batch_size}; "
            f"{cfg.ray.cpus_per_trial:g} CPU + {cfg.ray.gpus_per_trial:g} GPU per trial, "
            f"{cfg.ray.cpus_per_extraction:g} CPU + {cfg.ray.gpus_per_extraction:g} GPU per "
            "extraction",
        ]
        lines += [
            f"  reproducible:    {'yes' if cfg.search.reproducible else 'no'}",
            f"  output:          {cfg.out_url or cfg.out_dir}",
            f"  store:           {cfg.store_url}",
            f"  mlflow:          {cfg.tracking_uri} (experiment {cfg.experiment!r})",
        ]
        if cfg.probe_overrides:
            lines.append("  probe settings per dataset (probe_overrides):")
            lines += [
                f"    {ds} / {probe}: {body}"
                for ds, per in cfg.probe_overrides.items()
                for probe, body in per.items()
            ]
        per_trial = cfg.search.trials + cfg.search.top_k * len(cfg.seeds)
        for title, key in (
            ("per encoder", lambda s: s.backbone),
            ("per dataset", lambda s: s.dataset.name),
        ):
            counts: dict[str, int] = {}
            for study in self.studies:
                counts[key(study)] = counts.get(key(study), 0) + 1
            lines.append(f"  {title}:")
            width = max(map(len, counts), default=0)
            lines += [
                f"    {name:<{width}}  {n:>5} studies  {n * per_trial:>7} trials"
                for name, n in counts.items()
            ]
        if verbose:
            lines.append("  extraction:")
            lines += [
                f"    {encoder_label(j.encoder)} / {j.dataset.name} / {j.split}"
                for j in self.extractions
            ]
            lines.append("  studies:")
            lines += [f"    {s.study_id}" for s in self.studies]
        else:
            lines.append("  (--verbose lists every extraction job and study)")
        return "\n".join(lines)


def study_precision(cfg: SweepConfig) -> str:
    """The precision a sweep's trials train in: ``auto`` is bf16 when trials hold GPUs
    (``train.device: cuda``, or ``auto`` with ``ray.gpus_per_trial`` > 0), else fp32. A GPU
    without bf16 falls back to fp32 on the worker, and its rows say so."""
    precision = cfg.train.precision
    if precision != "auto":
        return precision
    gpus = cfg.ray.gpus_per_trial
    on_gpu = cfg.train.device.startswith("cuda") or (cfg.train.device == "auto" and gpus != 0)
    return "bf16" if on_gpu else "fp32"


def settings_fingerprint(cfg: SweepConfig, probe: ProbeChoice) -> str:
    """What else shapes a study's results: change any of it and the study is a new one, so a
    re-run in the same folder never reuses trials made under other settings. The placement
    of the splits does not change fp32 results (it is left out); the precision is in only when
    it is not fp32, so fp32 studies keep the ids they had before ``train.precision``."""
    from orchestrator.space import load_space

    train = asdict(cfg.train)
    train.pop("placement", None)
    train.pop("precision", None)
    if study_precision(cfg) != "fp32":
        train["precision"] = study_precision(cfg)
    payload = json.dumps(
        [train, asdict(cfg.search), list(cfg.seeds), load_space(probe.search)],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def make_plan(cfg: SweepConfig) -> Plan:
    extractions = tuple(
        ExtractionJob(enc, ds, split)
        for enc in cfg.encoders
        for ds in cfg.datasets
        for split in SPLITS
    )
    # Probe settings per dataset (cfg.probe_overrides) are applied here, so they enter the
    # study id; the settings fingerprint depends on the search space, read once per space.
    resolved = {
        (ds.name, p.name): cfg.probe_for(ds.name, p) for ds in cfg.datasets for p in cfg.probes
    }
    settings: dict[str, str] = {}
    for probe in resolved.values():
        if probe.search not in settings:
            settings[probe.search] = settings_fingerprint(cfg, probe)
    from orchestrator.datasets import DATASETS

    versions = {ds.name: DATASETS.get(ds.name).version for ds in cfg.datasets}
    studies = tuple(
        Study(enc, ds, probe, settings[probe.search], versions[ds.name])
        for enc in cfg.encoders
        for ds in cfg.datasets
        for probe in (resolved[(ds.name, p.name)] for p in cfg.probes)
    )
    return Plan(
        extractions=extractions,
        studies=studies,
        search_trials=len(studies) * cfg.search.trials,
        final_trials=len(studies) * cfg.search.top_k * len(cfg.seeds),
    )
