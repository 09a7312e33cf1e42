"""BEATs (microsoft/unilm ``beats/BEATs.py`` + ``backbone.py``), iter3 and iter3+.

Not a timm ViT: patch embedding without bias into 512 dims, LayerNorm, projection to 768, a
weight-normed grouped convolutional position encoder over the flattened token sequence, then
post-norm DeepNorm layers (``x = LN(alpha * x + f(x))``, ``alpha = (2 * layers) ** 0.25``) whose
attention adds a T5-style bucketed relative position bias (computed once, shared by all
layers) scaled by a per-layer gate (``gru_rel_pos``). No [cls], no final norm. Module and
parameter names equal the official ones so the checkpoint maps 1:1.

Padding: BEATs was trained on un-padded clips (its strided patch convolution drops the frames
of a trailing partial patch: 10 s = 998 frames -> 62 x 8 tokens) and its official code supports
a padding mask (padded positions zeroed before the position convolution, masked as attention
keys); we do the same with the trailing partial patch counted as padding, so the real tokens of
a padded window equal those of upstream's run on the un-padded clip (per 10.24 s window: longer
clips are cut into windows, which upstream does not do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from backbones.base import ArchConfig, TokenEncoder


@dataclass(frozen=True)
class BEATsConfig:
    """The fields of the official ``cfg`` dict that shape the encoder (iter3 values)."""

    embed_dim: int = 512
    encoder_embed_dim: int = 768
    encoder_layers: int = 12
    encoder_attention_heads: int = 12
    encoder_ffn_embed_dim: int = 3072
    input_patch_size: int = 16
    conv_bias: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    num_buckets: int = 320
    max_distance: int = 800
    layer_norm_first: bool = False
    deep_norm: bool = True
    relative_position_embedding: bool = True
    gru_rel_pos: bool = True

    @classmethod
    def from_arch(cls, arch: ArchConfig) -> BEATsConfig:
        return cls(
            embed_dim=512 if arch.embed_dim == 768 else arch.embed_dim // 2,
            encoder_embed_dim=arch.embed_dim, encoder_layers=arch.depth,
            encoder_attention_heads=arch.num_heads,
            encoder_ffn_embed_dim=int(arch.embed_dim * arch.mlp_ratio),
        )


def relative_bucket(rel: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """T5 bidirectional bucketing of relative positions (``memory - context``)."""
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    large = max_exact + (
        torch.log(rel.float().clamp_min(1) / max_exact) / math.log(max_distance / max_exact)
        * (half - max_exact)
    ).long()
    large = large.clamp_max(half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with the legacy ``weight_norm(dim=2)`` parameters ``weight_g``/``weight_v``."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding = kernel // 2
        self.groups = groups
        v = torch.empty(dim, dim // groups, kernel)
        nn.init.normal_(v, 0, math.sqrt(4 / (kernel * dim)))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=(0, 1), keepdim=True)
        return nn.functional.conv1d(x, w, self.bias, padding=self.padding, groups=self.groups)


class PosConv(nn.Sequential):
    """``pos_conv``: weight-normed conv, SamePad (drop the last frame for even kernels), GELU."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__(WeightNormConv1d(dim, kernel, groups))
        self.drop_last = kernel % 2 == 0

    def forward(self, x: Tensor) -> Tensor:
        y = self[0](x)
        if self.drop_last:
            y = y[..., :-1]
        return nn.functional.gelu(y)


class RelPosAttention(nn.Module):
    """BEATs ``MultiheadAttention`` (self-attention only) with the gated relative bias."""

    def __init__(self, dim: int, heads: int, num_buckets: int, max_distance: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.grep_linear = nn.Linear(self.head_dim, 8)
        self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    def position_bias(self, n: int) -> Tensor:
        pos = torch.arange(n, device=self.grep_a.device)
        bucket = relative_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.relative_attention_bias(bucket).permute(2, 0, 1)  # [H, N, N]

    def forward(self, x: Tensor, bias: Tensor, key_pad: Tensor | None) -> Tensor:
        b, n, d = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        gate_a, gate_b = torch.sigmoid(
            self.grep_linear(q).view(b, self.heads, n, 2, 4).sum(-1)
        ).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # [B, H, N, 1]
        mask = gate * bias.unsqueeze(0)
        if key_pad is not None:
            mask = mask.masked_fill(key_pad[:, None, None, :], float("-inf"))
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class BEATsLayer(nn.Module):
    """``TransformerSentenceEncoderLayer`` with ``layer_norm_first=False`` and DeepNorm."""

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = RelPosAttention(d, cfg.encoder_attention_heads, cfg.num_buckets,
                                         cfg.max_distance)
        if relative_attention_bias is not None:  # one module shared by all layers, as upstream
            self.self_attn.relative_attention_bias = relative_attention_bias
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.alpha = math.pow(2.0 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: Tensor, bias: Tensor, key_pad: Tensor | None) -> Tensor:
        x = self.self_attn_layer_norm(x * self.alpha + self.self_attn(x, bias, key_pad))
        h = self.fc2(nn.functional.gelu(self.fc1(x).float()).to(x.dtype))
        return self.final_layer_norm(x * self.alpha + h)


class BEATsTransformer(nn.Module):
    """``encoder``: position convolution, LayerNorm, layers."""

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = PosConv(d, cfg.conv_pos, cfg.conv_pos_groups)
        self.layer_norm = nn.LayerNorm(d)
        first = BEATsLayer(cfg, None)
        shared = first.self_attn.relative_attention_bias
        self.layers = nn.ModuleList(
            [first] + [BEATsLayer(cfg, shared) for _ in range(cfg.encoder_layers - 1)]
        )


class BEATsEncoder(TokenEncoder):
    """BEATs body over normalised fbank windows ``[B, W, 128]``; no [cls]."""

    has_cls = False
    masks_padding = True

    def __init__(self, arch: ArchConfig, grid: tuple[int, int], cfg: BEATsConfig | None = None):
        super().__init__()
        self.cfg = cfg or BEATsConfig.from_arch(arch)
        c = self.cfg
        self.embed_dim, self.depth, self.grid_freq = c.encoder_embed_dim, c.encoder_layers, grid[1]
        self.patch_frames = c.input_patch_size
        self.patch_embedding = nn.Conv2d(1, c.embed_dim, kernel_size=c.input_patch_size,
                                         stride=c.input_patch_size, bias=c.conv_bias)
        self.layer_norm = nn.LayerNorm(c.embed_dim)
        self.post_extract_proj = nn.Linear(c.embed_dim, c.encoder_embed_dim)
        self.encoder = BEATsTransformer(c)

    def forward_features(
        self, feats: Tensor, valid_rows: Tensor, layer: int
    ) -> tuple[Tensor, Tensor | None]:
        x = self.patch_embedding(feats.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = self.post_extract_proj(self.layer_norm(x))
        key_pad = self.row_key_mask(valid_rows, feats.shape[1] // self.patch_frames)
        if key_pad is not None:
            x = x.masked_fill(key_pad.unsqueeze(-1), 0.0)
        enc = self.encoder
        x = x + enc.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = enc.layer_norm(x)
        bias = enc.layers[0].self_attn.position_bias(x.shape[1])
        for i, lyr in enumerate(enc.layers):
            x = lyr(x, bias, key_pad)
            if i == layer:
                break
        return x, None
