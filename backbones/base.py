"""The frozen backbone every consumer sees: front end + encoder -> :class:`TokenMap`.

Encoders (``vit.py``, ``beats.py``, ``dasheng.py``) only map normalised feature windows to
tokens; this module owns what is common to all of them: resampling, the clip-length policy
(see ``frontend.py``), chunking long clips into encoder windows and concatenating their maps
in time, the padding mask, layer selection, and freezing.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from backbones.frontend import Frontend, resample
from backbones.spec import EncoderSpec, TokenMap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchConfig:
    """Transformer sizes of one encoder instance (base = the paper's, tiny = for tests)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0


TINY = ArchConfig(embed_dim=64, depth=2, num_heads=4)
BASE = ArchConfig()
SIZES = {"base": BASE, "tiny": TINY}


class TokenEncoder(nn.Module, ABC):
    """An encoder body: normalised feature windows ``[B, W, M]`` -> patch tokens.

    ``patch_frames`` frames make one token row and ``grid_freq`` tokens one row.
    ``masks_padding`` says whether the encoder hides padded rows from attention (BEATs,
    Dasheng: trained on un-padded input) or attends to them like upstream (Audio-MAE, ASiT,
    EAT, SSLAM: trained on zero-padded fixed-length input); it also decides which rows are
    real (:meth:`real_rows`).
    """

    embed_dim: int
    depth: int
    has_cls: bool
    patch_frames: int
    grid_freq: int
    masks_padding: bool = False

    @abstractmethod
    def forward_features(
        self, feats: Tensor, valid_rows: Tensor, layer: int
    ) -> tuple[Tensor, Tensor | None]:
        """Tokens ``[B, T*F, D]`` (time-major) and cls ``[B, D]`` or None after block ``layer``
        (0-based, non-negative; the final norm, if any, only after the last block)."""

    def real_rows(self, frames: Tensor) -> Tensor:
        """Real token rows of windows holding ``frames`` real frames each.

        Encoders that hide padding count whole patches only (floor): upstream runs them on the
        un-padded clip, whose strided patch convolution drops the trailing partial patch (BEATs
        10 s: 998 frames -> 62 rows; Dasheng 10 s: 1001 frames -> 250 rows, its own mask is
        ``x_length // 640``). The others attend to zero-padded windows like upstream, so every
        row covering a real frame is a real token (ceil)."""
        pf = self.patch_frames
        if self.masks_padding:
            return torch.div(frames, pf, rounding_mode="floor")
        return torch.div(frames + pf - 1, pf, rounding_mode="floor")

    def row_key_mask(self, valid_rows: Tensor, rows: int) -> Tensor | None:
        """``[B, rows*F]`` bool, True for tokens of padded rows, or None when nothing is padded.
        Windows without any real row are left unmasked (their tokens are all marked padding)."""
        if not self.masks_padding:
            return None
        valid = torch.where(valid_rows > 0, valid_rows, torch.full_like(valid_rows, rows))
        pad_rows = torch.arange(rows, device=valid_rows.device)[None, :] >= valid[:, None]
        if not bool(pad_rows.any()):
            return None
        return pad_rows.repeat_interleave(self.grid_freq, dim=1)


# Revision of the token rules of the encoders that hide padding, part of their ``frontend_id``
# (hence of embedding-store keys) so a store never serves maps made by older code for the same
# weights and front end. 2: a trailing partial patch row is padding (issue #11).
MASKED_TOKEN_RULES = 2


class Backbone(nn.Module):
    """Frozen encoder with its upstream front end; ``embed`` returns a :class:`TokenMap`."""

    def __init__(
        self, spec: EncoderSpec, encoder: TokenEncoder, frontend: Frontend, weights_id: str
    ) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = encoder
        self.frontend = frontend
        self.weights_id = weights_id
        self.frontend_id = spec.frontend.frontend_id()
        if encoder.masks_padding:
            self.frontend_id += f"-rows{MASKED_TOKEN_RULES}"
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> Backbone:
        """Always stays in eval mode (frozen encoder; BatchNorm statistics never move)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_layer(self, layer: int) -> int:
        depth = self.encoder.depth
        if not -depth <= layer < depth:
            raise ValueError(
                f"layer {layer} is out of range for {self.spec.name} with {depth} blocks; "
                f"valid: {-depth}..{depth - 1} (-1 = last block)."
            )
        return layer % depth

    @torch.no_grad()
    def features(
        self, waveform: Tensor, sample_rate: int, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Front end only (CPU workers can run it): -> (features ``[B, K*W, M]``, frames ``[B]``)."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"waveform must be [B, S] (or [S]), got shape {tuple(waveform.shape)}."
            )
        waveform = waveform.float()
        b, s = waveform.shape
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        if lengths.shape != (b,) or bool((lengths < 1).any()) or bool((lengths > s).any()):
            raise ValueError(
                f"lengths must be a LongTensor[{b}] with values in 1..{s} (samples per clip), "
                f"got {lengths.tolist()}."
            )
        waveform, lengths = resample(waveform, lengths, sample_rate, self.spec.sample_rate)
        return self.frontend(waveform, lengths)

    @torch.no_grad()
    def embed_features(self, feats: Tensor, frames: Tensor, layer: int = -1) -> TokenMap:
        """Encoder only: features from :meth:`features` -> :class:`TokenMap`."""
        layer = self._check_layer(layer)
        enc = self.encoder
        b, total, m = feats.shape
        w = self.spec.frontend.chunk_frames
        k = total // w
        rows = w // enc.patch_frames
        feats = feats.to(self.device).reshape(b * k, w, m)
        frames = frames.to(self.device)
        starts = torch.arange(k, device=self.device) * w
        chunk_frames = (frames[:, None] - starts[None, :]).clamp(0, w)  # [B, K]
        valid_rows = enc.real_rows(chunk_frames)
        # a clip shorter than one patch (upstream: no token at all) keeps its one partial row
        short = (valid_rows.sum(1) == 0) & (frames > 0)
        valid_rows[:, 0] = torch.where(short, torch.ones_like(frames), valid_rows[:, 0])
        tokens, cls = enc.forward_features(feats, valid_rows.reshape(-1), layer)
        d = tokens.shape[-1]
        tokens = tokens.float().reshape(b, k * rows * enc.grid_freq, d)
        row_idx = torch.arange(k * rows, device=self.device)
        total_rows = valid_rows.sum(1)
        pad = (row_idx[None, :] >= total_rows[:, None]).repeat_interleave(enc.grid_freq, dim=1)
        if cls is not None:
            cls = cls.float().reshape(b, k, d)
            real = (chunk_frames > 0).to(cls.dtype).unsqueeze(-1)
            cls = (cls * real).sum(1) / real.sum(1).clamp_min(1.0)
        return TokenMap(tokens=tokens, cls=cls, padding_mask=pad,
                        grid=(k * rows, enc.grid_freq))

    @torch.no_grad()
    def embed(
        self, waveform: Tensor, sample_rate: int, lengths: Tensor | None = None, layer: int = -1
    ) -> TokenMap:
        """Token map of ``waveform [B, S]`` (any rate; resampled to ``spec.sample_rate``).

        ``lengths`` gives the real samples per clip (the rest is padding); ``layer`` indexes the
        blocks like a Python list (-1 = last block, the paper's setting).
        """
        feats, frames = self.features(waveform, sample_rate, lengths)
        return self.embed_features(feats, frames, layer)

    def extra_repr(self) -> str:
        return f"name={self.spec.name!r}, weights_id={self.weights_id!r}"
