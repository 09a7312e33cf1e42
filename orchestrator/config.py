"""Sweep configuration: Hydra compose on the driver, then frozen dataclasses, validated.

This is the only module that touches Hydra/OmegaConf objects. Everything downstream (plan,
extraction, trials) receives plain frozen dataclasses, so no DictConfig ever crosses into a Ray
worker, and every bad name or value is refused here, before any Ray work starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probes.registry import did_you_mean

GROUPS = ("encoder", "dataset", "probe")
ANY_DATASET = "*"
OVERRIDE_KEYS = ("search", "hparams")
TIE_RULES = ("opponent", "own", "max", "pooled")
logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A sweep configuration that cannot run; the message names the value and the fix."""


def sweeps_dir() -> Path:
    """The folder of Hydra configs, the first of:

    1. ``$UNMUTE_SWEEPS`` (``python -m orchestrator.sweep --config-dir DIR`` sets it);
    2. ``./sweeps`` in the current folder, if it holds a ``base.yaml``;
    3. the source checkout's ``sweeps/`` (running from a clone or an editable install);
    4. the sweeps packaged in the installed wheel (``orchestrator/sweeps``).

    A chosen folder with its own ``base.yaml`` replaces the packaged one whole; one without
    (e.g. only ``encoder/mine.yaml`` and ``mysweep.yaml``) adds to it: :func:`user_sweeps`.
    """
    env = os.environ.get("UNMUTE_SWEEPS")
    if env and not user_sweeps():
        folder = Path(env).expanduser()
        if not (folder / "base.yaml").is_file():
            raise ConfigError(
                f"UNMUTE_SWEEPS={env!r} (or --config-dir) holds no base.yaml: point it at a "
                f"sweeps folder laid out like the repository's sweeps/ (base.yaml, encoder/, "
                f"dataset/, probe/, search/), or unset it to use the packaged sweeps."
            )
        return folder.resolve()
    local = Path.cwd() / "sweeps"
    if (local / "base.yaml").is_file():
        return local
    checkout = Path(__file__).resolve().parent.parent / "sweeps"
    if (checkout / "base.yaml").is_file():
        return checkout
    return _bundled_sweeps()


def user_sweeps() -> Path | None:
    """A ``--config-dir`` / ``$UNMUTE_SWEEPS`` folder without ``base.yaml``: it adds sweeps and
    group options to the packaged ones (Hydra search path; its files win on equal names)."""
    env = os.environ.get("UNMUTE_SWEEPS")
    if not env:
        return None
    folder = Path(env).expanduser()
    if (folder / "base.yaml").is_file() or not folder.is_dir():
        return None
    return folder.resolve()


@contextlib.contextmanager
def _config_dir() -> Iterator[str]:
    """The folder Hydra composes from: the packaged sweeps, overlaid with :func:`user_sweeps`
    (copied into a temporary folder; the user's files win on equal names)."""
    extra = user_sweeps()
    if extra is None:
        yield str(sweeps_dir())
        return
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="unmute-sweeps-") as tmp:
        shutil.copytree(sweeps_dir(), tmp, dirs_exist_ok=True)
        shutil.copytree(extra, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))  # fmt: skip
        yield tmp


def _bundled_sweeps() -> Path:
    """The sweeps shipped in the wheel (setup.py maps the repository's ``sweeps/`` there)."""
    from importlib.resources import files

    return Path(str(files("orchestrator") / "sweeps"))


def _sweep_dirs() -> list[Path]:
    extra = user_sweeps()
    return [sweeps_dir(), *([extra] if extra else [])]


def list_sweeps() -> list[str]:
    return sorted({p.stem for d in _sweep_dirs() for p in d.glob("*.yaml") if p.stem != "base"})


def group_options(group: str) -> list[str]:
    return sorted({p.stem for d in _sweep_dirs() for p in (d / group).glob("*.yaml")})


@dataclass(frozen=True)
class EncoderChoice:
    name: str
    checkpoint: str | None
    overrides: dict[str, Any]
    ref: str | None = None  # a user encoder (``file.py:Name``, ``hf:<id>``...; see backbones.user)

    @property
    def source(self) -> str:
        """What ``create_backbone`` builds: the user reference, else the registered name."""
        return self.ref or self.name


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
    pack_seconds: float = 2.0


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
    precision: str = "fp32"  # fp32 | bf16 | auto (bf16 autocast on GPUs that support it)
    placement: str = "auto"  # where a trial's splits live (probes/resident.py)


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
    # dataset ("*" = every dataset) -> probe -> {"search": name, "hparams": {...}}
    probe_overrides: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    out_url: str = ""  # the output folder when it lives on S3; out_dir is then its local mirror

    @property
    def tune_storage(self) -> str:
        if self.ray.storage_path:
            return self.ray.storage_path
        if self.out_url:
            return f"{self.out_url.rstrip('/')}/tune"
        return str((self.out_dir / "tune").resolve())

    def probe_for(self, dataset: str, probe: ProbeChoice) -> ProbeChoice:
        """``probe`` with the sweep's ``probe_overrides`` for ``dataset`` applied.

        Order: the probe's own file, then ``probe_overrides["*"]``, then
        ``probe_overrides[dataset]``; ``search`` replaces, ``hparams`` merge key by key.
        """
        search, hparams = probe.search, dict(probe.hparams)
        for key in (ANY_DATASET, dataset):
            body = self.probe_overrides.get(key, {}).get(probe.name)
            if body:
                search = body.get("search") or search
                hparams.update(body.get("hparams") or {})
        if search == probe.search and hparams == probe.hparams:
            return probe
        return ProbeChoice(probe.name, search, hparams)


_GROUP_OVERRIDE = re.compile(r"^\+?(encoder|dataset|probe)=\[?([^\]]*)\]?$")


def _is_mine(group: str, value: str) -> bool:
    if value in group_options(group):
        return False
    if group == "encoder":
        from backbones.user import is_user_ref

        return is_user_ref(value)
    if group == "dataset":
        from orchestrator.datasets.folder import is_folder_ref

        return is_folder_ref(value)
    return False


def split_user_choices(overrides: list[str]) -> tuple[list[str], dict[str, list[str]], set[str]]:
    """Take user encoders (``file.py:Name``, ``hf:<id>``...) and dataset folders out of
    ``encoder=`` / ``dataset=`` overrides (Hydra only knows the groups' files): -> (overrides
    for Hydra, the user's values by group, groups whose override names only user values)."""
    out, mine, only = [], {"encoder": [], "dataset": []}, set()
    for item in overrides:
        match = _GROUP_OVERRIDE.match(item.strip())
        if not match or match.group(1) not in mine:
            out.append(item)
            continue
        group = match.group(1)
        values = [v.strip() for v in match.group(2).split(",") if v.strip()]
        users = [v for v in values if _is_mine(group, v)]
        if not users:
            out.append(item)
            continue
        mine[group] += users
        rest = [v for v in values if v not in users]
        if rest:
            out.append(f"{item.split('=', 1)[0]}=[{','.join(rest)}]")
        else:
            only.add(group)
    return out, mine, only


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
                    f"Valid {group}s: {', '.join(valid)}."
                    + (
                        " Or your own: encoder=path/to/file.py:Name, package.module:Name, "
                        "hf:<model id>, hear:package.module (README 'Benchmark your own "
                        "encoder')."
                        if group == "encoder"
                        else " Or your own folder: dataset=path/to/folder (README 'Your own "
                        "dataset')."
                        if group == "dataset"
                        else f" Add sweeps/{group}/{value}.yaml to make it selectable."
                    )
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
    from orchestrator.validate import check_override_syntax

    check_override_syntax(overrides)
    overrides, mine, only_mine = split_user_choices(overrides)
    _check_group_overrides(overrides)
    from orchestrator import paths

    paths.register_resolver(bool(paths.cluster_reason(paths.override_address(overrides))))
    try:
        with _config_dir() as folder, initialize_config_dir(folder, version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
        if out_dir is not None:
            cfg.out_dir = out_dir
        raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        for key, body in list((raw.get("encoder") or {}).items()):
            if isinstance(body, dict) and body.get("ref"):  # encoder/mine.yaml: ref: file.py:X
                del raw["encoder"][key]
                raw["encoder"][str(body["ref"])] = {k: v for k, v in body.items() if k != "ref"}
        for group, values in mine.items():
            if values:
                raw[group] = {} if group in only_mine else dict(raw.get(group) or {})
                raw[group].update({value: {} for value in values})
        return raw
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


def _absolute(location: str, root: str = "") -> str:
    """Local paths become absolute (trial workers do not share the driver's cwd); URLs stay.

    On a cluster a relative path is taken under the stable root ``root``, never under the
    job's working-dir copy."""
    if "://" in location:
        return location
    path = Path(location).expanduser()
    if root and not path.is_absolute():
        return f"{root}/{path.as_posix()}" if "://" in root else str(Path(root) / path)
    return str(path.resolve())


def _as_float(section: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(
            f"{section}.{key}={value!r}: expected a number >= 0; pass e.g. {section}.{key}=1."
        )
    return float(value)


def _gpus_per_trial(value: Any, encoders, datasets, probes) -> float:
    """``ray.gpus_per_trial``: a number, or ``auto``: sized from measured GPU memory
    (``orchestrator/gpu_pack.py``)."""
    if value != "auto":
        if isinstance(value, str):
            raise ConfigError(
                f"ray.gpus_per_trial={value!r}: expected a number >= 0 or 'auto' (sized from "
                "measured GPU memory); pass e.g. ray.gpus_per_trial=auto or =0.25."
            )
        return _as_float("ray", "gpus_per_trial", value)
    from orchestrator.cost import load_costs
    from orchestrator.gpu_pack import size_gpus_per_trial, sweep_studies

    costs = load_costs()
    share, how = size_gpus_per_trial(sweep_studies(encoders, datasets, probes, costs), costs)
    logger.info("ray.gpus_per_trial=auto: %g (%s)", share, how)
    return share


PRECISIONS = ("fp32", "bf16", "auto")  # probes/train.py
PLACEMENTS = ("auto", "fp16", "fp32", "stream", "memmap")  # probes/resident.py


def _choice(section: str, key: str, value: Any, valid: tuple[str, ...]) -> str:
    if str(value) not in valid:
        raise ConfigError(
            f"{section}.{key}={value!r} is not valid.{did_you_mean(str(value), valid)} "
            f"Valid: {', '.join(valid)}; set it in sweeps/base.yaml or with {section}.{key}=..."
        )
    return str(value)


def _as_int(section: str, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{section}.{key}={value!r}: expected an integer >= {minimum}; pass e.g. "
            f"{section}.{key}={max(minimum, 1)}."
        )
    return value


def _as_bool(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{key}={value!r}: expected true or false.")
    return value


def _probe_overrides(raw: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """The shape of ``probe_overrides`` (names are checked in :func:`validate_names`)."""
    raw = raw or {}
    example = "probe_overrides: {as20k: {protobin: {hparams: {prototypes_per_class: 10}}}}"
    if not isinstance(raw, dict):
        raise ConfigError(f"probe_overrides={raw!r}: expected a mapping, e.g. {example}.")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for dataset, probes in raw.items():
        if not isinstance(probes, dict):
            raise ConfigError(
                f"probe_overrides.{dataset}={probes!r}: expected probe -> settings, e.g. {example}."
            )
        for probe, body in probes.items():
            where = f"probe_overrides.{dataset}.{probe}"
            if not isinstance(body, dict):
                raise ConfigError(f"{where}={body!r}: expected {{search: ..., hparams: {{...}}}}.")
            for key in body:
                if key not in OVERRIDE_KEYS:
                    raise ConfigError(
                        f"{where}: unknown key {key!r}.{did_you_mean(str(key), OVERRIDE_KEYS)} "
                        f"Valid keys: {', '.join(OVERRIDE_KEYS)} (hyperparameters go under "
                        f"hparams, e.g. {example})."
                    )
            if not isinstance(body.get("hparams") or {}, dict):
                raise ConfigError(f"{where}.hparams={body['hparams']!r}: expected a mapping.")
            out.setdefault(str(dataset), {})[str(probe)] = {
                k: (dict(v) if k == "hparams" else v) for k, v in body.items() if v is not None
            }
    return out


def build(raw: dict[str, Any], overrides: tuple[str, ...] = ()) -> SweepConfig:
    """Turn a composed config into a validated :class:`SweepConfig`."""
    from orchestrator.validate import check_unused_keys

    check_unused_keys(raw)
    for group in GROUPS:
        if not raw.get(group):
            raise ConfigError(
                f"the sweep selects no {group}; add '- {group}: [...]' to its defaults or pass "
                f"{group}=[{','.join(group_options(group)[:3])}]."
            )
    defaults = raw.get("encoder_defaults") or {}
    encoders = tuple(
        _user_encoder(name, body or {})
        if _is_user_ref(name)
        else EncoderChoice(
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
        _folder_dataset(name, b or {})
        if _is_folder(name)
        else DatasetChoice(name, (b or {}).get("source"), dict((b or {}).get("options") or {}))
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
    train = TrainSettings(
        epochs=_as_int("train", "epochs", t["epochs"], 1),
        batch_size=_as_int("train", "batch_size", t["batch_size"], 1),
        warmup_epochs=_as_int("train", "warmup_epochs", t["warmup_epochs"]),
        device=str(t["device"]),
        precision=_choice("train", "precision", t.get("precision", "fp32"), PRECISIONS),
        placement=_choice("train", "placement", t.get("placement", "auto"), PLACEMENTS),
    )
    if train.warmup_epochs > train.epochs:
        raise ConfigError(
            f"train.warmup_epochs={train.warmup_epochs} exceeds train.epochs={train.epochs}; "
            "lower train.warmup_epochs."
        )
    from orchestrator import paths

    root = paths.home(bool(paths.cluster_reason(r.get("address") or "")))
    out_url = _absolute(str(raw["out_dir"]), root)
    out_dir = paths.mirror_dir(out_url) if "://" in out_url else Path(out_url)
    return SweepConfig(
        name=raw["name"],
        out_dir=out_dir,
        out_url=out_url if "://" in out_url else "",
        data_root=_absolute(str(raw["data_root"]), root),
        store_url=_absolute(str(raw["store_url"]), root),
        tracking_uri=raw.get("tracking_uri") or f"sqlite:///{(out_dir / 'mlflow.db').resolve()}",
        experiment=str(raw.get("experiment") or raw["name"]),
        encoders=encoders,
        datasets=datasets,
        probes=probes,
        ray=RayConfig(
            address=r.get("address") or "",
            storage_path=_absolute(r["storage_path"], root) if r.get("storage_path") else "",
            max_concurrent_trials=_as_int(
                "ray", "max_concurrent_trials", r["max_concurrent_trials"]
            ),
            max_concurrent_studies=_as_int(
                "ray", "max_concurrent_studies", r["max_concurrent_studies"]
            ),
            cpus_per_trial=_as_float("ray", "cpus_per_trial", r["cpus_per_trial"]),
            gpus_per_trial=_gpus_per_trial(r["gpus_per_trial"], encoders, datasets, probes),
            cpus_per_extraction=_as_float("ray", "cpus_per_extraction", r["cpus_per_extraction"]),
            gpus_per_extraction=_as_float("ray", "gpus_per_extraction", r["gpus_per_extraction"]),
            max_failures=_as_int("ray", "max_failures", r["max_failures"]),
            pack_seconds=_as_float("ray", "pack_seconds", r.get("pack_seconds", 2.0)),
        ),
        search=search,
        seeds=seeds,
        train=train,
        extract_batch_size=_as_int("extract", "batch_size", e["batch_size"], 1),
        extract_device=str(e["device"]),
        tie_rule=tie_rule,
        overrides=tuple(overrides),
        probe_overrides=_probe_overrides(raw.get("probe_overrides")),
    )


def _is_folder(name: str) -> bool:
    from orchestrator.datasets import DATASETS
    from orchestrator.datasets.folder import is_folder_ref

    return name not in DATASETS.names() and is_folder_ref(name)


def _folder_dataset(path: str, body: dict[str, Any]) -> DatasetChoice:
    """A user's dataset folder: named after the folder (or its dataset.yaml's ``name``)."""
    from orchestrator.datasets.folder import display_name
    from orchestrator.datasets.spec import DatasetError

    try:
        name, folder = display_name(path)
    except DatasetError as err:
        raise ConfigError(str(err)) from None
    return DatasetChoice(name, folder, dict(body.get("options") or {}))


def _is_user_ref(name: str) -> bool:
    from backbones import BACKBONES
    from backbones.user import is_user_ref

    return name not in BACKBONES.names() and is_user_ref(name)


def _user_encoder(ref: str, body: dict[str, Any]) -> EncoderChoice:
    """A user encoder: labelled by its own name; ``encoder_defaults`` do not apply to it."""
    from backbones.user import UserEncoderError, display_name

    try:
        name = display_name(ref)
    except UserEncoderError as err:
        raise ConfigError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - the user's code failed to import
        raise ConfigError(
            f"encoder {ref!r}: importing it failed: {type(err).__name__}: {err}. Fix the "
            f"module, then check it with python -m orchestrator.check encoder={ref}."
        ) from None
    return EncoderChoice(name, body.get("checkpoint"), dict(body.get("overrides") or {}), ref)


def load(
    name: str,
    overrides: list[str] | tuple[str, ...] = (),
    out_dir: str | None = None,
    build_probes: bool = True,
):
    """Compose, convert and validate a sweep (names checked against the registries).

    ``build_probes=False`` (``--dry-run``) skips building each probe once, which imports torch;
    :mod:`orchestrator.preflight` then checks the hyperparameter names statically."""
    cfg = build(compose(name, overrides, out_dir), tuple(overrides))
    validate_names(cfg, build_probes)
    return cfg


def validate_names(cfg: SweepConfig, build_probes: bool = True) -> None:
    """Check every encoder, dataset, probe and search space before any Ray work."""
    from backbones import BACKBONES
    from orchestrator.datasets import DATASETS
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
    _check_override_names(cfg, DATASETS, PROBES)
    from orchestrator.validate import validate_values

    validate_values(cfg, build_probes=build_probes)


def _check_override_names(cfg: SweepConfig, datasets, probes) -> None:
    """Every dataset, probe and hyperparameter named in ``probe_overrides`` exists."""
    from probes import probe_hparams

    for dataset, per_probe in cfg.probe_overrides.items():
        if dataset != ANY_DATASET and dataset not in datasets:
            valid = [ANY_DATASET, *datasets.names()]
            raise ConfigError(
                f"probe_overrides: unknown dataset {dataset!r}.{did_you_mean(dataset, valid)} "
                f"Valid: {', '.join(valid)} ('*' = every dataset)."
            )
        for probe, body in per_probe.items():
            if probe not in probes:
                raise ConfigError(
                    f"probe_overrides.{dataset}: unknown probe {probe!r}."
                    f"{did_you_mean(probe, probes.names())} Valid probes: "
                    f"{', '.join(probes.names())}."
                )
            valid = sorted(probe_hparams(probe))
            for name in body.get("hparams") or {}:
                if name not in valid:
                    raise ConfigError(
                        f"probe_overrides.{dataset}.{probe}.hparams: probe {probe!r} has no "
                        f"hyperparameter {name!r}.{did_you_mean(name, valid)} Valid: "
                        f"{', '.join(valid)}."
                    )
