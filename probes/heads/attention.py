"""Attentive pooling probes: ``mhca``, ``ep``, ``simpool``, ``abmilp``.

Each learns a weighting of the patch tokens (softmax over non-padded tokens only), pools them
into one or a few vectors and classifies with a linear layer. Definitions follow
``shared/PAPER.md``; the remaining choices are:
- ``mhca``: ``num_heads`` defaults to ``embed_dim // 64`` (12 for D=768, as in the paper; 1 for
  tiny encoders); the learned query is used as is (no query projection), keys and values are
  bias-free projections, scaled dot-product attention, optional dropout before the classifier.
- ``ep`` (Psomas et al., following their reference ``poolings/ep.py``): keys are the tokens
  themselves (no key projection), one head, scale 1/sqrt(D); one value projection
  ``D -> num_queries * value_dim`` (bias-free) whose q-th chunk of ``value_dim`` (default
  ``embed_dim // num_queries``, at least 1) is query q's value; the query outputs are
  concatenated (D wide for D=768, Q=32) and classified.
- ``simpool``: LayerNorm (affine) on the tokens; query = mean of the normalised non-padded
  tokens; keys = normalised tokens; values = the raw tokens; scale 1/sqrt(D).
- ``abmilp`` (Ilse et al. 2018): scorer ``Linear(D, hidden_dim) -> tanh -> Linear(hidden_dim,
  1)`` with ``hidden_dim`` 128; ``gated=True`` gives the gated variant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probes.pooling import ProbeHead, masked_mean, masked_softmax


class MHCAProbe(ProbeHead):
    """``mhca``: one learned query, multi-head cross-attention over the tokens, then linear."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        num_heads: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        heads = num_heads or max(1, embed_dim // 64)
        if embed_dim % heads:
            raise ValueError(
                f"num_heads={heads} does not divide embed_dim={embed_dim}; pick a divisor."
            )
        self.num_heads = heads
        self.query = nn.Parameter(torch.empty(embed_dim))
        self.key = nn.Linear(embed_dim, embed_dim, bias=False)
        self.value = nn.Linear(embed_dim, embed_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def _reset_own(self) -> None:
        nn.init.normal_(self.query, std=0.02)

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        b, n, d = tokens.shape
        h, hd = self.num_heads, d // self.num_heads
        keys = self.key(tokens).view(b, n, h, hd)
        scores = torch.einsum("bnhe,he->bhn", keys, self.query.view(h, hd)) / math.sqrt(hd)
        weights = masked_softmax(scores, mask)  # [B, H, N]
        values = self.value(tokens).view(b, n, h, hd)
        pooled = torch.einsum("bhn,bnhe->bhe", weights, values).reshape(b, d)
        return self.head(self.dropout(pooled))


class EPProbe(ProbeHead):
    """``ep``: efficient probing, 32 learned queries, one head, value projection only."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        num_queries: int = 32,
        value_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}.")
        self.num_queries = num_queries
        self.value_dim = value_dim or max(1, embed_dim // num_queries)
        self.queries = nn.Parameter(torch.empty(num_queries, embed_dim))
        self.value = nn.Linear(embed_dim, num_queries * self.value_dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_queries * self.value_dim, num_classes)
        self.reset_parameters()

    def _reset_own(self) -> None:
        nn.init.normal_(self.queries, std=0.02)

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        scores = torch.einsum("bnd,qd->bqn", tokens, self.queries) / math.sqrt(self.embed_dim)
        weights = masked_softmax(scores, mask)  # [B, Q, N]
        # sum_n a_qn (x_n W_q) == (sum_n a_qn x_n) W_q: pool first, then apply query q's chunk
        # of the value projection; the [B, N, Q * value_dim] value map is never built.
        pooled = torch.bmm(weights, tokens)  # [B, Q, D]
        w = self.value.weight.view(self.num_queries, self.value_dim, self.embed_dim)
        out = torch.einsum("bqd,qed->bqe", pooled, w)
        return self.head(self.dropout(out.flatten(1)))


class SimPoolProbe(ProbeHead):
    """``simpool``: query = mean of LayerNorm'd tokens, no K/V projections, then linear."""

    def __init__(self, embed_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(embed_dim, num_classes)
        self.norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        normed = self.norm(tokens)
        query = masked_mean(normed, mask)  # [B, D]
        scores = torch.einsum("bnd,bd->bn", normed, query) / math.sqrt(self.embed_dim)
        weights = masked_softmax(scores, mask)  # [B, N]
        pooled = torch.einsum("bn,bnd->bd", weights, tokens)
        return self.head(self.dropout(pooled))


class ABMILPProbe(ProbeHead):
    """``abmilp``: attention-based MIL pooling (2-layer tanh scorer), weighted sum, linear."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        hidden_dim: int = 128,
        gated: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(embed_dim, num_classes)
        self.attn_v = nn.Linear(embed_dim, hidden_dim)
        self.attn_u = nn.Linear(embed_dim, hidden_dim) if gated else None
        self.attn_w = nn.Linear(hidden_dim, 1, bias=False)  # a bias cancels in the softmax
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)
        self.reset_parameters()

    def _logits(
        self, tokens: Tensor, cls: Tensor | None, mask: Tensor | None, grid: tuple[int, int] | None
    ) -> Tensor:
        hidden = torch.tanh(self.attn_v(tokens))
        if self.attn_u is not None:
            hidden = hidden * torch.sigmoid(self.attn_u(tokens))
        weights = masked_softmax(self.attn_w(hidden).squeeze(-1), mask)  # [B, N]
        pooled = torch.einsum("bn,bnd->bd", weights, tokens)
        return self.head(self.dropout(pooled))
