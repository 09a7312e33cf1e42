"""Spectrogram ViTs with a [cls] token: Audio-MAE / ASiT (pre-norm) and EAT / SSLAM (post-norm).

Audio-MAE and ASiT are timm's ViT blocks exactly (pre-norm, LayerNorm eps 1e-6, qkv bias,
exact GELU, final ``norm`` over all tokens), so the blocks are ``timm.models.vision_transformer
.Block``. EAT and SSLAM are data2vec 2.0 ``AltBlock`` s with ``layer_norm_first=False``:
attention on the un-normalised residual stream, then ``norm1``; ``norm2`` after the MLP is the
block output, and there is no final norm. Their [cls] token gets no position and the token
sequence is layer-normed (``context_encoder.norm``) before the first block.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
from timm.layers import Mlp
from timm.models.vision_transformer import Attention, Block
from torch import Tensor, nn

from backbones.base import ArchConfig, TokenEncoder

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)


def sincos_2d(embed_dim: int, grid_h: int, grid_w: int, cls_token: bool = False) -> Tensor:
    """MAE's fixed 2-D sin-cos table ``[1, (cls +) h*w, D]``: for row ``i`` the first half of
    the dims encodes ``i mod w``, the second half ``i div w`` (the upstream quirk included)."""

    def one_d(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32))
    emb = np.concatenate([one_d(embed_dim // 2, gw), one_d(embed_dim // 2, gh)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


class PatchEmbed(nn.Module):
    """Conv2d(1 -> D, 16 x 16, stride 16) on ``[B, 1, T, M]``, flattened time-major."""

    def __init__(self, embed_dim: int, patch: int = 16, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch, stride=patch, bias=bias)

    def forward(self, feats: Tensor) -> Tensor:
        return self.proj(feats.unsqueeze(1)).flatten(2).transpose(1, 2)


class AudioViT(TokenEncoder):
    """Audio-MAE / ASiT encoder. ``pos_grid`` is the grid the stored ``pos_embed`` was made for.

    By default it equals the window's grid and the table is added as stored, as both upstream
    codes do (Audio-MAE: 64 x 8 for 1024 frames; ASiT: ``VisionTransformer.prepare_tokens``
    adds ``pos_embed`` without any resizing, so ASiT runs 592-frame windows = its 37 x 8
    table). Only a ``chunk_frames`` override that changes the grid resizes the table (DINO's
    bicubic ``interpolate_pos_encoding``; no upstream code of these models does that)."""

    has_cls = True
    patch_frames = 16

    def __init__(
        self, arch: ArchConfig, grid: tuple[int, int], pos_grid: tuple[int, int],
        sincos_grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        d = arch.embed_dim
        self.embed_dim, self.depth, self.grid_freq = d, arch.depth, grid[1]
        self.grid, self.pos_grid = grid, pos_grid
        self.patch_embed = PatchEmbed(d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        n_pos = 1 + pos_grid[0] * pos_grid[1]
        if sincos_grid is not None:  # Audio-MAE: fixed table on the (8, 64) grid, stored in file
            self.pos_embed = nn.Parameter(sincos_2d(d, *sincos_grid, cls_token=True))
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, n_pos, d) * 0.02)
        self.blocks = nn.ModuleList(
            Block(d, arch.num_heads, arch.mlp_ratio, qkv_bias=True, norm_layer=LayerNorm6)
            for _ in range(arch.depth)
        )
        self.norm = LayerNorm6(d)
        nn.init.normal_(self.cls_token, std=0.02)

    def patch_pos(self, rows: int, cols: int) -> Tensor:
        pos = self.pos_embed[:, 1:]
        if (rows, cols) == self.pos_grid:
            return pos
        d = pos.shape[-1]
        grid = pos.reshape(1, *self.pos_grid, d).permute(0, 3, 1, 2)
        # only for a chunk_frames override: DINO's ``interpolate_pos_encoding`` (scale factors
        # with a +0.1 offset, bicubic, not align_corners); not upstream for either model
        scale = ((rows + 0.1) / self.pos_grid[0], (cols + 0.1) / self.pos_grid[1])
        grid = nn.functional.interpolate(grid, scale_factor=scale, mode="bicubic",
                                         align_corners=False)
        if tuple(grid.shape[-2:]) != (rows, cols):
            raise RuntimeError(f"pos_embed resize gave {tuple(grid.shape[-2:])}, not {(rows, cols)}")
        return grid.permute(0, 2, 3, 1).reshape(1, rows * cols, d)

    def forward_features(
        self, feats: Tensor, valid_rows: Tensor, layer: int
    ) -> tuple[Tensor, Tensor | None]:
        x = self.patch_embed(feats)
        rows = feats.shape[1] // self.patch_frames
        x = x + self.patch_pos(rows, self.grid_freq)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == layer:
                break
        if layer == self.depth - 1:
            x = self.norm(x)
        return x[:, 1:], x[:, 0]


class AltBlock(nn.Module):
    """data2vec 2.0 block with ``layer_norm_first=False`` (post-norm)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm6(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=True)
        self.norm2 = LayerNorm6(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(x)
        r = self.norm1(x)
        return self.norm2(r + self.mlp(r))


class EATEncoder(TokenEncoder):
    """EAT / SSLAM (data2vec 2.0 image modality over the fbank, prenet depth 0)."""

    has_cls = True
    patch_frames = 16

    def __init__(self, arch: ArchConfig, grid: tuple[int, int]) -> None:
        super().__init__()
        d = arch.embed_dim
        self.embed_dim, self.depth, self.grid, self.grid_freq = d, arch.depth, grid, grid[1]
        self.patch_embed = PatchEmbed(d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(sincos_2d(d, grid[0], grid[1]))
        self.pre_norm = LayerNorm6(d)
        self.blocks = nn.ModuleList(
            AltBlock(d, arch.num_heads, arch.mlp_ratio) for _ in range(arch.depth)
        )
        nn.init.normal_(self.cls_token, std=0.02)
        for blk in self.blocks:
            nn.init.trunc_normal_(blk.attn.qkv.weight, std=0.02)
            nn.init.trunc_normal_(blk.attn.proj.weight, std=0.02 / math.sqrt(2 * arch.depth))

    def forward_features(
        self, feats: Tensor, valid_rows: Tensor, layer: int
    ) -> tuple[Tensor, Tensor | None]:
        x = self.patch_embed(feats)
        x = x + self.pos_embed[:, : x.shape[1]]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pre_norm(x)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i == layer:
                break
        return x[:, 1:], x[:, 0]
