"""Deep checks of a sweep config: every value tried against the real shapes before Ray starts.

:mod:`orchestrator.config` parses and type-checks; this module checks what needs the registries
and the machine: keys nobody reads, encoder overrides, probes built at each encoder's real width
and at each search space's extremes (one forward pass), devices, checkpoint files and dataset
sources that must exist, the output folder, and resources the local machine cannot give.
Every refusal is a :class:`~orchestrator.config.ConfigError` naming the value and the fix.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from orchestrator.config import GROUPS, ConfigError, SweepConfig, sweeps_dir
from probes.registry import did_you_mean

DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# Probe inputs of the forward check: batch of 2, a few token rows of the encoder's grid.
CHECK_ROWS = 3


# -- keys nobody reads ------------------------------------------------------------------------
def _schema() -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Known keys: base.yaml and every sweep file (top level), every group file's body keys."""
    from omegaconf import OmegaConf

    top: dict[str, Any] = {}
    files = [sweeps_dir() / "base.yaml", *sorted(sweeps_dir().glob("*.yaml"))]
    for path in files:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        _merge_schema(top, {k: v for k, v in data.items() if k != "defaults"})
    groups: dict[str, set[str]] = {}
    for group in GROUPS:
        keys: set[str] = set()
        for path in (sweeps_dir() / group).glob("*.yaml"):
            keys |= set((OmegaConf.to_container(OmegaConf.load(path)) or {}).keys())
        groups[group] = keys
    return top, groups


def _merge_schema(into: dict[str, Any], data: dict[str, Any]) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and value:
            sub = into.setdefault(key, {})
            if not isinstance(sub, dict):
                sub = into[key] = {}
            if not sub.get("__free__"):
                _merge_schema(sub, value)
        elif isinstance(value, dict):  # an empty mapping in a default: free-form (overrides: {})
            into[key] = {"__free__": True}
        else:
            into.setdefault(key, None)


def _unknown(raw: dict[str, Any], schema: dict[str, Any], prefix: str) -> Iterable[str]:
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if key not in schema:
            yield path
        elif (
            isinstance(schema[key], dict)
            and not schema[key].get("__free__")
            and isinstance(value, dict)
        ):
            yield from _unknown(value, schema[key], f"{path}.")


def check_unused_keys(raw: dict[str, Any]) -> None:
    """A key that no code reads (``+foo=1``, ``+train.epoch=3``) is an error, not ignored."""
    top, groups = _schema()
    bad = [k for k in _unknown({k: v for k, v in raw.items() if k not in GROUPS}, top, "")]
    for group in GROUPS:
        for name, body in (raw.get(group) or {}).items():
            for key in body or {}:
                if key not in groups[group]:
                    bad.append(f"{group}.{name}.{key}")
    if bad:
        key = bad[0]
        parent, _, leaf = key.rpartition(".")
        known = _known_at(top, groups, parent)
        raise ConfigError(
            f"unknown key {key!r}: no setting of the sweep reads it, so it would be ignored."
            f"{did_you_mean(leaf, known)} Valid keys{' under ' + repr(parent) if parent else ''}: "
            f"{', '.join(known)}. Remove the override (or fix its spelling)."
            + (f" Other unknown keys: {', '.join(bad[1:])}." if len(bad) > 1 else "")
        )


def _known_at(top: dict[str, Any], groups: dict[str, set[str]], parent: str) -> list[str]:
    parts = parent.split(".") if parent else []
    if parts and parts[0] in GROUPS and len(parts) == 2:
        return sorted(groups[parts[0]])
    node: Any = top
    for part in parts:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    keys = set(node) - {"__free__"} if isinstance(node, dict) else set()
    return sorted(keys | (set(GROUPS) if not parts else set()))


# -- values that need the registries ------------------------------------------------------------
def check_device(key: str, value: str) -> None:
    if not DEVICE.match(value):
        raise ConfigError(
            f"{key}={value!r} is not a device.{did_you_mean(value, DEVICES)} Valid: "
            f"{', '.join(DEVICES)} (auto: cuda when the worker holds a GPU, else cpu)."
        )


def check_devices(cfg: SweepConfig) -> None:
    """Device names, and a CUDA device only where the Ray task holds a GPU."""
    check_device("train.device", cfg.train.device)
    check_device("extract.device", cfg.extract_device)
    for key, device, gpus, gkey in (
        ("train.device", cfg.train.device, cfg.ray.gpus_per_trial, "ray.gpus_per_trial"),
        ("extract.device", cfg.extract_device, cfg.ray.gpus_per_extraction,
         "ray.gpus_per_extraction"),
    ):  # fmt: skip
        if device.startswith("cuda") and gpus <= 0:
            raise ConfigError(
                f"{key}={device!r} but {gkey}={gpus:g}: Ray gives the worker no GPU, so CUDA "
                f"would fail there. Set {gkey}=1, or {key}=auto."
            )


def encoder_width(enc: Any) -> int:
    """The token width of an encoder choice (its spec at base size, else the size's width)."""
    from backbones import BACKBONES
    from backbones.base import SIZES

    size = str(enc.overrides.get("size", "base"))
    if size == "base":
        return int(BACKBONES.get(enc.name).spec.embed_dim)
    return int(SIZES[size].embed_dim)


def check_encoder(enc: Any) -> None:
    """Overrides: known names and values of the right type (as ``create_backbone`` reads them)."""
    from backbones.base import SIZES
    from backbones.factory import OVERRIDES

    where = f"encoder {enc.name!r} (encoder_defaults.overrides or encoder.{enc.name}.overrides)"
    for key in enc.overrides:
        if key not in OVERRIDES:
            raise ConfigError(
                f"{where}: unknown override {key!r}.{did_you_mean(key, OVERRIDES)} Valid "
                f"overrides: {', '.join(OVERRIDES)}."
            )
    o = enc.overrides
    if "size" in o and o["size"] not in SIZES:
        raise ConfigError(
            f"{where}: size={o['size']!r} is not a size.{did_you_mean(str(o['size']), list(SIZES))}"
            f" Valid sizes: {', '.join(SIZES)}."
        )
    for key in ("seed", "chunk_frames"):
        if key in o and (isinstance(o[key], bool) or not isinstance(o[key], int)):
            raise ConfigError(f"{where}: {key}={o[key]!r} must be an integer.")
    if "chunk_frames" in o:
        step = 4 if enc.name == "dasheng" else 16
        if o["chunk_frames"] <= 0 or o["chunk_frames"] % step:
            raise ConfigError(
                f"{where}: chunk_frames={o['chunk_frames']} must be a positive multiple of {step}."
            )
    if "trust_pickle" in o and not isinstance(o["trust_pickle"], bool):
        raise ConfigError(f"{where}: trust_pickle={o['trust_pickle']!r} must be true or false.")
    if "asit_branch" in o and o["asit_branch"] not in ("teacher", "student"):
        raise ConfigError(f"{where}: asit_branch={o['asit_branch']!r}; valid: teacher, student.")


def check_dataset_choice(ds: Any) -> Any:
    """The dataset's options (unknown ones refused) -> its spec."""
    from orchestrator.datasets import DATASETS, DatasetError, get_dataset

    defaults = DATASETS.get(ds.name).opts
    for key, value in ds.options.items():
        want = defaults.get(key)
        if want is None or value is None:
            continue
        if isinstance(want, bool):
            ok = isinstance(value, bool)
        elif isinstance(want, (int, float)):
            ok = isinstance(value, (int, float) if isinstance(want, float) else int)
            ok = ok and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(want))
        if not ok:
            raise ConfigError(
                f"dataset {ds.name!r}: option {key}={value!r} should be a "
                f"{type(want).__name__} like the default {want!r}; fix "
                f"dataset.{ds.name}.options.{key}."
            )
    try:
        return get_dataset(ds.name, source=ds.source, **ds.options)
    except (DatasetError, TypeError, ValueError) as err:
        raise ConfigError(f"dataset {ds.name!r} (sweeps/dataset/{ds.name}.yaml): {err}") from None


def _extremes(space: Any) -> list[dict[str, Any]]:
    """The low corner, the high corner and, for choices, every choice with the others low."""
    from orchestrator.trial import TRAIN_FIELDS

    params = [p for p in space if p.name not in TRAIN_FIELDS]
    if not params:
        return [{}]
    low = {p.name: p.choices[0] if p.choices else p.low for p in params}
    high = {p.name: p.choices[-1] if p.choices else p.high for p in params}
    out = [low, high]
    for p in params:
        for c in p.choices or ():
            out.append({**low, p.name: c})
    return out


def check_override_syntax(overrides: Iterable[str]) -> None:
    """``key=value`` (or ``+key=value``, ``~key``) with a key: Hydra answers ``=4`` with a
    traceback about config groups that names neither the override nor the fix."""
    for item in overrides:
        key, eq, _ = item.partition("=")
        name = key.lstrip("+~").strip()
        if (eq and not name) or (not eq and not key.startswith("~")):
            raise ConfigError(
                f"override {item!r} has no key: write KEY=VALUE, e.g. train.epochs=4, "
                "+probe.mhca.hparams.num_heads=4 or dataset=[esc50] (~KEY deletes a key)."
            )


def _where(probe: Any, context: str) -> str:
    return (
        f"probe {probe.name!r} (sweeps/probe/{probe.name}.yaml, search space {probe.search!r}"
        f"{context})"
    )


def check_probe_values(probe: Any, space: Any, context: str = "") -> None:
    """What needs no torch: a value fixed and searched at once, a count that is not >= 1."""
    where = _where(probe, context)
    searched = {p.name for p in space}
    both = sorted(searched & set(probe.hparams))
    if both:
        raise ConfigError(
            f"{where}: {both} fixed in hparams and also searched by search space "
            f"{probe.search!r} (sweeps/search/{probe.search}.yaml). Either remove it from "
            f"probe.{probe.name}.hparams, or pick a "
            f"search space without it (probe.{probe.name}.search=default)."
        )
    for key, value in probe.hparams.items():
        counted = key.startswith("num_") or key.endswith("_per_class")
        if counted and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ConfigError(
                f"{where}: {key}={value!r} must be a positive integer (a count). Fix "
                f"probe.{probe.name}.hparams.{key}, e.g. {key}=4."
            )


def check_probe(
    probe: Any,
    space: Any,
    widths: dict[str, int],
    datasets: dict[str, Any],
    context: str = "",
    *,
    largest: bool = True,
) -> None:
    """Build the probe at each encoder's width and each search extreme; run one forward pass
    (at the smallest and, with ``largest``, the largest class count of the datasets)."""
    import torch

    from probes import create_probe

    check_probe_values(probe, space, context)
    where = _where(probe, context)
    classes = sorted({(s.num_classes, s.task) for s in datasets.values()}) or [(2, "multiclass")]
    counts = classes[:1] + classes[-1:] if largest else classes[:1]
    for (enc_name, width), (num_classes, _), point in itertools.product(
        sorted(widths.items()), counts, _extremes(space)
    ):
        hp = {**probe.hparams, **point}
        try:
            head = create_probe(probe.name, embed_dim=width, num_classes=num_classes, **hp)
            grid = (CHECK_ROWS, 8)
            with torch.no_grad():
                out = head(torch.zeros(2, grid[0] * grid[1], width), grid=grid)
            if tuple(out.shape) != (2, num_classes):
                raise ValueError(f"logits of shape {tuple(out.shape)}, not (2, {num_classes})")
        except (TypeError, ValueError, RuntimeError, AssertionError) as err:
            raise ConfigError(
                f"{where} with {hp} at the width {width} of encoder {enc_name!r}: {err}. Fix the "
                f"value in probe.{probe.name}.hparams or the range in "
                f"sweeps/search/{probe.search}.yaml."
            ) from None


def validate_values(cfg: SweepConfig, build_probes: bool = True, *, largest: bool = True) -> None:
    """Everything checkable from the config and the registries alone (no files, no machine).

    ``build_probes=False`` checks search spaces, hyperparameter names and counts but neither
    the encoder overrides nor builds each probe (both import torch). ``largest=False`` (the dry
    run) runs each probe's forward pass at the smallest class count only: a prototype head at
    AudioSet's 527 classes costs seconds per search corner.
    """
    from orchestrator.space import load_space

    check_devices(cfg)
    datasets = {ds.name: check_dataset_choice(ds) for ds in cfg.datasets}
    widths: dict[str, int] = {}
    if build_probes:  # the encoder registry imports torch
        for enc in cfg.encoders:
            check_encoder(enc)
            widths.setdefault(f"{enc.name}", encoder_width(enc))
    checked = set()
    for probe in cfg.probes:
        for name, spec in datasets.items():  # probe_overrides may change a probe per dataset
            resolved = cfg.probe_for(name, probe)
            key = (resolved.name, resolved.search, repr(sorted(resolved.hparams.items())))
            if key in checked:
                continue
            checked.add(key)
            context = "" if resolved is probe else f", with probe_overrides for {name}"
            scope = datasets if resolved is probe else {name: spec}
            space = load_space(resolved.search, resolved.name)
            if build_probes:
                check_probe(resolved, space, widths, scope, context, largest=largest)
            else:
                check_probe_values(resolved, space, context)


# -- what needs the files and the machine ---------------------------------------------------------
def check_checkpoints(cfg: SweepConfig) -> None:
    """A local checkpoint file must exist; an official one needs a download URL or its env var."""
    from backbones import BACKBONES

    for enc in cfg.encoders:
        ref = enc.checkpoint
        spec = BACKBONES.get(enc.name).spec
        origin = "encoder_defaults.checkpoint / encoder." + enc.name + ".checkpoint"
        if ref == "random" or spec.family == "user":  # a user encoder loads its own weights
            continue
        if ref is None:
            env = os.environ.get(spec.env_var)
            if env:
                ref, origin = env, f"${spec.env_var}"
            elif spec.checkpoint.url is None:
                raise ConfigError(
                    f"encoder {enc.name!r}: no checkpoint given and the official one "
                    f"({spec.checkpoint.file_name}) has no direct download "
                    f"({spec.checkpoint.page}). Download it and set {spec.env_var}=PATH, or pass "
                    f"encoder.{enc.name}.checkpoint=PATH, or checkpoint=random."
                )
            else:
                continue
        ref = str(ref)
        if "://" in ref and not ref.startswith("file://"):
            continue  # remote: fetched (and hashed) where the encoder is built
        path = Path(ref.removeprefix("file://")).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"encoder {enc.name!r}: checkpoint {str(path)!r} (from {origin}) does not exist. "
                "Point it at an existing file, an s3:// or hf:// URL, or use checkpoint=random."
            )


def _local_checkpoint(enc: Any) -> Path | None:
    from backbones import BACKBONES

    ref = enc.checkpoint
    if ref is None:
        ref = os.environ.get(BACKBONES.get(enc.name).spec.env_var)
    if ref is None or str(ref) == "random":
        return None
    ref = str(ref)
    if "://" in ref and not ref.startswith("file://"):
        return None
    path = Path(ref.removeprefix("file://")).expanduser()
    return path if path.is_file() else None


def check_checkpoint_files(cfg: SweepConfig) -> None:
    """A local checkpoint must load into its encoder (layout, keys, shapes) before any task:
    otherwise every extraction job of the encoder fails on a worker, later and farther away."""
    from backbones import create_backbone
    from backbones.checkpoints import CheckpointError

    for enc in cfg.encoders:
        path = _local_checkpoint(enc)
        if path is None:
            continue
        try:
            create_backbone(enc.name, checkpoint=str(path), **enc.overrides)
        except CheckpointError as err:
            raise ConfigError(f"encoder {enc.name!r}: {err}") from None


def check_sources(cfg: SweepConfig) -> None:
    """A dataset source that is a local path must exist."""
    for ds in cfg.datasets:
        src = ds.source
        if not src or "://" in src or src == "generated":
            continue
        from orchestrator.datasets.api import normalize_source

        if "://" in (normalize_source(src) or ""):
            continue
        if not os.path.exists(src):
            raise ConfigError(
                f"dataset {ds.name!r}: source {src!r} does not exist. Point "
                f"dataset.{ds.name}.source at an existing folder or archive, an s3:// prefix or a "
                "Hugging Face id, or remove it to use the registered source."
            )


def check_out_dir(out_dir: Path) -> None:
    """``--out`` must be a folder we can create and write (tried for real), not a file."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(
            f"--out {str(out_dir)!r} is a file, not a folder. Pass a folder path (it is created)."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise ConfigError(
            f"--out {str(out_dir)!r} cannot be created or written ({err.strerror or err}). Pass a "
            "folder you can write (or set UNMUTE_OUT_ROOT / UNMUTE_HOME)."
        ) from None


def check_local_resources(cfg: SweepConfig) -> None:
    """Per-task CPUs/GPUs that this machine cannot give (only when Ray runs locally).

    On a cluster (``ray.address`` set, other than ``local``) the cluster pre-flight checks
    feasibility instead.
    """
    if cfg.ray.address not in ("", "local"):
        return
    cpus = os.cpu_count() or 1
    for key, value in (
        ("ray.cpus_per_trial", cfg.ray.cpus_per_trial),
        ("ray.cpus_per_extraction", cfg.ray.cpus_per_extraction),
    ):
        if value > cpus:
            raise ConfigError(
                f"{key}={value:g} but this machine has {cpus} CPUs: no trial could ever be "
                f"scheduled and the sweep would wait forever. Use {key}<={cpus}, or connect to a "
                "cluster with ray.address=... (RAY_ADDRESS)."
            )
    wanted = max(cfg.ray.gpus_per_trial, cfg.ray.gpus_per_extraction)
    if wanted > 0:
        import torch

        have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if wanted > have:
            key = (
                "ray.gpus_per_trial"
                if cfg.ray.gpus_per_trial >= cfg.ray.gpus_per_extraction
                else "ray.gpus_per_extraction"
            )
            raise ConfigError(
                f"{key}={wanted:g} but this machine has {have} GPUs: nothing could be scheduled. "
                f"Set {key}=0 (and the devices to auto/cpu), or connect to a GPU cluster with "
                "ray.address=..."
            )


def check_data(cfg: SweepConfig) -> None:
    """Every metadata problem of every dataset, before any task (generated data is made here)."""
    from orchestrator.datasets.checks import check_dataset, format_problems

    found = []
    for ds in cfg.datasets:
        spec = check_dataset_choice(ds)
        problems = check_dataset(spec, cfg.data_root)
        if problems:
            found.append(format_problems(spec, problems))
    if found:
        raise ConfigError(
            "\n".join(found) + "\nFix the metadata (`python -m orchestrator.data NAME --check` "
            "lists the same problems) and run again."
        )


def check_environment(cfg: SweepConfig) -> None:
    """Files, data and machine: output folder, checkpoints, sources, metadata, local resources."""
    check_out_dir(cfg.out_dir)
    check_checkpoints(cfg)
    check_checkpoint_files(cfg)
    check_sources(cfg)
    check_local_resources(cfg)
    check_data(cfg)
