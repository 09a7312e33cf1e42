"""Frozen metadata of an encoder and the token map it produces.

Every registered encoder carries an :class:`EncoderSpec` (in the spirit of timm's
``PretrainedCfg`` / mteb's ``ModelMeta``): where its official checkpoint comes from, how to
verify it, under which licence it is released, which paper it belongs to, and the exact front
end it expects. Downstream code (embedding-store keys, result rows, reports) reads provenance
from here instead of hard-coding it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: listing encoders must not import torch
    from torch import Tensor


@dataclass(frozen=True)
class TokenMap:
    """Patch tokens of a batch of clips, as every probe consumes them.

    tokens: ``[B, N, D]`` float32, ``N = T * F``, time-major (token index ``t * F + f``).
    cls: ``[B, D]`` or None for encoders without a [cls] token (consumers use the token mean).
    padding_mask: ``[B, N]`` bool, True where the token is not one upstream gives for the
        un-padded clip: it covers no real audio, or (encoders that hide padding: BEATs,
        Dasheng) it is a trailing partial patch, which upstream's strided conv drops.
    grid: ``(T, F)`` of the full (padded) map.
    """

    tokens: Tensor
    cls: Tensor | None
    padding_mask: Tensor
    grid: tuple[int, int]

    def __post_init__(self) -> None:
        b, n, _ = self.tokens.shape
        if self.grid[0] * self.grid[1] != n:
            raise ValueError(f"TokenMap grid {self.grid} does not multiply to N={n} tokens.")
        if tuple(self.padding_mask.shape) != (b, n):
            raise ValueError(
                f"TokenMap padding_mask has shape {tuple(self.padding_mask.shape)}, "
                f"expected {(b, n)}."
            )

    def mean(self) -> Tensor:
        """Mean of the non-padding tokens, ``[B, D]`` (the [cls] stand-in for BEATs/Dasheng)."""
        keep = (~self.padding_mask).unsqueeze(-1).to(self.tokens.dtype)
        return (self.tokens * keep).sum(1) / keep.sum(1).clamp_min(1.0)


@dataclass(frozen=True)
class FrontendSpec:
    """Parameters of the waveform -> normalised feature transform, exactly as upstream.

    ``kind`` is ``"kaldi_fbank"`` (torchaudio.compliance.kaldi.fbank) or ``"dasheng_mel"``
    (torchaudio MelSpectrogram + AmplitudeToDB; normalisation is the model's own BatchNorm).
    Normalisation is ``(x - mean) / (2 * std)`` when ``mean``/``std`` are set.
    ``chunk_frames`` is the encoder's input window (1024 frames = 10.24 s for the ViTs);
    ``pad_mode`` says how frames beyond the clip are filled: ``"raw_zero"`` zero in the raw
    log-mel domain before normalisation (Audio-MAE/EAT convention), ``"norm_zero"`` zero after
    normalisation, ``"floor"`` the clip's dB floor (Dasheng).
    """

    kind: str = "kaldi_fbank"
    sample_rate: int = 16_000
    num_mel_bins: int = 128
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window_type: str = "hanning"
    htk_compat: bool = True
    use_energy: bool = False
    dither: float = 0.0
    subtract_mean: bool = True
    waveform_scale: float = 1.0
    mean: float | None = -4.2677393
    std: float | None = 4.5689974
    chunk_frames: int = 1024
    pad_mode: str = "raw_zero"
    n_fft: int = 512
    hop_length: int = 160
    f_min: float = 0.0
    f_max: float = 8000.0
    top_db: float = 120.0

    def frontend_id(self) -> str:
        """A short stable hash of every parameter (part of embedding-store keys)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.kind}-{hashlib.sha256(blob).hexdigest()[:12]}"


@dataclass(frozen=True)
class CheckpointSource:
    """Where the official weights live and how to recognise the file.

    ``url`` is what ``checkpoint=None`` downloads (``hf://repo/file``, ``https://`` or None
    where only a browser download exists, e.g. Google Drive); ``page`` is the human-facing
    link. ``sha256`` is the full digest when known; ``sha256_prefix`` a published prefix.
    """

    url: str | None
    page: str
    file_name: str
    file_format: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    notes: str = ""


@dataclass(frozen=True)
class EncoderSpec:
    """Frozen metadata of one registered encoder at base size."""

    name: str
    family: str
    description: str
    paper: str
    licence: str
    checkpoint: CheckpointSource
    frontend: FrontendSpec
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    sample_rate: int = 16_000
    has_cls: bool = True
    grid_10s: tuple[int, int] = (64, 8)
    patch_size: tuple[int, int] = (16, 16)
    supervised: bool = False

    @property
    def env_var(self) -> str:
        """Environment variable that points at a local copy of the official checkpoint."""
        return f"{self.name.upper()}_CHECKPOINT"
