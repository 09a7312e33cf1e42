"""Dasheng (RicherMans/Dasheng, pip ``dasheng``): a time-only ViT over a 64-bin mel spectrogram.

Differs from the fbank ViTs in every input detail: torchaudio MelSpectrogram (64 mels, 512-point
FFT, hop 160, centred) in dB, a BatchNorm over the mel bins as the input normalisation (its
running statistics are in the checkpoint), and (64 x 4) patches that span the whole frequency
axis, so the map is ``T x 1`` with one token per 40 ms (250 tokens for 10 s). Separate learned
time and frequency position embeddings; timm-style pre-norm blocks; final ``norm``; no [cls]
(pooling "mean").

Padding: upstream (``dasheng`` 0.0.9, ``Dasheng.forward_spectrogram``) patch-embeds the whole
un-padded clip (the strided convolution drops a trailing partial patch: 1001 frames -> 250
tokens), splits the token sequence into 252-token chunks, the last one shorter and not padded,
and runs each chunk on its own. We pad every window to 1008 frames and hide the padded rows,
the trailing partial patch included, from attention: the real tokens of every window equal
upstream's chunk (tested in tests/backbones/test_backbone_conformance.py against the package).
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from backbones.base import ArchConfig, TokenEncoder

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


class InitBN(nn.Module):
    """``init_bn``: ``Rearrange('b c f t -> b f c t')``, BatchNorm2d(n_mels), rearrange back.
    Index 1 holds the BatchNorm so the keys read ``init_bn.1.*`` as upstream."""

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.add_module("0", nn.Identity())
        self.add_module("1", nn.BatchNorm2d(n_mels, momentum=0.01))

    def forward(self, x: Tensor) -> Tensor:  # x: [B, 1, F, T]
        return getattr(self, "1")(x.transpose(1, 2)).transpose(1, 2)


class PatchEmbedFT(nn.Module):
    """``patch_embed.proj``: Conv2d(1 -> D, (n_mels, 4), stride (n_mels, 4)) on ``[B, 1, F, T]``."""

    def __init__(self, embed_dim: int, n_mels: int, patch_t: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=(n_mels, patch_t),
                              stride=(n_mels, patch_t))

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class DashengEncoder(TokenEncoder):
    """Dasheng body over dB mel windows ``[B, W, 64]`` (W = 1008 frames = 252 tokens)."""

    has_cls = False
    masks_padding = True
    grid_freq = 1

    def __init__(self, arch: ArchConfig, n_mels: int = 64, patch_t: int = 4,
                 max_rows: int = 252) -> None:
        super().__init__()
        d = arch.embed_dim
        self.embed_dim, self.depth, self.patch_frames = d, arch.depth, patch_t
        self.init_bn = InitBN(n_mels)
        self.patch_embed = PatchEmbedFT(d, n_mels, patch_t)
        self.time_pos_embed = nn.Parameter(torch.randn(1, d, 1, max_rows) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, d, 1, 1) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d, arch.num_heads, arch.mlp_ratio, qkv_bias=True, norm_layer=LayerNorm6)
            for _ in range(arch.depth)
        )
        self.norm = LayerNorm6(d)

    def forward_features(
        self, feats: Tensor, valid_rows: Tensor, layer: int
    ) -> tuple[Tensor, Tensor | None]:
        x = self.init_bn(feats.transpose(1, 2).unsqueeze(1))  # [B, 1, F, T]
        x = self.patch_embed(x)  # [B, D, 1, t]
        t = x.shape[-1]
        if t > self.time_pos_embed.shape[-1]:
            raise ValueError(
                f"Dasheng window of {t} patches exceeds its {self.time_pos_embed.shape[-1]} "
                "time positions; use chunk_frames <= 4 * that."
            )
        x = x + self.time_pos_embed[..., :t] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)  # b (f t) c with f = 1
        key_pad = self.row_key_mask(valid_rows, t)
        attn_mask = None if key_pad is None else ~key_pad[:, None, None, :]
        for i, blk in enumerate(self.blocks):
            x = blk(x, attn_mask=attn_mask)
            if i == layer:
                break
        if layer == self.depth - 1:
            x = self.norm(x)
        return x, None
