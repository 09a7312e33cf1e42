"""``create_backbone``: registry name + checkpoint reference -> frozen :class:`Backbone`.

``checkpoint`` is ``"random"`` (deterministic init from ``seed``), None (``$<NAME>_CHECKPOINT``
if set, else the spec's official download), a local path, an fsspec URL (``s3://...``) or
``hf://<owner>/<repo>/<file>``. Real files are hashed, verified against the spec's digest,
checked to be this model's layout, converted and loaded strictly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch
from torch import Tensor

from backbones import formats
from backbones.base import SIZES, ArchConfig, Backbone, TokenEncoder
from backbones.beats import BEATsConfig, BEATsEncoder
from backbones.checkpoints import (
    CheckpointError,
    load_file,
    load_strict,
    resolve,
    sha256_file,
    verify_sha256,
)
from backbones.dasheng import DashengEncoder
from backbones.frontend import Frontend
from backbones.spec import EncoderSpec
from backbones.vit import AudioViT, EATEncoder
from backbones.zoo import BACKBONES, with_frontend

log = logging.getLogger(__name__)

_UNSET = object()
OVERRIDES = ("size", "seed", "chunk_frames", "sha256", "trust_pickle", "asit_branch")


def build_encoder(family: str, arch: ArchConfig, spec: EncoderSpec) -> TokenEncoder:
    """The encoder module of ``family`` at size ``arch`` (random init)."""
    rows = spec.frontend.chunk_frames // 16
    if family == "audiomae":
        return AudioViT(arch, grid=(rows, 8), pos_grid=(64, 8), sincos_grid=(8, 64))
    if family == "asit":
        return AudioViT(arch, grid=(rows, 8), pos_grid=(rows, 8))  # never resized (official)
    if family == "beats":
        return BEATsEncoder(arch, grid=(rows, 8))
    if family == "dasheng":
        return DashengEncoder(arch)
    if family == "eat":
        return EATEncoder(arch, grid=(rows, 8))
    raise ValueError(f"unknown encoder family {family!r}; valid: audiomae, asit, beats, dasheng, eat.")


def _converter_options(family: str, encoder: TokenEncoder, frontend: Frontend,
                       overrides: Mapping[str, object]) -> dict[str, object]:
    opts: dict[str, object] = {"branch": overrides.get("asit_branch", "teacher")}
    if isinstance(encoder, BEATsEncoder):
        c: BEATsConfig = encoder.cfg
        opts["beats_cfg"] = {
            "encoder_embed_dim": c.encoder_embed_dim, "encoder_layers": c.encoder_layers,
            "encoder_attention_heads": c.encoder_attention_heads, "embed_dim": c.embed_dim,
            "input_patch_size": c.input_patch_size, "layer_norm_first": c.layer_norm_first,
            "deep_norm": c.deep_norm, "relative_position_embedding": c.relative_position_embedding,
            "gru_rel_pos": c.gru_rel_pos, "num_buckets": c.num_buckets,
            "max_distance": c.max_distance, "conv_pos": c.conv_pos,
        }
    if frontend.mel is not None:
        opts["dasheng_frontend"] = {
            "front_end.0.spectrogram.window": frontend.mel.spectrogram.window,
            "front_end.0.mel_scale.fb": frontend.mel.mel_scale.fb,
        }
    return opts


def load_checkpoint(
    encoder: TokenEncoder, frontend: Frontend, name: str, family: str, layouts: tuple[str, ...],
    checkpoint: str | os.PathLike[str], expected_sha: object, trust_pickle: bool,
    overrides: Mapping[str, object],
) -> str:
    """Fetch, verify, convert and strictly load ``checkpoint``; returns ``"sha256:<hex>"``."""
    path = resolve(checkpoint)
    digest = sha256_file(path)
    spec = BACKBONES.get(name).spec
    if expected_sha is _UNSET:
        verify_sha256(path, digest, spec.checkpoint.sha256, spec.checkpoint.sha256_prefix)
    elif expected_sha is not None:
        verify_sha256(path, digest, str(expected_sha), None)
    obj = load_file(path, trust_pickle=trust_pickle)
    try:
        formats.check_layout(obj, name, layouts)
    except CheckpointError as e:
        raise CheckpointError(f"{name} checkpoint {str(path)!r}: {e}") from e
    own: dict[str, Tensor] = encoder.state_dict()
    convert = formats.CONVERTERS[family]
    try:
        state = convert(obj, own, _converter_options(family, encoder, frontend, overrides))
    except CheckpointError as e:
        raise CheckpointError(f"{name} checkpoint {str(path)!r}: {e}") from e
    load_strict(encoder, state, f"{name} checkpoint {str(path)!r}")
    log.info("loaded %s from %s (sha256 %s)", name, path, digest[:12])
    return f"sha256:{digest}"


def create_backbone(name: str, checkpoint: str | os.PathLike[str] | None = None,
                    **overrides: object) -> Backbone:
    """Frozen backbone ``name`` (a key of :data:`BACKBONES`, or a user encoder reference:
    ``file.py:Name``, ``pkg.mod:Name``, ``hf:<id>``, ``hear:<module>``; see ``backbones.user``).

    Overrides: ``size`` ("base" | "tiny"), ``seed`` (random init), ``chunk_frames`` (encoder
    window in frames), ``sha256`` (expected digest; None skips the check), ``trust_pickle``
    (allow full unpickling), ``asit_branch`` ("teacher" | "student").
    """
    if name not in BACKBONES.names() and name in BACKBONES:
        from backbones.user import create_user_backbone

        return create_user_backbone(name, None if checkpoint is None else str(checkpoint),
                                    **overrides)
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(
            f"create_backbone({name!r}) got unknown overrides {unknown}; valid: {', '.join(OVERRIDES)}."
        )
    entry = BACKBONES.get(name)
    size = str(overrides.get("size", "base"))
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} for {name}; valid: {', '.join(SIZES)}.")
    spec = entry.spec
    if "chunk_frames" in overrides:
        cf = int(overrides["chunk_frames"])  # type: ignore[arg-type]
        step = 4 if entry.family == "dasheng" else 16
        if cf <= 0 or cf % step:
            raise ValueError(f"chunk_frames={cf} must be a positive multiple of {step} for {name}.")
        spec = with_frontend(spec, chunk_frames=cf)
    seed = int(overrides.get("seed", 0))  # type: ignore[arg-type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = build_encoder(entry.family, SIZES[size], spec)
    frontend = Frontend(spec.frontend)
    if checkpoint is None:
        checkpoint = os.environ.get(spec.env_var) or spec.checkpoint.url
        if checkpoint is None:
            raise CheckpointError(
                f"{name}: the official checkpoint {spec.checkpoint.file_name!r} has no direct "
                f"download ({spec.checkpoint.page}). Download it, then pass checkpoint=PATH or "
                f"set {spec.env_var}=PATH; or use checkpoint='random'."
            )
    if str(checkpoint) == "random":
        weights_id = f"random-{size}-seed{seed}"
    else:
        weights_id = load_checkpoint(
            encoder, frontend, name, entry.family, entry.layouts, checkpoint,
            overrides.get("sha256", _UNSET), bool(overrides.get("trust_pickle", False)), overrides,
        )
    return Backbone(spec, encoder, frontend, weights_id)
