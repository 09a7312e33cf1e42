"""Probes that look at the token map's layout or classify tokens one by one: ``conv``, ``linpre``.

Both definitions were not recovered from the paper; the choices, all configurable:
- ``conv``: the tokens are laid out on their (T, F) grid (time-major, index = t*F + f), padded
  tokens set to zero, then ``num_layers`` (default 1) 3x3 convolutions of width ``hidden_dim``
  (default 256) with GELU, global pooling (``pool``: ``"mean"`` default, or ``"max"``) over the
  non-padded positions, and a linear layer. Without ``grid`` the map is treated as (N, 1), i.e.
  a 1-D convolution over the token sequence.
- ``linpre``: one linear classifier applied to every token (logits ``[B, N, C]``), then pooled
  over the non-padded tokens (``pool``: ``"max"`` default, ``"mean"``, or ``"lse"`` =
  log-mean-exp). The default is max because with mean pooling the probe equals ``linear`` on
  the token mean (logit pooling commutes with a linear layer), which would make it redundant.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probes.pooling import ProbeHead, masked_max, masked_mean, zero_padding


class ConvProbe(ProbeHead):
    """``conv``: a small conv head over the T x F token grid, then global pooling, then linear."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_layers: int = 1,
        kernel_size: int = 3,
        pool: str = "mean",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        if pool not in ("mean", "max"):
            raise ValueError(f"pool={pool!r} is not valid for conv; choose 'mean' or 'max'.")
        if num_layers < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"need num_layers >= 1 and an odd kernel_size, got {num_layers}, {kernel_size}."
            )
        self.pool = pool
        layers: list[nn.Module] = []
        width = embed_dim
        for _ in range(num_layers):
            layers += [nn.Conv2d(width, hidden_dim, kernel_size, padding=kernel_size // 2)]
            layers += [nn.GELU()]
            width = hidden_dim
        self.convs = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim, num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        b, n, d = tokens.shape
        t, f = tuple(grid) if grid is not None else (n, 1)
        if t * f != n:
            raise ValueError(
                f"grid={grid} has {t * f} cells but there are N={n} tokens; pass the token "
                "map's (T, F) grid (time-major, N = T*F) or grid=None for a 1-D layout."
            )
        x = zero_padding(tokens, mask).view(b, t, f, d).permute(0, 3, 1, 2)
        feats = self.convs(x).flatten(2).transpose(1, 2)  # [B, N, H]
        pooled = masked_mean(feats, mask) if self.pool == "mean" else masked_max(feats, mask)
        return self.head(self.dropout(pooled))


class LinPreProbe(ProbeHead):
    """``linpre``: a linear classifier on every token, logits pooled over tokens."""

    def __init__(self, embed_dim: int, num_classes: int, pool: str = "max") -> None:
        super().__init__(embed_dim, num_classes)
        if pool not in ("max", "mean", "lse"):
            raise ValueError(f"pool={pool!r} is not valid for linpre; choose max, mean or lse.")
        self.pool = pool
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        logits = self.head(tokens)  # [B, N, C]
        if self.pool == "max":
            return masked_max(logits, mask)
        if self.pool == "mean":
            return masked_mean(logits, mask)
        if mask is not None:
            logits = logits.masked_fill(mask.unsqueeze(-1), torch.finfo(logits.dtype).min)
            count = (~mask).sum(dim=1, keepdim=True).clamp_min(1).to(logits.dtype)
        else:
            count = torch.full((tokens.shape[0], 1), float(tokens.shape[1]), device=tokens.device)
        return torch.logsumexp(logits, dim=1) - torch.log(count)
